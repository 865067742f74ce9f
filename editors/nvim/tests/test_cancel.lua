-- Cancel mid-stream, by the user or by the server when the user types inside the region: the
-- buffer stops changing, typing survives, and undo still restores the original.
-- "Mid-stream" is made certain by the server's test gate (helpers.lua, H.start_held): the
-- request holds after its first edit until the test has acted, whatever the machine's speed.
-- While it holds, the request cannot finish by itself, so only the cancel or the typing can
-- end it; each test opens the gate afterwards to show that nothing more arrives.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
H.setup({ max_new_tokens = 900 })

local ORIGINAL = { 'class Stack:', '    def __init__(self):', '        self.items = []', '', 'print(Stack())' }

--- A position strictly inside the region (lines 1-3, now the streamed text and the pending
--- original lines, followed by '' and 'print(Stack())'): the region's second character.
local function inside(buf)
  local lines = H.lines(buf)
  local region = table.concat(vim.list_slice(lines, 1, #lines - 2), '\n')
  assert(#region >= 2, 'the region is too short to type inside: ' .. vim.inspect(region))
  if #lines[1] >= 1 then
    return 0, 1
  end
  return 1, 0
end

H.run({
  { 'cancel mid-stream stops the edits', function()
    local buf = H.open('stack.py', ORIGINAL)
    H.edits = 0
    H.start_held('1,3CopySpecRefine add a push method')
    vim.cmd('1,3CopySpecRefine a second request')
    assert(H.messages[#H.messages]:find('already running'), 'a second request in the same buffer was not refused')
    vim.cmd('CopySpecCancel')
    H.wait_done(30000, 'the cancel to be answered')
    local cancelled = (H.done.err and H.done.err.code == -32800) or (H.done.result and H.done.result.stats.cancelled)
    assert(cancelled, 'the request finished instead of being cancelled: ' .. vim.inspect(H.done))
    local lines, edits = H.lines(buf), H.edits
    H.release() -- a request that ignored the cancel would now stream on
    H.sleep(1500)
    H.eq(edits, H.edits, 'edits applied after the cancel')
    H.eq(lines, H.lines(buf), 'buffer after the cancel')
    H.eq('print(Stack())', lines[#lines], 'code after the region')
    vim.cmd('silent undo')
    H.eq(ORIGINAL, H.lines(buf), 'buffer after one undo')
  end },

  { 'typing inside the region mid-stream stops it and keeps the typing', function()
    local buf = H.open('typing.py', ORIGINAL)
    H.start_held('1,3CopySpecRefine add a push method')
    assert(not vim.deep_equal(ORIGINAL, H.lines(buf)), 'the first edit changed nothing')
    local row, col = inside(buf)
    vim.api.nvim_buf_set_text(buf, row, col, row, col, { 'MINE' }) -- a keystroke's worth
    local typed = H.lines(buf)
    H.wait_done(30000, 'the server to stop the request')
    H.eq(-32802, H.done.err and H.done.err.code, 'the request ended as ServerCancelled')
    assert(H.done.err.message:find('edited'), 'the reason reaches the user: ' .. H.done.err.message)
    H.eq(typed, H.lines(buf), 'buffer right after the stop')
    H.release()
    H.sleep(1000)
    H.eq(typed, H.lines(buf), 'buffer a second later')
  end },
})
