-- Cancel mid-stream, by the user or by the server when the user types inside the region: the
-- buffer stops changing, typing survives, and undo still restores the original.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
H.setup({ max_new_tokens = 900 })

local ORIGINAL = { 'class Stack:', '    def __init__(self):', '        self.items = []', '', 'print(Stack())' }

H.run({
  { 'cancel mid-stream stops the edits', function()
    local buf = H.open('stack.py', ORIGINAL)
    H.edits, H.done = 0, nil
    -- Inside the first streamed edit, the server is surely mid-request (it waits for the reply),
    -- however fast the tiny model finished generating.
    local refused
    H.on_edit = function()
      vim.cmd('1,3CopySpecRefine a second request')
      refused = H.messages[#H.messages]:find('already running')
      vim.cmd('CopySpecCancel')
    end
    vim.cmd('1,3CopySpecRefine add a push method')
    H.wait(function()
      return H.edits >= 1
    end, 60000, 'the first streamed edit')
    assert(refused, 'a second request in the same buffer was not refused')
    H.wait(function()
      return H.done ~= nil
    end, 30000, 'the cancel to be answered')
    local cancelled = (H.done.err and H.done.err.code == -32800) or (H.done.result and H.done.result.stats.cancelled)
    assert(cancelled, 'the request finished instead of being cancelled: ' .. vim.inspect(H.done))
    local lines, edits = H.lines(buf), H.edits
    H.sleep(1500)
    H.eq(edits, H.edits, 'edits applied after the cancel')
    H.eq(lines, H.lines(buf), 'buffer after the cancel')
    H.eq('print(Stack())', lines[#lines], 'code after the region')
    vim.cmd('silent undo')
    H.eq(ORIGINAL, H.lines(buf), 'buffer after one undo')
  end },

  { 'typing inside the region mid-stream stops it and keeps the typing', function()
    local buf = H.open('typing.py', ORIGINAL)
    H.edits, H.done = 0, nil
    vim.cmd('1,3CopySpecRefine add a push method')
    H.wait(function()
      return H.edits >= 2 and #H.lines(buf)[1] > 2
    end, 60000, 'streamed text in the region')
    vim.api.nvim_buf_set_text(buf, 0, 1, 0, 1, { 'MINE' }) -- a keystroke's worth, inside the region
    local typed = H.lines(buf)
    H.wait(function()
      return H.done ~= nil
    end, 30000, 'the server to stop the request')
    H.eq(-32802, H.done.err and H.done.err.code, 'the request ended as ServerCancelled')
    assert(H.done.err.message:find('edited'), 'the reason reaches the user: ' .. H.done.err.message)
    H.eq(typed, H.lines(buf), 'buffer right after the stop')
    H.sleep(1000)
    H.eq(typed, H.lines(buf), 'buffer a second later')
  end },
})
