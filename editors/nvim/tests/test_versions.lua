-- Versioned streamed edits against the real server: each is a documentChanges edit stamped with
-- the buffer's version; one computed before the user typed (a stale version) is refused before
-- anything is applied, the server computes it again, and the typing stays; a cancel after
-- typing above the region still puts the original back; non-job edits work in both forms; and a
-- server without versioning (changes) still streams, refusing an edit the user's typing beat.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local copyspec = H.setup({ max_new_tokens = 60 })

local ORIGINAL = { '# header', 'def area(w, h):', '    return w * h', '', 'print(area(1, 2))' }
local TYPED = '# typed by the user'
local diff_ns = vim.api.nvim_create_namespace('copyspec_diff')

local function client_of(buf)
  return vim.lsp.get_clients({ bufnr = buf, name = 'copyspec' })[1]
end

--- Wraps the plugin's applyEdit handler of `client`: `before(n, params)` runs just before the
--- plugin sees the n-th edit (the server already computed it), `after(n, params, result)` right
--- after the plugin answered. Returns the log of { params, result, lines } and an unwrap function.
local function intercept(client, buf, before, after)
  local plugin = client.handlers['workspace/applyEdit']
  local log = {}
  client.handlers['workspace/applyEdit'] = function(err, params, ctx)
    local n = #log + 1
    if before then
      before(n, params)
    end
    local result = plugin(err, params, ctx)
    log[n] = { params = params, result = result, lines = H.lines(buf) }
    if after then
      after(n, params, result)
    end
    return result
  end
  return log, function()
    client.handlers['workspace/applyEdit'] = plugin
  end
end

local function run(cmd)
  H.done = nil
  vim.cmd(cmd)
  H.wait(function()
    return H.done ~= nil
  end, 90000, cmd .. ' to finish')
  return H.done
end

local function type_above(buf)
  vim.api.nvim_buf_set_lines(buf, 0, 0, false, { TYPED }) -- the user adds a line above the region
end

--- Starts `cmd` held after its first edit by the server's test gate (helpers.lua) and checks
--- that the stream has more to send: the first edit shows pending original lines, which only
--- a later edit removes. The caller acts, then releases the gate.
local function start_mid_stream(buf, cmd)
  H.start_held(cmd)
  local pending = vim.tbl_filter(function(m)
    return m[4].line_hl_group == 'CopySpecPending'
  end, vim.api.nvim_buf_get_extmarks(buf, diff_ns, 0, -1, { details = true }))
  assert(#pending > 0, 'the first edit shows no pending lines, so no second edit may come: ' .. vim.inspect(H.lines(buf)))
end

H.run({
  { 'streamed edits are versioned, minimal and match the buffer version', function()
    local buf = H.open('versioned.py', ORIGINAL)
    local client = client_of(buf)
    local versions = {}
    local log, unwrap = intercept(client, buf, function(n)
      versions[n] = vim.lsp.util.buf_versions[buf]
    end)
    local done = run('2,3CopySpecRefine rename w to width')
    unwrap()
    assert(not done.err, vim.inspect(done.err))
    assert(#log >= 2, 'expected several streamed edits, got ' .. #log)
    local minimal = false
    for n, e in ipairs(log) do
      H.eq(nil, e.params.edit.changes, 'edit ' .. n .. ' has no changes map')
      local dc = e.params.edit.documentChanges
      H.eq(1, #dc, 'edit ' .. n .. ': one TextDocumentEdit')
      H.eq(vim.uri_from_bufnr(buf), dc[1].textDocument.uri, 'edit ' .. n .. ' uri')
      H.eq(versions[n], dc[1].textDocument.version, 'edit ' .. n .. ' stamped with the buffer version')
      H.eq(true, e.result.applied, 'edit ' .. n .. ' applied')
      local r = dc[1].edits[1].range
      minimal = minimal or r.start.line > 1 or r.start.character > 0
    end
    assert(minimal, 'every edit replaced the region from its start: ' .. vim.inspect(log[#log].params))
    H.eq(done.result.text, H.text_at(buf, done.result.range), 'exactly the final text')
    vim.cmd('silent undo')
    H.eq(ORIGINAL, H.lines(buf), 'one undo restores the original')
  end },

  { 'a stale edit is refused before it is applied, computed again, and the typing stays', function()
    local buf = H.open('stale.py', ORIGINAL)
    local client = client_of(buf)
    local typed_lines, first_marked = nil, {}
    local log, unwrap = intercept(client, buf, function(n)
      if n == 2 then -- the server computed edit 2 against the text before this keystroke
        type_above(buf)
        typed_lines = H.lines(buf)
      end
    end, function(n)
      -- The first decorated row: the streamed lines start where the region starts.
      local marks = vim.api.nvim_buf_get_extmarks(buf, diff_ns, 0, -1, {})
      first_marked[n] = marks[1] and marks[1][2] or false
    end)
    -- Held after edit 1 (the gate) showing pending lines, so an edit 2 is surely still to
    -- come; the typing happens inside its hook, while the server waits for its answer.
    start_mid_stream(buf, '2,3CopySpecRefine rename w to width')
    H.eq(1, #log, 'edits before the gate opened')
    H.release()
    local done = H.wait_done(90000, 'the refinement to finish')
    unwrap()
    assert(not done.err, vim.inspect(done.err))
    local refused = log[2]
    H.eq(false, refused.result.applied, 'the stale edit was refused: ' .. vim.inspect(refused.result))
    assert(tostring(refused.result.failureReason):find('stale', 1, true), refused.result.failureReason)
    H.eq(typed_lines, refused.lines, 'nothing of the stale edit was applied')
    assert(#log >= 3, 'the server did not compute the edit again')
    local stale_version = refused.params.edit.documentChanges[1].textDocument.version
    local again = log[3].params.edit.documentChanges[1].textDocument.version
    assert(again > stale_version, ('the next edit is against the newer text (%d, then %d)'):format(stale_version, again))
    H.eq(1, first_marked[1], 'decorations of edit 1 start at the region')
    for n = 3, #log do
      H.eq(true, log[n].result.applied, 'edit ' .. n .. ' applied')
      -- One announcement per applyEdit, the refused one included: else edit 3 would be read
      -- with edit 2's announcement, computed before the typing moved the region down.
      if first_marked[n] then
        H.eq(2, first_marked[n], 'decorations of edit ' .. n .. ' start at the moved region')
      end
    end
    local lines = H.lines(buf)
    H.eq({ TYPED, '# header' }, vim.list_slice(lines, 1, 2), 'the typing and the line above the region')
    H.eq(2, done.result.range.start.line, 'the region moved down with the typing')
    H.eq(done.result.text, H.text_at(buf, done.result.range), 'exactly the final text')
    H.eq({ '', 'print(area(1, 2))' }, vim.list_slice(lines, #lines - 1), 'after the region')
    local answered = H.lines(buf)
    vim.cmd('silent undo')
    -- The typing split the stream's undo step; the plugin rejoins it once the answer is in.
    H.eq({ TYPED, unpack(ORIGINAL) }, H.lines(buf), 'one undo restores the original below the typing')
    vim.cmd('silent redo')
    H.eq(answered, H.lines(buf), 'one redo puts the answer back')
  end },

  { 'a cancel after typing above the region puts the original back below the typing', function()
    local buf = H.open('cancel_moved.py', ORIGINAL)
    local client = client_of(buf)
    local log, unwrap = intercept(client, buf)
    start_mid_stream(buf, '2,3CopySpecRefine rewrite it') -- the gate holds it after edit 1
    H.eq(true, log[1].result.applied, 'edit 1 applied')
    type_above(buf)
    copyspec.cancel(buf)
    local done = H.wait_done(30000, 'the cancel')
    H.release()
    unwrap()
    local cancelled = (done.err and done.err.code == -32800) or (done.result and done.result.stats.cancelled)
    assert(cancelled, 'the request was not cancelled: ' .. vim.inspect(done))
    H.eq({ TYPED, unpack(ORIGINAL) }, H.lines(buf), 'the original back, the typing kept')
  end },

  { 'edits outside a request: both forms work, a stale versioned one is refused', function()
    local buf = H.open('other.py', { 'a = 1', 'b = 2' })
    local client = client_of(buf)
    local handler = client.handlers['workspace/applyEdit']
    local uri = vim.uri_from_bufnr(buf)
    local ctx = { client_id = client.id, method = 'workspace/applyEdit' }
    local function edit_line(row, text)
      return { range = { start = { line = row, character = 0 }, ['end'] = { line = row, character = 5 } }, newText = text }
    end
    local r = handler(nil, { edit = { changes = { [uri] = { edit_line(0, 'a = 3') } } } }, ctx)
    H.eq(true, r.applied, 'a changes edit')
    local version = vim.lsp.util.buf_versions[buf]
    r = handler(nil, { edit = { documentChanges = { { textDocument = { uri = uri, version = version },
      edits = { edit_line(1, 'b = 4') } } } } }, ctx)
    H.eq(true, r.applied, 'a current versioned edit')
    r = handler(nil, { edit = { documentChanges = { { textDocument = { uri = uri, version = version },
      edits = { edit_line(0, 'a = 5') } } } } }, ctx)
    H.eq(false, r.applied, 'a stale versioned edit')
    assert(r.failureReason:find('stale', 1, true), r.failureReason)
    r = handler(nil, { edit = { documentChanges = { { textDocument = { uri = uri },
      edits = { edit_line(0, 'a = 6') } } } } }, ctx)
    H.eq(true, r.applied, 'a versioned edit without a version (null)')
    H.eq({ 'a = 6', 'b = 4' }, H.lines(buf), 'buffer after the edits')
  end },

  { 'a server without versioning: changes edits stream; one the typing beat is refused', function()
    for _, c in ipairs(vim.lsp.get_clients({ name = 'copyspec' })) do
      c:stop()
    end
    H.wait(function()
      return #vim.lsp.get_clients({ name = 'copyspec' }) == 0
    end, 10000, 'the server to stop')
    vim.lsp.config('copyspec', { capabilities = { workspace = { workspaceEdit = { documentChanges = false } } } })
    local buf = H.open('unversioned.py', ORIGINAL)
    local client = client_of(buf)
    local log, unwrap = intercept(client, buf)
    local done = run('2,3CopySpecRefine rename w to width')
    unwrap()
    assert(not done.err, vim.inspect(done.err))
    assert(#log >= 2, 'expected several streamed edits, got ' .. #log)
    for n, e in ipairs(log) do
      H.eq(nil, e.params.edit.documentChanges, 'edit ' .. n .. ' is unversioned')
      H.eq(true, e.result.applied, 'edit ' .. n .. ' applied')
    end
    H.eq(done.result.text, H.text_at(buf, done.result.range), 'exactly the final text')
    vim.cmd('silent undo')
    H.eq(ORIGINAL, H.lines(buf), 'one undo restores the original')

    -- Typing above the region after the server computed an edit: the region the edit names no
    -- longer holds the streamed text, so it is refused and the server stops; nothing is lost.
    -- Held after edit 1 (the gate), so edit 2 is surely still to come.
    local typed_lines
    log, unwrap = intercept(client, buf, function(n)
      if n == 2 then
        type_above(buf)
        typed_lines = H.lines(buf)
      end
    end)
    start_mid_stream(buf, '2,3CopySpecRefine rename w to width')
    H.release()
    done = H.wait_done(90000, 'the server to stop the request')
    unwrap()
    H.eq(false, log[2].result.applied, 'the edit the typing beat was refused')
    H.eq(-32802, done.err and done.err.code, 'the server stopped the request')
    H.eq(typed_lines, H.lines(buf), 'the buffer as the user left it')
  end },
})
