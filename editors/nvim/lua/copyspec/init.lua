-- CopySpec for Neovim 0.11+: a thin client of `copyspec-lsp --stdio`.
--
-- Refinements stream into the buffer through the server's workspace/applyEdit calls (apply =
-- "stream"), so the server itself follows the region and cancels when the user types inside it.
-- This plugin only makes the stream ONE undo step (undojoin), shows progress as virtual text
-- from copyspec/chunk, and keeps each session's region in an extmark for follow-ups.
-- Each streamed edit is the minimal change inside the region, stamped with the document version
-- the server computed it against (documentChanges, which this plugin advertises): a stale one is
-- refused before anything is applied, and the server computes it again against the newer text.
-- While it streams, the original's not-yet-rewritten rest stays below the streamed text,
-- highlighted as pending (the server says where with copyspec/pending); a cancel puts the
-- original back unless cancel_keeps_partial. With apply_mode = 'preview' the answer streams
-- into an inline diff (old lines red, new ones green as virtual lines) and nothing edits the
-- buffer. Either way the finished answer's hunks (sent with the result) are then offered for
-- review one by one (review.lua): accept or reject each, or all.
local M = {}
local review = require('copyspec.review')

local ns = vim.api.nvim_create_namespace('copyspec')
local diff_ns = vim.api.nvim_create_namespace('copyspec_diff')
vim.api.nvim_set_hl(0, 'CopySpecStreamed', { default = true, link = 'DiffAdd' })
vim.api.nvim_set_hl(0, 'CopySpecPending', { default = true, link = 'DiffDelete' })
local REQUEST_CANCELLED = -32800 -- the user's own cancel
local SERVER_CANCELLED = -32802 -- the server stopped it; the message says why

M.config = {
  cmd = { 'copyspec-lsp', '--stdio' },
  -- Sent as initializationOptions, as it is (the server's camelCase keys: model, device, dtype,
  -- maxNewTokens, prediction, costAware, compile, ...; docs/protocol.md).
  init_options = {},
  filetypes = nil, -- nil: every filetype
  root_markers = { '.git', 'pyproject.toml', 'package.json' },
  max_new_tokens = nil, -- per request; nil: the server's default
  apply_mode = 'stream', -- 'stream': into the buffer; 'preview': inline diff, Accept/Reject
  cancel_keeps_partial = false, -- on cancel keep the partial answer instead of the original
  -- Buffer-local while hunks are offered for review (false drops one).
  review_keys = { accept = 'ga', reject = 'gx', accept_all = 'gA', reject_all = 'gX', next = ']h', prev = '[h' },
  -- Keeps Hugging Face libraries from drawing progress bars or warning into lsp.log.
  cmd_env = { HF_HUB_DISABLE_PROGRESS_BARS = '1', TRANSFORMERS_VERBOSITY = 'error', TQDM_DISABLE = '1',
    PYTHONWARNINGS = 'ignore::FutureWarning' },
  keymaps = {
    refine = '<leader>cr', -- normal: enclosing function; visual: the selected lines
    fix = '<leader>cf',
    followup = '<leader>cc',
    cancel = '<leader>cx',
    status = '<leader>cs',
  },
}

--- Running request per buffer: { client_id, id, row, pending (announcements not yet matched to
--- an edit), cancelled?, changenr?, split? (something else changed the buffer between two of
--- its edits), original?, last_text?, region? (extmark over the streamed region), mark? }.
M.jobs = {}
--- Last session per buffer: { session, mark } where mark is an extmark spanning its region.
M.sessions = {}

local function notify(msg, level)
  vim.notify('CopySpec: ' .. msg, level or vim.log.levels.INFO)
end

function M.format_stats(stats)
  if type(stats) ~= 'table' then
    return ''
  end
  local parts = {}
  if type(stats.tokens_per_second) == 'number' then
    parts[#parts + 1] = ('%.1f tok/s'):format(stats.tokens_per_second)
  end
  if type(stats.copied_share) == 'number' then
    parts[#parts + 1] = ('%d%% copied'):format(math.floor(stats.copied_share * 100 + 0.5))
  end
  if type(stats.new_tokens) == 'number' then
    parts[#parts + 1] = ('%d tokens'):format(stats.new_tokens)
  end
  return table.concat(parts, ' · ')
end

local function get_client(bufnr)
  local client = vim.lsp.get_clients({ bufnr = bufnr, name = 'copyspec' })[1]
  if not client then
    notify('the server is not attached to this buffer (see :checkhealth copyspec)', vim.log.levels.ERROR)
  end
  return client
end

-- Positions: LSP counts in the client's offset encoding, extmarks in bytes.
local function line_text(bufnr, row)
  return vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
end

local function to_lsp(bufnr, row, col, enc)
  local line = line_text(bufnr, row)
  return { line = row, character = vim.str_utfindex(line, enc, math.min(col, #line), false) }
end

local function to_byte(bufnr, pos, enc)
  return pos.line, vim.str_byteindex(line_text(bufnr, pos.line), enc, pos.character, false)
end

local function show_progress(bufnr, job, text)
  job.mark = vim.api.nvim_buf_set_extmark(bufnr, ns, job.row, 0, {
    id = job.mark,
    virt_lines = { { { 'CopySpec ' .. text, 'Comment' } } },
    virt_lines_above = true,
    right_gravity = false,
  })
end

local function remember_session(bufnr, session, range, enc)
  local old = M.sessions[bufnr]
  local srow, scol = to_byte(bufnr, range.start, enc)
  local erow, ecol = to_byte(bufnr, range['end'], enc)
  M.sessions[bufnr] = {
    session = session,
    -- An extmark range follows edits around it, so a follow-up targets where the text is now.
    mark = vim.api.nvim_buf_set_extmark(bufnr, ns, srow, scol, {
      id = old and old.mark, end_row = erow, end_col = ecol, right_gravity = false, end_right_gravity = true,
    }),
  }
end

-- Where the job's region stands now (bytes), as the extmark set after its last applied edit
-- followed the changes since (typing above it moves it; typing at or inside it widens it).
local function region_now(bufnr, job)
  local ok, m = pcall(vim.api.nvim_buf_get_extmark_by_id, bufnr, ns, job.region or -1, { details = true })
  if not ok or not m[1] then
    return nil
  end
  return m[1], m[2], m[3].end_row, m[3].end_col
end

-- The job's region (bytes) and its lines, if it still holds what the stream last wrote there
-- and the original is known; nil once anything else changed it: leave the user's text alone.
local function streamed_region(bufnr, job)
  local srow, scol, erow, ecol = region_now(bufnr, job)
  if not job.original or not job.last_text or not srow then
    return nil
  end
  local ok, lines = pcall(vim.api.nvim_buf_get_text, bufnr, srow, scol, erow, ecol, {})
  if not ok or table.concat(lines, '\n') ~= job.last_text then
    return nil
  end
  return srow, scol, erow, ecol, lines
end

-- Puts the original back after the user's cancel (one undo step with the stream).
local function restore(bufnr, job)
  local srow, scol, erow, ecol = streamed_region(bufnr, job)
  if M.config.cancel_keeps_partial or not srow then
    return
  end
  vim.api.nvim_buf_call(bufnr, function()
    if job.changenr == vim.fn.changenr() then
      pcall(vim.cmd.undojoin)
    end
    vim.api.nvim_buf_set_text(bufnr, srow, scol, erow, ecol, vim.split(job.original, '\n', { plain = true }))
  end)
end

-- Typing elsewhere while the answer streamed split the stream's undo step, and one undo
-- would leave the region half-streamed. Undo blocks cannot be merged, so the original goes
-- back and the answer in again, each its own block: one undo then restores the original
-- (the typing kept), one redo the answer.
local function one_undo_step(bufnr, job)
  local srow, scol, erow, ecol, answer = streamed_region(bufnr, job)
  if not job.split or not srow then
    return
  end
  local original = vim.split(job.original, '\n', { plain = true })
  vim.api.nvim_buf_call(bufnr, function()
    vim.cmd('let &g:undolevels = &g:undolevels') -- a new undo block (:h undo-break)
    vim.api.nvim_buf_set_text(bufnr, srow, scol, erow, ecol, original)
    vim.cmd('let &g:undolevels = &g:undolevels')
    local end_col = (#original == 1 and scol or 0) + #original[#original]
    vim.api.nvim_buf_set_text(bufnr, srow, scol, srow + #original - 1, end_col, answer)
  end)
end

local preview_show

local function finish(bufnr, job, err, result, enc)
  if M.jobs[bufnr] == job then
    M.jobs[bufnr] = nil
  end
  local region_row = region_now(bufnr, job) -- where the region stands now (typing moves it)
  if job.mark then
    pcall(vim.api.nvim_buf_del_extmark, bufnr, ns, job.mark)
  end
  vim.api.nvim_buf_clear_namespace(bufnr, diff_ns, 0, -1)
  if not job.preview and (job.cancelled or (err and err.code == REQUEST_CANCELLED)) then
    restore(bufnr, job)
  elseif not job.preview and not err and not (result and result.stats and result.stats.cancelled) then
    one_undo_step(bufnr, job)
  end
  if job.region then
    pcall(vim.api.nvim_buf_del_extmark, bufnr, ns, job.region)
  end
  -- For statuslines and scripts: `User CopySpecDone` with data = { buf, err, result }.
  vim.api.nvim_exec_autocmds('User', { pattern = 'CopySpecDone', data = { buf = bufnr, err = err, result = result } })
  if err then
    if job.cancelled then
      notify('cancelled')
    elseif err.code == REQUEST_CANCELLED then
      notify(err.message)
    elseif err.code == SERVER_CANCELLED then
      notify(err.message, vim.log.levels.WARN)
    else
      notify(err.message or vim.inspect(err), vim.log.levels.ERROR)
    end
    return
  end
  local keys = M.config.review_keys or {}
  local how = ('%s accepts a hunk, %s rejects it (:CopySpecAccept / :CopySpecReject)'):format(
    keys.accept or '-', keys.reject or '-')
  if job.preview then
    remember_session(bufnr, result.session, result.replacedRange or result.range, enc)
    review.start(bufnr, result.hunks, false, 0)
    return notify(('preview ready: %d hunks; %s'):format(#(result.hunks or {}), how))
  end
  remember_session(bufnr, result.session, result.range, enc)
  -- Typing above the region after the server answered moved it: the hunks move with it.
  review.start(bufnr, result.hunks, true, region_row and region_row - result.range.start.line or 0)
  local summary = M.format_stats(result.stats)
  if result.turns and result.ok == false then
    summary = ('check still fails after %d turns; %s'):format(#result.turns, summary)
  end
  if review.reviews[bufnr] then
    summary = ('%s; %d hunks: %s'):format(summary, #review.reviews[bufnr].hunks, how)
  end
  notify((result.stats and result.stats.cancelled) and 'cancelled' or ('done: ' .. summary))
end

--- Sends `method` for `range` (LSP, in the client's encoding) with `extra` params.
function M.start(bufnr, method, range, extra)
  local client = get_client(bufnr)
  if not client then
    return
  end
  if M.jobs[bufnr] then
    -- Edits carry no request id, so two requests in one buffer could not be told apart.
    return notify('a request is already running in this buffer (:CopySpecCancel first)', vim.log.levels.WARN)
  end
  local preview = M.config.apply_mode == 'preview'
  review.stop(bufnr) -- a new request leaves the buffer as the review left it
  local params = vim.tbl_extend('force', {
    textDocument = { uri = vim.uri_from_bufnr(bufnr) },
    range = range,
    apply = preview and 'none' or 'stream',
    maxNewTokens = M.config.max_new_tokens,
  }, extra)
  local job = { client_id = client.id, row = range.start.line, pending = {}, preview = preview,
    requested = { range.start.line, range['end'].line } }
  local ok, id = client:request(method, params, function(err, result)
    finish(bufnr, job, err, result, client.offset_encoding)
  end, bufnr)
  if not ok then
    notify('the server is not running', vim.log.levels.ERROR)
    return
  end
  job.id = id
  M.jobs[bufnr] = job
  show_progress(bufnr, job, 'waiting for the model…')
  return id
end

local function line_range(bufnr, line1, line2, enc)
  local last = line_text(bufnr, line2 - 1)
  return { start = { line = line1 - 1, character = 0 }, ['end'] = to_lsp(bufnr, line2 - 1, #last, enc) }
end

local function cursor_range(bufnr, enc)
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  local pos = to_lsp(bufnr, row - 1, col, enc)
  return { start = pos, ['end'] = pos } -- empty: the server widens it to the enclosing function
end

local function with_instruction(given, prompt, fn)
  if given and given ~= '' then
    return fn(given)
  end
  vim.ui.input({ prompt = prompt }, function(input)
    if input and input ~= '' then
      fn(input)
    end
  end)
end

--- :CopySpecRefine [instruction] over a line range, or the enclosing function without one.
function M.refine(opts)
  local bufnr = vim.api.nvim_get_current_buf()
  local client = get_client(bufnr)
  if not client then
    return
  end
  local enc = client.offset_encoding
  local range = opts.range > 0 and line_range(bufnr, opts.line1, opts.line2, enc) or cursor_range(bufnr, enc)
  with_instruction(opts.args, 'CopySpec refine: ', function(instruction)
    M.start(bufnr, 'copyspec/refine', range, { instruction = instruction })
  end)
end

--- :CopySpecFollowup [instruction]: the next turn of this buffer's last session, on its region.
function M.followup(opts)
  local bufnr = vim.api.nvim_get_current_buf()
  local s = M.sessions[bufnr]
  local client = get_client(bufnr)
  if not client then
    return
  end
  if not s then
    return notify('no earlier refinement in this buffer', vim.log.levels.WARN)
  end
  local mark = vim.api.nvim_buf_get_extmark_by_id(bufnr, ns, s.mark, { details = true })
  local enc = client.offset_encoding
  local range = {
    start = to_lsp(bufnr, mark[1], mark[2], enc),
    ['end'] = to_lsp(bufnr, mark[3].end_row, mark[3].end_col, enc),
  }
  with_instruction(opts.args, 'CopySpec follow-up: ', function(instruction)
    M.start(bufnr, 'copyspec/refine', range, { instruction = instruction, session = s.session })
  end)
end

local function lsp_diagnostic(bufnr, d, enc)
  local lsp = vim.tbl_get(d, 'user_data', 'lsp')
  if lsp then
    return lsp
  end
  return {
    range = { start = to_lsp(bufnr, d.lnum, d.col, enc), ['end'] = to_lsp(bufnr, d.end_lnum or d.lnum, d.end_col or d.col, enc) },
    message = d.message,
    severity = d.severity,
    source = d.source,
    code = d.code,
  }
end

--- :CopySpecFix: the diagnostics under the cursor (or on its line) become the instruction.
function M.fix(opts)
  local bufnr = vim.api.nvim_get_current_buf()
  local client = get_client(bufnr)
  if not client then
    return
  end
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  local on_line = vim.diagnostic.get(bufnr, { lnum = row - 1 })
  local under = vim.tbl_filter(function(d)
    return d.col <= col and col <= (d.end_col or d.col)
  end, on_line)
  local diagnostics = #under > 0 and under or on_line
  if #diagnostics == 0 then
    return notify('no diagnostic under the cursor', vim.log.levels.WARN)
  end
  local enc = client.offset_encoding
  local range = opts.range > 0 and line_range(bufnr, opts.line1, opts.line2, enc) or cursor_range(bufnr, enc)
  M.start(bufnr, 'copyspec/fix', range, {
    diagnostics = vim.tbl_map(function(d)
      return lsp_diagnostic(bufnr, d, enc)
    end, diagnostics),
  })
end

--- :CopySpecCancel: this buffer's request, or every running one when this buffer has none.
function M.cancel(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local targets = M.jobs[bufnr] and { [bufnr] = M.jobs[bufnr] } or M.jobs
  if next(targets) == nil then
    return notify('nothing is running')
  end
  for _, job in pairs(targets) do
    job.cancelled = true -- from now on its edits are refused, even those already in flight
    local client = vim.lsp.get_client_by_id(job.client_id)
    if client then
      client:cancel_request(job.id)
    end
  end
end

function M.format_status(st)
  local lines = {
    ('server %s, model %s on %s (%s): %s'):format(st.version, st.model, st.device or '?', st.dtype or '?', st.state),
  }
  if st.error then
    lines[#lines + 1] = 'error: ' .. st.error
  end
  lines[#lines + 1] = ('queue %d, sessions %d'):format(st.queue or 0, #(st.sessions or {}))
  if st.lastStats then
    lines[#lines + 1] = 'last request: ' .. M.format_stats(st.lastStats)
  end
  return table.concat(lines, '\n')
end

--- :CopySpecStatus
function M.status()
  local client = vim.lsp.get_clients({ name = 'copyspec' })[1]
  if not client then
    return notify('the server is not running (see :checkhealth copyspec)', vim.log.levels.ERROR)
  end
  client:request('copyspec/status', vim.empty_dict(), function(err, st)
    if err then
      return notify(err.message, vim.log.levels.ERROR)
    end
    notify(M.format_status(st))
  end)
end

-- A turn's text, rebuilt from its copyspec/chunk changes: { seq, start, insert, length } turn
-- the text from `start` on (UTF-16 code units) into `insert`, leaving `length` units; the last
-- one (`final`) also carries the whole `text`. Returns the new text, or nil and why not.
function M.apply_chunk(state, params)
  if params.seq == 1 then
    state.text, state.seq = '', 0
  end
  if params.seq ~= (state.seq or 0) + 1 then
    return nil, ('copyspec/chunk %d after %d: one was lost'):format(params.seq, state.seq or 0)
  end
  local text = state.text or ''
  local units = vim.str_utfindex(text, 'utf-16')
  if params.start > units then
    return nil, ('copyspec/chunk %d starts past the text'):format(params.seq)
  end
  local cut = vim.str_byteindex(text, 'utf-16', params.start, false)
  text = text:sub(1, cut) .. params.insert
  if vim.str_utfindex(text, 'utf-16') ~= params.length or (params.text and params.text ~= text) then
    return nil, ('copyspec/chunk %d does not rebuild the server\'s text'):format(params.seq)
  end
  state.text, state.seq = text, params.seq
  return text
end

-- copyspec/chunk: live progress in a virtual line above the region.
local function on_chunk(_, params, ctx)
  local bufnr = vim.uri_to_bufnr(params.uri)
  local job = M.jobs[bufnr]
  if not job or job.cancelled or job.client_id ~= ctx.client_id then
    return
  end
  job.chunks = job.chunks or {}
  local text, err = M.apply_chunk(job.chunks, params)
  if not text then
    vim.notify('CopySpec: ' .. err, vim.log.levels.WARN)
    return
  end
  show_progress(bufnr, job, M.format_stats(params.stats))
  if job.preview then
    local last = job.requested[2]
    preview_show(bufnr, { srow = job.requested[1], erow = last, text = text })
  end
end

-- copyspec/pending, sent before each of a request's edits (also those the plugin then refuses):
-- { range = where the original's pending rest stands once the edit is applied (or null),
--   before = the whole region in the version the edit is computed against,
--   after = the whole region once the edit is applied }. Queued per job, one per applyEdit.
local function on_pending(_, params, ctx)
  local job = M.jobs[vim.uri_to_bufnr(params.uri)]
  if job and job.client_id == ctx.client_id then
    table.insert(job.pending, params)
  end
end

-- Highlights the streamed lines and the pending ones after a streamed edit.
local function show_stream(bufnr, start_row, pending, enc)
  vim.api.nvim_buf_clear_namespace(bufnr, diff_ns, 0, -1)
  if pending == vim.NIL or not pending then
    return
  end
  local prow = to_byte(bufnr, pending.start, enc)
  local erow = to_byte(bufnr, pending['end'], enc)
  for row = start_row, prow - 1 do
    vim.api.nvim_buf_set_extmark(bufnr, diff_ns, row, 0, { line_hl_group = 'CopySpecStreamed' })
  end
  for row = prow, erow do
    vim.api.nvim_buf_set_extmark(bufnr, diff_ns, row, 0, { line_hl_group = 'CopySpecPending' })
  end
end

-- The text an LSP range covers now, with LF line breaks.
local function text_in(bufnr, range, enc)
  local srow, scol = to_byte(bufnr, range.start, enc)
  local erow, ecol = to_byte(bufnr, range['end'], enc)
  local ok, lines = pcall(vim.api.nvim_buf_get_text, bufnr, srow, scol, erow, ecol, {})
  return ok and table.concat(lines, '\n') or nil
end

local function is_range(r)
  return type(r) == 'table' and type(r.start) == 'table' and type(r['end']) == 'table'
end

-- Why a versioned edit is stale, or nil: a TextDocumentEdit whose version differs from the
-- version of its (attached) buffer was computed against text the user has changed since.
-- (Neovim's own handler would skip it silently yet answer applied = true.)
local function stale(edit, client_id)
  for _, change in ipairs(edit.documentChanges or {}) do
    local doc = change.textDocument
    local version = doc and doc.version
    if not change.kind and type(version) == 'number' then
      local bufnr = vim.uri_to_bufnr(doc.uri)
      local now = vim.lsp.util.buf_versions[bufnr]
      if vim.lsp.buf_is_attached(bufnr, client_id) and version ~= now then
        return ('stale edit: computed against version %d of %s, the buffer is at version %d')
          :format(version, doc.uri, now)
      end
    end
  end
end

-- The one document an edit changes and whether it is versioned, for the two forms a streamed
-- edit takes: { documentChanges = { TextDocumentEdit } } or { changes = { [uri] = edits } }.
local function single_document(edit)
  local dc = edit.documentChanges
  if dc ~= nil and dc ~= vim.NIL then
    local only = #dc == 1 and dc[1]
    if only and not only.kind and only.textDocument then
      return only.textDocument.uri, true
    end
    return nil
  end
  local uris = vim.tbl_keys(edit.changes or {})
  if #uris == 1 then
    return uris[1], false
  end
end

-- workspace/applyEdit: the default handler, made safe against typing and one undo step.
-- A running job's edit (one document, either form) consumes its announcement, is refused when
-- the job was cancelled or the edit is stale, and is otherwise applied as given, joined to the
-- previous chunk's undo step; the region is then read from the announcement's `after`. Any
-- other edit goes to the default handler, except a stale versioned one, which is refused.
local function on_apply_edit(err, params, ctx)
  local edit = params.edit or {}
  local uri, versioned = single_document(edit)
  local bufnr = uri and vim.uri_to_bufnr(uri)
  local job = bufnr and M.jobs[bufnr]
  if not job or job.client_id ~= ctx.client_id then
    local reason = stale(edit, ctx.client_id)
    if reason then
      return { applied = false, failureReason = reason }
    end
    return vim.lsp.handlers['workspace/applyEdit'](err, params, ctx)
  end
  -- One announcement per applyEdit of the job, consumed whether the edit is applied or not.
  local ann = table.remove(job.pending, 1) or {}
  if job.cancelled then
    return { applied = false, failureReason = 'cancelled by the user' }
  end
  local enc = vim.lsp.get_client_by_id(ctx.client_id).offset_encoding
  local before = is_range(ann.before) and ann.before or nil
  local after = is_range(ann.after) and ann.after or nil
  if versioned then
    local reason = stale(edit, ctx.client_id)
    if reason then
      return { applied = false, failureReason = reason }
    end
  elseif job.last_text and before and text_in(bufnr, before, enc) ~= job.last_text then
    -- An unversioned edit cannot say what it was computed against; the announcement can. The
    -- region the server means must still hold what the stream last wrote there, else the user
    -- changed the buffer before the server saw it, and the edit could land on their text.
    return { applied = false, failureReason = 'the buffer changed under the streamed text' }
  end
  -- The original: the region as the first applied edit finds it, read before applying it
  -- (false: not known, e.g. a server that does not announce `before`; then no restore).
  local original
  if job.original == nil then
    original = before and text_in(bufnr, before, enc) or false
  end
  local result
  vim.api.nvim_buf_call(bufnr, function()
    if job.changenr == vim.fn.changenr() then
      -- Joins this chunk to the previous one. Skipped when anything else changed the buffer
      -- in between, so undoing the refinement never also undoes the user's own typing.
      pcall(vim.cmd.undojoin)
    elseif job.changenr then
      job.split = true -- rejoined when it finishes (one_undo_step)
    end
    result = vim.lsp.handlers['workspace/applyEdit'](err, params, ctx)
    job.changenr = vim.fn.changenr()
  end)
  if result.applied then
    if job.original == nil then
      job.original = original
    end
    if after then
      job.last_text = text_in(bufnr, after, enc)
      local srow, scol = to_byte(bufnr, after.start, enc)
      local erow, ecol = to_byte(bufnr, after['end'], enc)
      -- Follows the region from here on: a cancel restores wherever the typing moved it.
      local ok, id = pcall(vim.api.nvim_buf_set_extmark, bufnr, ns, srow, scol, {
        id = job.region, end_row = erow, end_col = ecol, right_gravity = false, end_right_gravity = true,
      })
      job.region = ok and id or job.region
      show_stream(bufnr, after.start.line, ann.range, enc)
    else -- a server that does not say where the region is: no restore, no decorations
      job.last_text = nil
      vim.api.nvim_buf_clear_namespace(bufnr, diff_ns, 0, -1)
    end
  end
  return result
end

-- Neovim swallows RequestCancelled answers: the handler never runs, but LspRequest still
-- reports the request 'complete'. That is how a job ends after :CopySpecCancel. (A stop the
-- server decides, such as typing inside the region, comes as ServerCancelled, which reaches
-- the handler with its reason.)
local function on_request_event(ev)
  local data = ev.data
  if data.request.type ~= 'complete' then
    return
  end
  for bufnr, job in pairs(M.jobs) do
    if job.id == data.request_id and job.client_id == data.client_id then
      -- Scheduled: for any other answer the request's own handler runs right after this.
      vim.schedule(function()
        if M.jobs[bufnr] == job then
          finish(bufnr, job, { code = REQUEST_CANCELLED, message = 'cancelled' })
        end
      end)
    end
  end
end

-- The streaming preview: the lines the answer would replace red, the answer so far green as
-- virtual lines below them. Nothing of it is in the buffer; the finished answer's hunks are
-- reviewed (review.lua).
preview_show = function(bufnr, p)
  vim.api.nvim_buf_clear_namespace(bufnr, diff_ns, 0, -1)
  for row = p.srow, p.erow do
    vim.api.nvim_buf_set_extmark(bufnr, diff_ns, row, 0, { line_hl_group = 'CopySpecRemoved' })
  end
  local virt = {}
  for _, line in ipairs(vim.split(p.text, '\n', { plain = true })) do
    virt[#virt + 1] = { { line, 'CopySpecAdded' } }
  end
  virt[#virt + 1] = { { 'CopySpec: streaming the preview…', 'Comment' } }
  vim.api.nvim_buf_set_extmark(bufnr, diff_ns, p.erow, 0, { virt_lines = virt })
end

--- :CopySpecAccept: accepts the hunk at the cursor (a streamed one stays, a previewed one goes in).
function M.accept(bufnr)
  review.act(bufnr or vim.api.nvim_get_current_buf(), true)
end

--- :CopySpecReject: rejects the hunk at the cursor (a streamed one gets its original lines back).
function M.reject(bufnr)
  review.act(bufnr or vim.api.nvim_get_current_buf(), false)
end

--- :CopySpecAcceptAll / :CopySpecRejectAll: every hunk left, in one undo step.
function M.accept_all(bufnr)
  review.act_all(bufnr or vim.api.nvim_get_current_buf(), true)
end

function M.reject_all(bufnr)
  review.act_all(bufnr or vim.api.nvim_get_current_buf(), false)
end

-- Code actions name the server's commands: the refine one asks for the instruction here,
-- and both run as requests (cancellable, streamed, one undo step) instead of commands.
local function action_handler(method)
  return function(command, ctx)
    local arg = command.arguments and command.arguments[1]
    if not arg then
      return
    end
    local bufnr = ctx.bufnr or vim.uri_to_bufnr(arg.uri)
    if method == 'copyspec/fix' then
      return M.start(bufnr, method, arg.range, { diagnostics = arg.diagnostics or {} })
    end
    with_instruction(arg.instruction, 'CopySpec refine: ', function(instruction)
      M.start(bufnr, method, arg.range, { instruction = instruction })
    end)
  end
end

local function command(name, fn, opts)
  vim.api.nvim_create_user_command(name, fn, vim.tbl_extend('force', { desc = 'CopySpec' }, opts or {}))
end

function M.setup(opts)
  M.config = vim.tbl_deep_extend('force', M.config, opts or {})
  local cfg = M.config
  review.keys = cfg.review_keys or {}
  vim.lsp.config('copyspec', {
    cmd = cfg.cmd,
    filetypes = cfg.filetypes,
    root_markers = cfg.root_markers,
    -- An empty Lua table would be sent as a JSON array.
    init_options = next(cfg.init_options) and cfg.init_options or vim.empty_dict(),
    cmd_env = cfg.cmd_env,
    handlers = { ['copyspec/chunk'] = on_chunk, ['copyspec/pending'] = on_pending,
      ['workspace/applyEdit'] = on_apply_edit },
    -- The server sends the next chunk once didChange reports the previous one: don't delay it.
    flags = { debounce_text_changes = 0 },
    -- Neovim 0.11 does not advertise documentChanges, so the server would send unversioned
    -- edits, which it cannot compute again after the user typed. (vim.lsp.config('copyspec',
    -- { capabilities = ... }) after setup() can turn it off; the plugin handles both forms.)
    capabilities = { workspace = { workspaceEdit = { documentChanges = true } } },
  })
  vim.lsp.enable('copyspec')
  vim.api.nvim_create_autocmd('LspRequest', {
    group = vim.api.nvim_create_augroup('copyspec', {}),
    callback = on_request_event,
  })

  command('CopySpecRefine', M.refine, { range = true, nargs = '*' })
  command('CopySpecFix', M.fix, { range = true })
  command('CopySpecFollowup', M.followup, { nargs = '*' })
  command('CopySpecCancel', function()
    M.cancel()
  end)
  command('CopySpecStatus', M.status)
  command('CopySpecAccept', function()
    M.accept()
  end)
  command('CopySpecReject', function()
    M.reject()
  end)
  command('CopySpecAcceptAll', function()
    M.accept_all()
  end)
  command('CopySpecRejectAll', function()
    M.reject_all()
  end)
  command('CopySpecNextHunk', function()
    review.move(vim.api.nvim_get_current_buf(), true)
  end)
  command('CopySpecPrevHunk', function()
    review.move(vim.api.nvim_get_current_buf(), false)
  end)
  vim.lsp.commands['copyspec.refine'] = action_handler('copyspec/refine')
  vim.lsp.commands['copyspec.fix'] = action_handler('copyspec/fix')

  local keys = cfg.keymaps
  if keys then
    local map = function(mode, lhs, rhs, desc)
      if lhs then
        vim.keymap.set(mode, lhs, rhs, { desc = 'CopySpec: ' .. desc })
      end
    end
    map('n', keys.refine, '<Cmd>CopySpecRefine<CR>', 'refine the enclosing function')
    map('x', keys.refine, ':CopySpecRefine<CR>', 'refine the selected lines')
    map('n', keys.fix, '<Cmd>CopySpecFix<CR>', 'fix the diagnostic under the cursor')
    map('n', keys.followup, '<Cmd>CopySpecFollowup<CR>', 'follow up on the last refinement')
    map('n', keys.cancel, '<Cmd>CopySpecCancel<CR>', 'cancel')
    map('n', keys.status, '<Cmd>CopySpecStatus<CR>', 'server and model status')
  end
end

return M
