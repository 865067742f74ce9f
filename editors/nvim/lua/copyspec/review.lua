-- Hunk-by-hunk review of a finished answer, in the buffer itself. The server sends the hunks with
-- the result (copyspec_lsp/flow/hunks.py: whole rows, the same for every editor); the buffer holds one
-- side of each hunk and the other side shows as virtual lines:
-- - a streamed answer is in the buffer: its rows are marked as added and the original lines they
--   replaced show above them as removed; reject puts a hunk's original lines back, accept keeps it;
-- - a preview (apply_mode = 'preview') leaves the original in the buffer: its rows are marked as
--   removed and the answer's lines show below them as added; accept puts them in, reject leaves it.
-- Each action that changes the buffer is one nvim_buf_set_lines (one undo step from a key or a
-- command). Hunks follow the user's edits around them by row (on_lines); a hunk whose rows the
-- user edits leaves the review as it is, so a swap never lands on the user's text.
local R = {}

local ns = vim.api.nvim_create_namespace('copyspec_review')
vim.api.nvim_set_hl(0, 'CopySpecAdded', { default = true, link = 'DiffAdd' })
vim.api.nvim_set_hl(0, 'CopySpecRemoved', { default = true, link = 'DiffDelete' })

--- Buffer-local keys while a review is shown (setup's review_keys).
R.keys = { accept = 'ga', reject = 'gx', accept_all = 'gA', reject_all = 'gX', next = ']h', prev = '[h' }
--- Reviews per buffer: { answer_shown, hunks = { { id, start, end_, shown, other } } }.
R.reviews = {}
local attached = {}

local function notify(msg, level)
  vim.notify('CopySpec: ' .. msg, level or vim.log.levels.INFO)
end

--- Where rows [h.start, h.end_) stand after rows [first, last_old) became [first, last_new), or
--- nil when the change touches them (a row of theirs; for no rows, the line break they sit at).
function R.track_rows(h, first, last_old, last_new)
  local touched
  if h.end_ > h.start then
    touched = first < h.end_ and last_old > h.start
  else
    touched = first < h.start and last_old > h.start
  end
  if touched then
    return nil
  end
  if last_old > h.start then -- the change is below
    return h.start, h.end_
  end
  local by = last_new - last_old
  return h.start + by, h.end_ + by
end

local function sorted(hunks)
  local list = vim.list_extend({}, hunks)
  table.sort(list, function(a, b)
    return a.start < b.start
  end)
  return list
end

local function reversed(list)
  local out = {}
  for i = #list, 1, -1 do
    out[#out + 1] = list[i]
  end
  return out
end

--- The hunk at `row` (a hunk of no rows counts at the row below it), else the first below it,
--- else the last one.
function R.current_hunk(hunks, row)
  local list = sorted(hunks)
  for _, h in ipairs(list) do
    if row < math.max(h.end_, h.start + 1) then
      return h
    end
  end
  return list[#list]
end

--- The next hunk starting below `row` (above it when `forward` is false), wrapping around.
function R.next_hunk(hunks, row, forward)
  local list = sorted(hunks)
  if forward == false then
    list = reversed(list)
  end
  for _, h in ipairs(list) do
    if (forward == false and h.start < row) or (forward ~= false and h.start > row) then
      return h
    end
  end
  return list[1]
end

local function reads(bufnr, h)
  local rows = vim.api.nvim_buf_get_lines(bufnr, h.start, h.end_, false)
  return h.end_ <= vim.api.nvim_buf_line_count(bufnr) and vim.deep_equal(rows, h.shown)
end

local function virt(bufnr, lines, group)
  local tabs = string.rep(' ', vim.bo[bufnr].tabstop)
  return vim.tbl_map(function(line)
    return { { (line:gsub('\t', tabs)), group } }
  end, lines)
end

local function unmap(bufnr)
  for _, lhs in pairs(R.keys) do
    pcall(vim.keymap.del, 'n', lhs, { buffer = bufnr })
  end
end

local function render(bufnr)
  vim.api.nvim_buf_clear_namespace(bufnr, ns, 0, -1)
  local review = R.reviews[bufnr]
  if not review then
    return
  end
  local count = vim.api.nvim_buf_line_count(bufnr)
  local keys_hint = ''
  for _, pair in ipairs({ { 'accept', 'accept' }, { 'reject', 'reject' }, { 'accept_all', 'accept all' },
    { 'reject_all', 'reject all' }, { 'next', 'next' }, { 'prev', 'previous' } }) do
    if R.keys[pair[1]] then
      keys_hint = ('%s · %s %s'):format(keys_hint, R.keys[pair[1]], pair[2])
    end
  end
  for i, h in ipairs(sorted(review.hunks)) do
    local shown_group = review.answer_shown and 'CopySpecAdded' or 'CopySpecRemoved'
    for row = h.start, h.end_ - 1 do
      vim.api.nvim_buf_set_extmark(bufnr, ns, row, 0, { line_hl_group = shown_group })
    end
    local hint = { { ('CopySpec hunk %d/%d%s'):format(i, #review.hunks, keys_hint), 'Comment' } }
    local other = virt(bufnr, h.other, review.answer_shown and 'CopySpecRemoved' or 'CopySpecAdded')
    -- Above the hunk: the hint, and a streamed answer's removed lines; below: a preview's added.
    local above = { hint }
    if review.answer_shown or h.end_ == h.start then
      vim.list_extend(above, other)
    elseif #other > 0 then
      vim.api.nvim_buf_set_extmark(bufnr, ns, h.end_ - 1, 0, { virt_lines = other })
    end
    if h.start < count then
      vim.api.nvim_buf_set_extmark(bufnr, ns, h.start, 0, { virt_lines = above, virt_lines_above = true })
    else -- no row below the hunk: after the last one
      vim.api.nvim_buf_set_extmark(bufnr, ns, count - 1, 0, { virt_lines = above })
    end
  end
end

--- Leaves the review of `bufnr`: the buffer stays as it is.
function R.stop(bufnr)
  if R.reviews[bufnr] then
    R.reviews[bufnr] = nil
    unmap(bufnr)
    vim.api.nvim_buf_clear_namespace(bufnr, ns, 0, -1)
  end
end

local function on_lines(_, bufnr, _, first, last_old, last_new)
  local review = R.reviews[bufnr]
  if not review then
    attached[bufnr] = nil
    return true -- detach
  end
  local kept = {}
  for _, h in ipairs(review.hunks) do
    local start, end_ = R.track_rows(h, first, last_old, last_new)
    if start then
      h.start, h.end_ = start, end_
      kept[#kept + 1] = h
    end
  end
  review.hunks = kept
  vim.schedule(function()
    if R.reviews[bufnr] == review and #review.hunks == 0 then
      R.stop(bufnr)
    elseif R.reviews[bufnr] == review then
      render(bufnr)
    end
  end)
end

local function window_of(bufnr)
  local win = vim.fn.bufwinid(bufnr)
  return win ~= -1 and win or nil
end

local function cursor_row(bufnr)
  local win = window_of(bufnr)
  return win and vim.api.nvim_win_get_cursor(win)[1] - 1 or 0
end

--- Takes `hunks` out of the review; with `swap`, puts their other side in, bottom-up so each
--- hunk's rows still hold while the ones below change.
local function resolve(bufnr, review, hunks, swap)
  local gone = {}
  for _, h in ipairs(hunks) do
    gone[h] = true
  end
  review.hunks = vim.tbl_filter(function(h)
    return not gone[h]
  end, review.hunks)
  local edited = 0
  if swap then
    for _, h in ipairs(reversed(sorted(hunks))) do
      if reads(bufnr, h) then
        vim.api.nvim_buf_set_lines(bufnr, h.start, h.end_, false, h.other)
      else
        edited = edited + 1
      end
    end
  end
  if edited > 0 then
    notify('a hunk was edited since; it is left as it is', vim.log.levels.WARN)
  end
  if #review.hunks == 0 then
    R.stop(bufnr)
  else
    render(bufnr)
  end
end

local function review_of(bufnr)
  local review = R.reviews[bufnr]
  if not review then
    notify('no hunks to review in this buffer', vim.log.levels.WARN)
  end
  return review
end

--- Accept (`accepting`) or reject the hunk `id`, else the one at the cursor: a streamed hunk is
--- kept or its original lines go back; a previewed one goes in or is dropped.
function R.act(bufnr, accepting, id)
  local review = review_of(bufnr)
  if not review then
    return
  end
  local hunk
  if id then
    hunk = vim.iter(review.hunks):find(function(h)
      return h.id == id
    end)
  else
    hunk = R.current_hunk(review.hunks, cursor_row(bufnr))
  end
  if hunk then
    resolve(bufnr, review, { hunk }, accepting ~= review.answer_shown)
  end
end

--- Accept (`accepting`) or reject every hunk left.
function R.act_all(bufnr, accepting)
  local review = review_of(bufnr)
  if review then
    resolve(bufnr, review, vim.list_extend({}, review.hunks), accepting ~= review.answer_shown)
  end
end

--- Moves the cursor to the next (or, `forward` false, the previous) hunk.
function R.move(bufnr, forward)
  local review = review_of(bufnr)
  local win = window_of(bufnr)
  if not review or not win then
    return
  end
  local hunk = R.next_hunk(review.hunks, cursor_row(bufnr), forward)
  if hunk then
    vim.api.nvim_win_set_cursor(win, { math.min(hunk.start, vim.api.nvim_buf_line_count(bufnr) - 1) + 1, 0 })
  end
end

--- Offers the result's `hunks` (wire form) for review in `bufnr`, which shows the answer
--- (`answer_shown`) or the original, `shift` rows below where the result says. A hunk whose rows
--- do not read what the result says is left out: it is never swapped.
function R.start(bufnr, hunks, answer_shown, shift)
  R.stop(bufnr)
  local list = {}
  for id, w in ipairs(hunks or {}) do
    local range = answer_shown and w.range or w.originalRange
    local h = {
      id = id,
      start = range.start.line + (shift or 0),
      end_ = range['end'].line + (shift or 0),
      shown = answer_shown and w.newLines or w.originalLines,
      other = answer_shown and w.originalLines or w.newLines,
    }
    if reads(bufnr, h) then
      list[#list + 1] = h
    end
  end
  if #list == 0 then
    return
  end
  R.reviews[bufnr] = { answer_shown = answer_shown, hunks = list }
  if not attached[bufnr] then
    attached[bufnr] = vim.api.nvim_buf_attach(bufnr, false, { on_lines = on_lines, on_detach = function()
      attached[bufnr] = nil
    end }) or nil
  end
  local k = R.keys
  local function map(lhs, fn, desc)
    if lhs then
      vim.keymap.set('n', lhs, fn, { buffer = bufnr, desc = 'CopySpec: ' .. desc })
    end
  end
  map(k.accept, function() R.act(bufnr, true) end, 'accept the hunk')
  map(k.reject, function() R.act(bufnr, false) end, 'reject the hunk')
  map(k.accept_all, function() R.act_all(bufnr, true) end, 'accept every hunk')
  map(k.reject_all, function() R.act_all(bufnr, false) end, 'reject every hunk')
  map(k.next, function() R.move(bufnr, true) end, 'next hunk')
  map(k.prev, function() R.move(bufnr, false) end, 'previous hunk')
  render(bufnr)
end

return R
