-- Refine, one-undo, follow-up and fix against the real server (tiny model: gibberish, so the
-- assertions are structural: the buffer holds the result text where the result says).
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
-- Short answers keep the fix loop's three turns inside the tiny model's 1024-token window.
H.setup({ max_new_tokens = 60 })

local ORIGINAL = { 'def area(w, h):', '    return w * h', '', 'def perimeter(w, h):', '    return 2 * (w + h)' }
local buf, first, after_first

H.run({
  { 'refine streams the answer over the selected lines', function()
    buf = H.open('shapes.py', ORIGINAL)
    local prompts = {}
    vim.ui.input = function(opts, on_confirm)
      prompts[#prompts + 1] = opts.prompt
      on_confirm('add type hints')
    end
    H.edits = 0
    -- The live figures show while it streams: the server's test gate (helpers.lua) holds the
    -- request after its first edit, so they are read mid-stream however fast the model.
    H.start_held('1,2CopySpecRefine')
    local progress = {}
    for _, m in ipairs(vim.api.nvim_buf_get_extmarks(buf, vim.api.nvim_create_namespace('copyspec'), 0, -1, { details = true })) do
      local lines = m[4].virt_lines
      if lines then
        progress[#progress + 1] = lines[1][1][1]
      end
    end
    H.release()
    local done = H.wait_done(90000, 'the refinement to finish')
    assert(not done.err, vim.inspect(done.err))
    first = done.result
    H.eq(1, #prompts, 'instruction prompts shown')
    local live = vim.tbl_filter(function(t)
      return t:find('^CopySpec [1-9][%d.]* tok/s · %d+%% copied · [1-9]%d* tokens$') ~= nil
    end, progress)
    assert(#live > 0, 'no live progress figures mid-stream: ' .. vim.inspect(progress))
    assert(H.edits >= 2, 'expected several streamed edits, got ' .. H.edits)
    H.eq(0, first.range.start.line, 'result range start line')
    H.eq(first.text, H.text_at(buf, first.range), 'buffer text at the result range')
    local lines = H.lines(buf)
    H.eq({ '', 'def perimeter(w, h):', '    return 2 * (w + h)' }, vim.list_slice(lines, #lines - 2), 'lines after the region')
    H.eq('', vim.fn.maparg('<leader>cr', 'n'), 'no keymaps with keymaps = false')
    after_first = lines
  end },

  { 'one undo restores the original exactly', function()
    vim.cmd('silent undo')
    H.eq(ORIGINAL, H.lines(buf), 'buffer after one undo')
    vim.cmd('silent redo')
    H.eq(after_first, H.lines(buf), 'buffer after redo')
  end },

  { 'follow-up continues the same session on the refined region', function()
    local done = H.run_job('CopySpecFollowup now make it shorter')
    assert(not done.err, vim.inspect(done.err))
    H.eq(first.session, done.result.session, 'session id of the follow-up')
    H.eq(first.range.start, done.result.range.start, 'follow-up region start')
    H.eq(done.result.text, H.text_at(buf, done.result.range), 'buffer text at the follow-up range')
    vim.cmd('silent undo')
    H.eq(after_first, H.lines(buf), 'buffer after undoing the follow-up')
  end },

  { 'fix sends the diagnostic under the cursor and applies the last turn', function()
    local fixbuf = H.open('broken.py', { 'def total(xs):', '    return sum(ys)', '', '', 'x = 1' })
    local ns = vim.api.nvim_create_namespace('test-diagnostics')
    vim.diagnostic.set(ns, fixbuf, { { lnum = 1, col = 15, end_col = 17, message = "undefined name 'ys'", severity = 1 } })
    vim.api.nvim_win_set_cursor(0, { 2, 12 })
    local done = H.run_job('CopySpecFix')
    assert(not done.err, vim.inspect(done.err))
    assert(#done.result.turns >= 1, 'no turns in the fix result')
    H.eq(done.result.text, H.text_at(fixbuf, done.result.range), 'buffer text at the fix range')
    H.eq({ '', '', 'x = 1' }, vim.list_slice(H.lines(fixbuf), #H.lines(fixbuf) - 2), 'code after the enclosing function')
  end },
})
