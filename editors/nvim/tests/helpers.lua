-- A dependency-free test harness. Tests run as a coroutine that yields to Neovim's main loop
-- while it waits (never vim.wait): LSP messages are then handled between loop iterations, as
-- in an interactive session, where each handled message closes an undo block. Under vim.wait
-- every edit would merge into one undo block anyway and the one-undo test could not fail.
local H = {}

-- The server's test gate (copyspec_lsp/adapters/gate.py; run.sh sets COPYSPEC_TEST_GATE for the server
-- Neovim starts): while the file exists, a streaming request holds after each edit that left
-- the buffer up to date (and after its final edit, before it answers) until the file is gone or
-- the request stops; its engine holds too. This is what tests fake: a stream held open by a
-- test-only hook the real server honours, instead of a model slow enough to act mid-stream.
-- Without it the tiny model finishes 850 tokens in a few dozen milliseconds on an idle machine.
H.gate = os.getenv('COPYSPEC_TEST_GATE')

--- Closes the gate: a request started now sends its first edit, then holds.
function H.hold()
  assert(H.gate, 'COPYSPEC_TEST_GATE is not set: run the tests with editors/nvim/tests/run.sh')
  assert(vim.fn.writefile({}, H.gate) == 0, 'could not create the gate file ' .. H.gate)
end

--- Opens the gate: held requests go on to the end. Also runs when a test fails.
function H.release()
  H.rehold = false
  if H.gate then
    os.remove(H.gate)
  end
end

--- Lets a held request send exactly one more edit: the gate opens, and closes again inside the
--- next applyEdit, before it is answered (the server looks at the gate after the answer).
function H.step()
  H.rehold = true
  if H.gate then
    os.remove(H.gate)
  end
end

-- The server's test-only scripted answer (copyspec_lsp/adapters/scripted.py; run.sh sets
-- COPYSPEC_TEST_ANSWER): while the file exists, every turn answers its text instead of the tiny
-- model's gibberish, streamed through the real path. What tests fake with it: the model's words,
-- so that they know where the answer's hunks are.
H.answer = os.getenv('COPYSPEC_TEST_ANSWER')

--- Every turn from now on answers `text` (the model's raw reply: fenced or not), until H.unscript.
function H.script(text)
  assert(H.answer, 'COPYSPEC_TEST_ANSWER is not set: run the tests with editors/nvim/tests/run.sh')
  assert(vim.fn.writefile(vim.split(text, '\n', { plain = true }), H.answer, 'b') == 0, 'could not write ' .. H.answer)
end

function H.unscript()
  if H.answer then
    os.remove(H.answer)
  end
end

local function fail(msg)
  H.release() -- never leave a server held behind
  H.unscript()
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

--- Waits until cond() holds, up to `ms`; the error names the caller's line (or the one `level`
--- frames further up, for helpers that wait on a test's behalf).
function H.wait(cond, ms, what, level)
  local deadline = vim.uv.hrtime() + ms * 1e6
  while not cond() do
    if vim.uv.hrtime() > deadline then
      error(('timed out after %d ms waiting for %s'):format(ms, what), 2 + (level or 0))
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

--- The plugin, set up against the real server on the tiny model (`default_model`: no model
--- named, so the server loads its default one).
function H.setup(extra, default_model)
  H.messages = {}
  vim.notify = function(msg)
    H.messages[#H.messages + 1] = msg
    io.stdout:write('  [notify] ' .. msg .. '\n')
  end
  local copyspec = require('copyspec')
  copyspec.setup(vim.tbl_deep_extend('force', {
    cmd = { os.getenv('COPYSPEC_LSP'), '--stdio' },
    init_options = { model = not default_model and os.getenv('COPYSPEC_TEST_MODEL') or nil, device = 'cpu' },
    keymaps = false,
  }, extra or {}))
  -- Outermost on every applyEdit the server sends, refused ones included: H.step closes the
  -- gate again here, before the plugin answers.
  local plugin = vim.lsp.config.copyspec.handlers['workspace/applyEdit']
  vim.lsp.config('copyspec', { handlers = { ['workspace/applyEdit'] = function(...)
    if H.rehold then
      H.hold()
      H.rehold = false
    end
    return plugin(...)
  end } })
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
--- (What shows while it streams is read under the gate: H.start_held, H.step_through.)
function H.run_job(cmd)
  H.done = nil
  vim.cmd(cmd)
  H.wait(function()
    return H.done ~= nil
  end, 90000, cmd .. ' to finish', 1)
  return H.done
end

--- Starts `cmd` with the gate closed and waits until its first edit has landed: the server then
--- holds the request (and its model) until H.release / H.step, or until the request stops.
--- The caller releases (and fail() does, should the test fail first).
function H.start_held(cmd, ms)
  H.done = nil
  local edits = H.edits
  H.hold()
  vim.cmd(cmd)
  H.wait(function()
    return H.edits > edits or H.done ~= nil
  end, ms or 90000, 'the first edit of ' .. cmd, 1)
  assert(H.done == nil, 'the request ended before its first edit: ' .. vim.inspect(H.done))
  -- The gate is in force (a server started without COPYSPEC_TEST_GATE would stream on).
  edits = H.edits
  H.sleep(200)
  assert(H.edits == edits and H.done == nil, 'the gate did not hold the request after its first edit')
end

--- Under a closed gate (H.start_held), one edit at a time: `at()` runs after each edit that
--- lands, while the server holds, then the next one is let through; returns once the request
--- has ended, with the gate open.
function H.step_through(at, ms)
  local edits = H.edits
  at()
  while true do
    H.step()
    H.wait(function()
      return H.edits > edits or H.done ~= nil
    end, ms or 30000, 'the next edit or the end of the request', 1)
    if H.done ~= nil then
      break
    end
    edits = H.edits
    at()
  end
  H.release()
end

--- Waits for the running request to end (H.done), up to `ms`.
function H.wait_done(ms, what)
  H.wait(function()
    return H.done ~= nil
  end, ms, what, 1)
  return H.done
end

--- The buffer's text where the result says the final text stands.
function H.text_at(bufnr, range)
  local lines = vim.api.nvim_buf_get_text(bufnr, range.start.line, range.start.character,
    range['end'].line, range['end'].character, {})
  return table.concat(lines, '\n')
end

return H
