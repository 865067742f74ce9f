-- The streaming diff, cancel-restores, the preview mode (Accept/Reject), the code actions'
-- commands and a quiet lsp.log, against the real server (tiny model: gibberish answers, so the
-- assertions are structural).
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
vim.lsp.log.set_level(vim.log.levels.WARN) -- the default level
local log_start = vim.fn.getfsize(vim.lsp.log.get_filename()) -- lsp.log is shared: read only ours
local copyspec = H.setup({ max_new_tokens = 60 })

local ORIGINAL = { 'def area(w, h):', '    w = w + 0', '    h = h + 0', '    return w * h', '', 'print(area(1, 2))' }
local diff_ns = vim.api.nvim_create_namespace('copyspec_diff')

--- After each edit the buffer and the highlighted rows ({group = {rows}}) are recorded.
local function record(buf)
  local seen = {}
  local inner = vim.lsp.handlers['workspace/applyEdit']
  vim.lsp.handlers['workspace/applyEdit'] = function(...)
    local result = inner(...)
    vim.schedule(function()
      local marks = {}
      for _, m in ipairs(vim.api.nvim_buf_get_extmarks(buf, diff_ns, 0, -1, { details = true })) do
        local group = m[4].line_hl_group
        if group then
          marks[group] = marks[group] or {}
          table.insert(marks[group], m[2])
        end
      end
      seen[#seen + 1] = { lines = H.lines(buf), marks = marks }
    end)
    return result
  end
  return seen, function()
    vim.lsp.handlers['workspace/applyEdit'] = inner
  end
end

H.run({
  { 'while it streams, the original rest stays below the streamed text, marked pending', function()
    local buf = H.open('diff.py', ORIGINAL)
    local seen, stop = record(buf)
    local done = H.run_job('1,4CopySpecRefine rename w to width')
    stop()
    assert(not done.err, vim.inspect(done.err))
    local with_pending = vim.tbl_filter(function(s)
      return s.marks.CopySpecPending ~= nil
    end, seen)
    assert(#with_pending > 0, 'no state with pending lines: ' .. vim.inspect(seen))
    for _, s in ipairs(with_pending) do
      local rows = s.marks.CopySpecPending
      local shown = vim.tbl_map(function(r)
        return s.lines[r + 1]
      end, rows)
      local tail = vim.list_slice(ORIGINAL, 5 - #shown, 4)
      H.eq(tail, shown, 'the pending rows hold the original last lines')
      H.eq({ '', 'print(area(1, 2))' }, vim.list_slice(s.lines, #s.lines - 1), 'after the region')
    end
    H.eq({}, vim.api.nvim_buf_get_extmarks(buf, diff_ns, 0, -1, {}), 'no marks left once done')
    H.eq(done.result.text, H.text_at(buf, done.result.range), 'exactly the final text')
    vim.cmd('silent undo')
    H.eq(ORIGINAL, H.lines(buf), 'one undo restores the original')
  end },

  { 'cancel puts the original back at once', function()
    local buf = H.open('restore.py', ORIGINAL)
    H.done = nil
    H.on_edit = function()
      vim.schedule(function()
        copyspec.cancel(buf)
      end)
    end
    vim.cmd('1,4CopySpecRefine rewrite it')
    H.wait(function()
      return H.done ~= nil
    end, 60000, 'the cancel')
    H.eq(ORIGINAL, H.lines(buf), 'buffer right after the cancel')
    H.eq({}, vim.api.nvim_buf_get_extmarks(buf, diff_ns, 0, -1, {}), 'no marks left')
  end },

  { 'preview: nothing changes until accept; accept is one undo step; reject leaves it', function()
    copyspec.config.apply_mode = 'preview'
    local buf = H.open('preview.py', ORIGINAL)
    local edits = H.edits
    local done = H.run_job('1,4CopySpecRefine rename w to width')
    assert(not done.err, vim.inspect(done.err))
    H.eq(edits, H.edits, 'no edit reached the buffer')
    H.eq(ORIGINAL, H.lines(buf), 'buffer before accept')
    H.eq({ start = { line = 0, character = 0 }, ['end'] = { line = 3, character = 16 } }, done.result.replacedRange, 'replacedRange')
    local marks = vim.api.nvim_buf_get_extmarks(buf, diff_ns, 0, -1, { details = true })
    local removed, added = 0, nil
    for _, m in ipairs(marks) do
      removed = removed + (m[4].line_hl_group == 'CopySpecRemoved' and 1 or 0)
      added = added or m[4].virt_lines
    end
    H.eq(4, removed, 'the replaced lines are marked red')
    H.eq(done.result.text, table.concat(vim.tbl_map(function(l)
      return l[1][1]
    end, vim.list_slice(added, 1, #added - 1)), '\n'), 'the answer as green virtual lines')
    assert(vim.fn.maparg('ga', 'n') ~= '', 'accept key mapped while the preview shows')
    vim.api.nvim_feedkeys('ga', 'x', false)
    local lines = H.lines(buf)
    H.eq(table.concat(lines, '\n'), done.result.text .. '\n\nprint(area(1, 2))', 'accepted text')
    H.eq('', vim.fn.maparg('ga', 'n'), 'accept key gone')
    vim.cmd('silent undo')
    H.eq(ORIGINAL, H.lines(buf), 'one undo after accept')
    H.run_job('1,4CopySpecRefine rename w to width')
    copyspec.reject(buf)
    H.eq(ORIGINAL, H.lines(buf), 'after reject')
    H.eq({}, vim.api.nvim_buf_get_extmarks(buf, diff_ns, 0, -1, {}), 'no marks after reject')
    copyspec.config.apply_mode = 'stream'
  end },

  { 'the refine code action asks for the instruction; the fix action carries the diagnostic', function()
    local buf = H.open('actions.py', ORIGINAL)
    local prompts = {}
    vim.ui.input = function(opts, on_confirm)
      prompts[#prompts + 1] = opts.prompt
      on_confirm('rename w')
    end
    local client = vim.lsp.get_clients({ bufnr = buf, name = 'copyspec' })[1]
    local range = { start = { line = 0, character = 0 }, ['end'] = { line = 3, character = 16 } }
    H.done = nil
    client:exec_cmd({ title = 'refine', command = 'copyspec.refine', arguments = { { uri = vim.uri_from_bufnr(buf), range = range } } }, { bufnr = buf })
    H.wait(function()
      return H.done ~= nil
    end, 90000, 'the refine action')
    H.eq(1, #prompts, 'the instruction was asked for')
    assert(not H.done.err, vim.inspect(H.done.err))
    vim.cmd('silent undo')
    H.done = nil
    local diagnostic = { range = range, message = 'NameError: name x is not defined', severity = 1 }
    client:exec_cmd({ title = 'fix', command = 'copyspec.fix',
      arguments = { { uri = vim.uri_from_bufnr(buf), range = range, diagnostics = { diagnostic } } } }, { bufnr = buf })
    H.wait(function()
      return H.done ~= nil
    end, 90000, 'the fix action')
    assert(not H.done.err, vim.inspect(H.done.err))
    local asked = H.done.result.turns[1].instruction
    assert(asked:find('NameError: name x is not defined', 1, true), 'the diagnostic reached the model: ' .. asked)
  end },

  { 'lsp.log holds no progress bars or library warnings', function()
    local file = assert(io.open(vim.lsp.log.get_filename(), 'rb'))
    file:seek('set', math.max(log_start, 0))
    local text = file:read('*a')
    file:close()
    -- (pygls itself logs a traceback for a request that ends in ServerCancelled: a server
    -- matter, not checked here.)
    for _, noise in ipairs({ '%d+%%|', 'Warning:', 'it/s%]' }) do
      assert(not text:find(noise), ('%s in lsp.log:\n%s'):format(noise, text:sub(1, 2000)))
    end
  end },
})
