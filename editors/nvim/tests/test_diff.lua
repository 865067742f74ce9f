-- The streaming diff, cancel-restores, the streaming preview, the code actions'
-- commands and a quiet lsp.log, against the real server (tiny model: gibberish answers, so the
-- assertions are structural).
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
vim.lsp.log.set_level(vim.log.levels.WARN) -- the default level
local log_start = vim.fn.getfsize(vim.lsp.log.get_filename()) -- -1: none yet; else the run's earlier scripts wrote it: read only ours
local copyspec = H.setup({ max_new_tokens = 60 })

local ORIGINAL = { 'def area(w, h):', '    w = w + 0', '    h = h + 0', '    return w * h', '', 'print(area(1, 2))' }
local diff_ns = vim.api.nvim_create_namespace('copyspec_diff')

--- The highlighted rows now: { group = { rows } }.
local function marks_of(buf)
  local marks = {}
  for _, m in ipairs(vim.api.nvim_buf_get_extmarks(buf, diff_ns, 0, -1, { details = true })) do
    local group = m[4].line_hl_group
    if group then
      marks[group] = marks[group] or {}
      table.insert(marks[group], m[2])
    end
  end
  return marks
end

--- The first pattern of noise `text` holds, or nil.
local function noise_in(text)
  for _, noise in ipairs({ '%d+%%|', 'Warning:', 'it/s%]' }) do
    if text:find(noise) then
      return noise
    end
  end
end

H.run({
  { 'while it streams, the original rest stays below the streamed text, marked pending', function()
    local buf = H.open('diff.py', ORIGINAL)
    -- The gate holds the request after each edit: each state is read while nothing else can
    -- arrive, and the first one is surely mid-stream, however fast the model.
    local seen = {}
    H.start_held('1,4CopySpecRefine rename w to width')
    H.step_through(function()
      seen[#seen + 1] = { lines = H.lines(buf), marks = marks_of(buf) }
    end)
    local done = H.done
    io.stdout:write(('  (%d edits, each read while the server held)\n'):format(#seen))
    assert(not done.err, vim.inspect(done.err))
    assert(seen[1].marks.CopySpecPending, 'the first edit shows no pending lines: ' .. vim.inspect(seen[1]))
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
    H.start_held('1,4CopySpecRefine rewrite it') -- held after its first edit: surely mid-stream
    assert(not vim.deep_equal(ORIGINAL, H.lines(buf)), 'the first edit changed nothing')
    copyspec.cancel(buf)
    H.wait_done(30000, 'the cancel')
    local cancelled = (H.done.err and H.done.err.code == -32800) or (H.done.result and H.done.result.stats.cancelled)
    assert(cancelled, 'the request was not cancelled: ' .. vim.inspect(H.done))
    H.eq(ORIGINAL, H.lines(buf), 'buffer right after the cancel')
    H.eq({}, vim.api.nvim_buf_get_extmarks(buf, diff_ns, 0, -1, {}), 'no marks left')
    H.release()
  end },

  { 'preview: the answer streams as virtual lines; nothing reaches the buffer; then its hunks are reviewed', function()
    copyspec.config.apply_mode = 'preview'
    local buf = H.open('preview.py', ORIGINAL)
    local edits = H.edits
    H.done = nil
    H.hold() -- a preview sends no edits: the gate holds it after each step it has shown
    vim.cmd('1,4CopySpecRefine rename w to width')
    local streaming
    H.wait(function()
      for _, m in ipairs(vim.api.nvim_buf_get_extmarks(buf, diff_ns, 0, -1, { details = true })) do
        streaming = streaming or m[4].virt_lines
      end
      return streaming ~= nil
    end, 90000, 'the streaming preview')
    H.eq(4, #vim.tbl_filter(function(m)
      return m[4].line_hl_group == 'CopySpecRemoved'
    end, vim.api.nvim_buf_get_extmarks(buf, diff_ns, 0, -1, { details = true })), 'the lines it would replace are red')
    H.eq('CopySpec: streaming the preview…', streaming[#streaming][1][1], 'the answer so far below them')
    H.release()
    local done = H.wait_done(90000, 'the preview to finish')
    assert(not done.err, vim.inspect(done.err))
    H.eq(edits, H.edits, 'no edit reached the buffer')
    H.eq(ORIGINAL, H.lines(buf), 'buffer untouched')
    H.eq({ start = { line = 0, character = 0 }, ['end'] = { line = 3, character = 16 } }, done.result.replacedRange, 'replacedRange')
    H.eq({}, vim.api.nvim_buf_get_extmarks(buf, diff_ns, 0, -1, {}), 'the streaming preview is gone')
    assert(#done.result.hunks > 0, 'the gibberish answer differs from the original')
    assert(vim.fn.maparg('gA', 'n') ~= '', 'the review keys are mapped')
    vim.api.nvim_feedkeys('gA', 'x', false)
    H.eq(done.result.text .. '\n\nprint(area(1, 2))', table.concat(H.lines(buf), '\n'), 'accept all puts the answer in')
    H.eq('', vim.fn.maparg('gA', 'n'), 'the review is over')
    vim.cmd('silent undo')
    H.eq(ORIGINAL, H.lines(buf), 'one undo after accept all')
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
    assert(noise_in('Loading weights:  50%|#####     | 1/2 [00:01<00:01,  1.00it/s]'), 'the noise check finds nothing')
    -- A quiet server may leave no log at all (run.sh gives each run its own XDG_STATE_HOME):
    -- then there is nothing to complain about.
    local file = io.open(vim.lsp.log.get_filename(), 'rb')
    if not file then
      io.stdout:write('  (no lsp.log: nothing was logged)\n')
      return
    end
    file:seek('set', math.max(log_start, 0))
    local text = file:read('*a')
    file:close()
    -- (pygls itself logs a traceback for a request that ends in ServerCancelled: a server
    -- matter, not checked here.)
    local noise = noise_in(text)
    assert(not noise, ('%s in lsp.log:\n%s'):format(noise, text:sub(1, 2000)))
  end },
})
