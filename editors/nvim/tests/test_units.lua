-- The plugin's pure functions (no server needed).
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local copyspec = require('copyspec')

H.run({
  { 'chunks rebuild the text in UTF-16 units; a lost or wrong one is refused', function()
    local state = {}
    local function chunk(seq, start, insert, length, final)
      return { seq = seq, start = start, insert = insert, length = length, final = final and true or nil, text = final }
    end
    H.eq('a😀', copyspec.apply_chunk(state, chunk(1, 0, 'a😀', 3)), 'first')
    H.eq('a😀b\n', copyspec.apply_chunk(state, chunk(2, 3, 'b\n', 5)), 'appended after a surrogate pair')
    H.eq('a😀X', copyspec.apply_chunk(state, chunk(3, 3, 'X', 4)), 'a change that takes text back')
    H.eq('a😀X é', copyspec.apply_chunk(state, chunk(4, 4, ' é', 6, 'a😀X é')), 'final')
    H.eq('b', copyspec.apply_chunk(state, chunk(1, 0, 'b', 1)), 'a new turn starts afresh')
    H.eq(nil, (copyspec.apply_chunk(state, chunk(3, 1, 'c', 2))), 'a gap')
    H.eq(nil, (copyspec.apply_chunk({}, chunk(1, 0, 'ab', 3))), 'a wrong length')
    H.eq(nil, (copyspec.apply_chunk({}, chunk(1, 0, 'a', 1, 'b'))), 'a wrong final text')
  end },

  { 'final stats and status are formatted for messages', function()
    H.eq('41.3 tok/s · 63% copied · 80 tokens',
      copyspec.format_stats({ tokens_per_second = 41.26, copied_share = 0.634, new_tokens = 80 }), 'stats')
    H.eq('server 0.1.0, model /m on cpu (float32): error\nerror: no weights\nqueue 0, sessions 0',
      copyspec.format_status({ version = '0.1.0', model = '/m', device = 'cpu', dtype = 'float32', state = 'error',
        error = 'no weights', queue = 0, sessions = {} }), 'status')
  end },

  { 'review: hunks follow changes by row; one a change touches leaves', function()
    local review = require('copyspec.review')
    local function track(start, end_, first, last_old, last_new)
      return { review.track_rows({ start = start, end_ = end_ }, first, last_old, last_new) }
    end
    H.eq({ 7, 9 }, track(5, 7, 0, 1, 3), 'two rows inserted above')
    H.eq({ 5, 7 }, track(5, 7, 4, 5, 5), 'typing on the row above')
    H.eq({ 5, 7 }, track(5, 7, 7, 8, 9), 'the row below')
    H.eq({}, track(5, 7, 6, 7, 7), 'typing on its last row')
    H.eq({}, track(5, 7, 4, 6, 5), 'the row above joined with its first')
    H.eq({ 5, 5 }, track(5, 5, 4, 5, 5), 'a hunk of no rows: typing on the row above it')
    H.eq({}, track(5, 5, 4, 6, 5), 'a hunk of no rows: the line break it sits at removed')
  end },

  { 'review: the hunk at the cursor, and the next and previous ones, wrapping around', function()
    local review = require('copyspec.review')
    local hunks = { { id = 1, start = 2, end_ = 4 }, { id = 2, start = 8, end_ = 8 }, { id = 3, start = 12, end_ = 13 } }
    H.eq(1, review.current_hunk(hunks, 3).id, 'on its row')
    H.eq(2, review.current_hunk(hunks, 8).id, 'a hunk of no rows counts at the row below it')
    H.eq(3, review.current_hunk(hunks, 20).id, 'below every hunk: the last')
    H.eq(2, review.next_hunk(hunks, 2, true).id, 'next')
    H.eq(1, review.next_hunk(hunks, 12, true).id, 'next wraps to the first')
    H.eq(3, review.next_hunk(hunks, 2, false).id, 'previous wraps to the last')
  end },
})
