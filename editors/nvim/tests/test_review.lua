-- Hunk-by-hunk review against the real server. What is faked, and why: the answer. The tiny test
-- model answers gibberish, so a test could not know where the hunks are; the server's test-only
-- scripted answer (H.script: COPYSPEC_TEST_ANSWER, copyspec_lsp/adapters/scripted.py) makes every turn
-- answer a known text, which still streams through the real path (shaping, streamed edits, the
-- result and its hunks, computed by the server). Keys are fed as typed, each action followed by
-- a return to the main loop, so each is its own undo step, as for a user.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local copyspec = H.setup({ max_new_tokens = 200 })
local review_ns = vim.api.nvim_create_namespace('copyspec_review')

local HEAD = { 'import json', '', '' }
local TAIL = { '', '', 'print(load_users("u.json"))' }
local ORIGINAL = {
  'def load_users(path):',
  '    f = open(path)',
  '    data = json.load(f)',
  '    f.close()',
  '    users = []',
  '    for item in data:',
  '        if item["active"] == True:',
  '            users.append(item["name"])',
  '    print("loaded", len(users), "users")',
  '    return users',
}
local ANSWER = {
  'def load_users(path):',
  '    with open(path) as f:', -- hunk 1: three lines become two
  '        data = json.load(f)',
  '    users = []',
  '    for item in data:',
  '        if item["active"]:', -- hunk 2
  '            users.append(item["name"])',
  '    return users', -- hunk 3: the print is gone
}
local REPLY = 'Here it is:\n```python\n' .. table.concat(ANSWER, '\n') .. '\n```\n'

--- The buffer's lines with `fn` as the function, and `above` / `below` lines around it all.
local function doc(fn, above, below)
  local lines = vim.list_extend(vim.list_extend(vim.list_extend({}, above or {}), HEAD), fn)
  return vim.list_extend(vim.list_extend(lines, TAIL), below or {})
end

--- With the function `fn` in `lines`, `fn` with its row `row` (1-based in `fn`) set to `text`.
local function with_row(fn, row, text)
  local out = vim.list_extend({}, fn)
  out[row] = text
  return out
end

--- Types `typed` as a user would ('t': as typed, so each command starts its own undo block,
--- which keys fed as from a mapping would not), then goes back to the main loop, as a user
--- pauses between actions.
local function keys(typed)
  vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes(typed, true, false, true), 'xt', false)
  H.sleep(1)
end

--- What the review shows: rows marked added / removed (0-based) and the virtual lines' texts.
local function shown(buf)
  local out = { added = {}, removed = {}, virt = {} }
  for _, m in ipairs(vim.api.nvim_buf_get_extmarks(buf, review_ns, 0, -1, { details = true })) do
    local d = m[4]
    if d.line_hl_group == 'CopySpecAdded' then
      table.insert(out.added, m[2])
    elseif d.line_hl_group == 'CopySpecRemoved' then
      table.insert(out.removed, m[2])
    end
    for _, line in ipairs(d.virt_lines or {}) do
      table.insert(out.virt, { line[1][1], line[1][2] })
    end
  end
  return out
end

--- Runs the refinement of the function (rows 4-13) with the scripted answer.
local function refine(buf)
  H.script(REPLY)
  local done = H.run_job('4,13CopySpecRefine use a with block, test truthiness, drop the print')
  H.unscript()
  assert(not done.err, vim.inspect(done.err))
  H.eq(3, #done.result.hunks, 'three hunks in the result: ' .. vim.inspect(done.result.hunks))
  return done
end

H.run({
  { 'a streamed three-hunk answer: accept the first and third, reject the second; exact, typing kept, one undo per action', function()
    local buf = H.open('review.py', doc(ORIGINAL))
    refine(buf)
    H.eq(doc(ANSWER), H.lines(buf), 'the answer streamed in')
    local s = shown(buf)
    H.eq({ 4, 5, 8 }, s.added, 'the answer\'s changed rows are marked added')
    local removed = vim.tbl_map(function(v)
      return v[1]
    end, vim.tbl_filter(function(v)
      return v[2] == 'CopySpecRemoved'
    end, s.virt))
    H.eq({ ORIGINAL[2], ORIGINAL[3], ORIGINAL[4], ORIGINAL[7], ORIGINAL[9] }, removed, 'the original lines show as removed')
    assert(s.virt[1][1]:find('^CopySpec hunk 1/3 · ga accept · gx reject'), 'a hint above each hunk: ' .. s.virt[1][1])
    assert(vim.fn.maparg('ga', 'n') ~= '', 'the review keys are mapped')

    -- 1. Accept the first hunk with the cursor on it: the buffer keeps it, no undo step.
    local before = vim.fn.changenr()
    vim.api.nvim_win_set_cursor(0, { 5, 0 })
    keys('ga')
    H.eq(doc(ANSWER), H.lines(buf), 'accepting a streamed hunk changes nothing')
    H.eq(before, vim.fn.changenr(), 'and makes no undo step')
    -- The user types above the region and at the end of the file: the hunks move with the text.
    keys('ggO# typed above<Esc>')
    keys('Go# typed below<Esc>')
    H.eq({ 9, 11 }, vim.tbl_map(function(h)
      return h.start
    end, require('copyspec.review').reviews[buf].hunks), 'the two hunks left moved down a row')
    -- 2. From the top, the next hunk is the second: reject it.
    keys('gg]hgx')
    local chosen = with_row(ANSWER, 6, ORIGINAL[7])
    local typed = function(fn)
      return doc(fn, { '# typed above' }, { '# typed below' })
    end
    H.eq(typed(chosen), H.lines(buf), 'the second hunk has its original line back')
    -- 3. The next hunk is the third: accept it.
    keys(']hga')
    H.eq(typed(chosen), H.lines(buf), 'exactly as chosen, the typing kept')
    H.eq({ added = {}, removed = {}, virt = {} }, shown(buf), 'the review is over')
    H.eq('', vim.fn.maparg('ga', 'n'), 'its keys are gone')
    -- One undo takes back the last action that changed the buffer (the reject), and only it.
    vim.cmd('silent undo')
    H.eq(typed(ANSWER), H.lines(buf), 'undo')
  end },

  { 'reject all is one undo step; a hunk the user edits leaves the review as typed', function()
    local buf = H.open('review_all.py', doc(ORIGINAL))
    refine(buf)
    keys('9G0wiMINE <Esc>') -- inside the second hunk's row
    local mine = with_row(ANSWER, 6, '        MINE if item["active"]:')
    H.eq(doc(mine), H.lines(buf))
    H.eq({ 4, 10 }, vim.tbl_map(function(h)
      return h.start
    end, require('copyspec.review').reviews[buf].hunks), 'the edited hunk left the review')
    keys('gX')
    local back = vim.list_extend(vim.list_slice(ORIGINAL, 1, 6), { mine[6], ORIGINAL[8], ORIGINAL[9], ORIGINAL[10] })
    H.eq(doc(back), H.lines(buf), 'the other hunks have their original lines back, the typing stays')
    vim.cmd('silent undo')
    H.eq(doc(mine), H.lines(buf), 'one undo step')
  end },

  { 'preview: the original stays, the hunks show against it; accept all is one undo step; reject all leaves it', function()
    copyspec.config.apply_mode = 'preview'
    local buf = H.open('review_preview.py', doc(ORIGINAL))
    local edits = H.edits
    refine(buf)
    H.eq(edits, H.edits, 'no edit reached the buffer')
    H.eq(doc(ORIGINAL), H.lines(buf), 'the original stays')
    local s = shown(buf)
    H.eq({ 4, 5, 6, 9, 11 }, s.removed, 'the original\'s changed rows are marked removed')
    local added = vim.tbl_map(function(v)
      return v[1]
    end, vim.tbl_filter(function(v)
      return v[2] == 'CopySpecAdded'
    end, s.virt))
    H.eq({ ANSWER[2], ANSWER[3], ANSWER[6] }, added, 'the answer\'s lines show as added')
    keys('gA')
    H.eq(doc(ANSWER), H.lines(buf), 'accept all puts the answer in')
    vim.cmd('silent undo')
    H.eq(doc(ORIGINAL), H.lines(buf), 'one undo step')
    refine(buf)
    keys('gX')
    H.eq(doc(ORIGINAL), H.lines(buf), 'reject all leaves the original')
    H.eq({ added = {}, removed = {}, virt = {} }, shown(buf), 'the review is over')
    copyspec.config.apply_mode = 'stream'
  end },
})
