-- A dependency-free test harness. Tests run as a coroutine that yields to Neovim's main loop
-- while it waits (never vim.wait): LSP messages are then handled between loop iterations, as
-- in an interactive session, where each handled message closes an undo block. Under vim.wait
-- every edit would merge into one undo block anyway and the one-undo test could not fail.
local H = {}

local function fail(msg)
  io.stderr:write('FAIL ' .. msg .. '\n')
  vim.cmd('cquit 1')
end

local function step(co, ...)
  local ok, err = coroutine.resume(co, ...)
  if not ok then
    fail(debug.traceback(co, err))
  end
end

function H.sleep(ms)
  local co = coroutine.running()
  vim.defer_fn(function()
    step(co)
  end, ms)
  coroutine.yield()
end

function H.wait(cond, ms, what)
  local deadline = vim.uv.hrtime() + ms * 1e6
  while not cond() do
    if vim.uv.hrtime() > deadline then
      error(('timed out after %d ms waiting for %s'):format(ms, what), 2)
    end
    H.sleep(20)
  end
end

function H.eq(expected, actual, what)
  if not vim.deep_equal(expected, actual) then
    error(('%s:\n  expected %s\n  got      %s'):format(what, vim.inspect(expected), vim.inspect(actual)), 2)
  end
end

--- Runs `cases` ({name, fn} pairs) in order, then quits with 0 only if all passed.
function H.run(cases)
  vim.defer_fn(function()
    fail('the test script took longer than 150 s')
  end, 150000)
  local co = coroutine.create(function()
    for _, case in ipairs(cases) do
      local t0 = vim.uv.hrtime()
      case[2]()
      io.stdout:write(('  pass %s (%.1f s)\n'):format(case[1], (vim.uv.hrtime() - t0) / 1e9))
    end
    vim.cmd('qa!')
  end)
  step(co)
end

--- The plugin, set up against the real server on the tiny model.
function H.setup(extra)
  H.messages = {}
  vim.notify = function(msg)
    H.messages[#H.messages + 1] = msg
    io.stdout:write('  [notify] ' .. msg .. '\n')
  end
  local copyspec = require('copyspec')
  copyspec.setup(vim.tbl_deep_extend('force', {
    cmd = { os.getenv('COPYSPEC_LSP'), '--stdio' },
    init_options = { model = os.getenv('COPYSPEC_TEST_MODEL'), device = 'cpu' },
    keymaps = false,
  }, extra or {}))
  -- Counts the edits that reach the buffer; the plugin's handler delegates to this one.
  local default = vim.lsp.handlers['workspace/applyEdit']
  H.edits = 0
  vim.lsp.handlers['workspace/applyEdit'] = function(...)
    H.edits = H.edits + 1
    local hook = H.on_edit -- one-shot: runs while the server waits for this edit's reply
    H.on_edit = nil
    if hook then
      hook()
    end
    return default(...)
  end
  vim.api.nvim_create_autocmd('User', {
    pattern = 'CopySpecDone',
    callback = function(ev)
      H.done = ev.data
    end,
  })
  return copyspec
end

--- Opens a fresh file holding `lines` and waits until the server is attached.
function H.open(name, lines)
  local path = os.getenv('COPYSPEC_TEST_DIR') .. '/' .. name
  vim.fn.writefile(lines, path)
  vim.cmd.edit(path)
  local bufnr = vim.api.nvim_get_current_buf()
  H.wait(function()
    return #vim.lsp.get_clients({ bufnr = bufnr, name = 'copyspec' }) > 0
  end, 90000, 'the server to attach') -- importing torch takes long on a busy machine
  return bufnr
end

function H.lines(bufnr)
  return vim.api.nvim_buf_get_lines(bufnr or 0, 0, -1, false)
end

--- Runs an Ex command and waits for its request to finish; returns the CopySpecDone data.
--- H.progress collects the progress virtual text shown meanwhile.
function H.run_job(cmd)
  H.done, H.progress = nil, {}
  local ns = vim.api.nvim_create_namespace('copyspec')
  vim.cmd(cmd)
  H.wait(function()
    for _, m in ipairs(vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })) do
      local lines = m[4].virt_lines
      if lines and H.progress[#H.progress] ~= lines[1][1][1] then
        H.progress[#H.progress + 1] = lines[1][1][1]
      end
    end
    return H.done ~= nil
  end, 90000, cmd .. ' to finish')
  return H.done
end

--- The buffer's text where the result says the final text stands.
function H.text_at(bufnr, range)
  local lines = vim.api.nvim_buf_get_text(bufnr, range.start.line, range.start.character,
    range['end'].line, range['end'].character, {})
  return table.concat(lines, '\n')
end

return H
