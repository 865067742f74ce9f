-- The server settings the protocol lists for editors (prediction, costAware, compile) reach the
-- real server from the plugin's init_options, as the VS Code extension forwards its settings:
-- a valid `prediction = 'off'` changes what the server does, and bad values of all three come
-- back as the server's own warnings, each naming its key (the server read it).
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
H.setup({
  max_new_tokens = 40,
  init_options = { prediction = 'off', costAware = false, compile = 'off' },
})

local FUNCTION = { 'def total(xs):', '    result = 0', '    for x in xs:', '        result += x', '    return result' }

--- Refines the whole buffer, puts it back, and returns the result's stats.
local function refine_stats(bufnr)
  local done = H.run_job('%CopySpecRefine rename result to acc')
  assert(not done.err, vim.inspect(done.err))
  vim.cmd('silent undo')
  H.eq(FUNCTION, H.lines(bufnr), 'buffer after undo')
  return done.result.stats
end

--- The server's window/showMessage lines so far (Neovim echoes them into :messages).
local function server_messages()
  return vim.tbl_filter(function(line)
    return line:find('^LSP%[copyspec%]') ~= nil
  end, vim.split(vim.api.nvim_exec2('messages', { output = true }).output, '\n'))
end

H.run({
  { 'valid values are taken without a warning; prediction off sends no prediction', function()
    local buf = H.open('settings.py', FUNCTION)
    local off = refine_stats(buf)
    H.eq({ 0, 0 }, { off.accepted_prediction_tokens, off.rejected_prediction_tokens }, 'predicted tokens with prediction off')
    H.eq({}, server_messages(), 'server warnings')
    -- The same turn with the server's default (auto: the region is the prediction) verifies
    -- predicted tokens, so the zeros above are the setting's doing.
    local client = vim.lsp.get_clients({ bufnr = buf, name = 'copyspec' })[1]
    client:notify('workspace/didChangeConfiguration', { settings = { copyspec = { prediction = 'auto' } } })
    local auto = refine_stats(buf)
    assert(auto.accepted_prediction_tokens + auto.rejected_prediction_tokens > 0, vim.inspect(auto))
  end },

  { 'bad values come back as warnings naming each key', function()
    for _, client in ipairs(vim.lsp.get_clients({ name = 'copyspec' })) do
      client:stop(true)
    end
    H.wait(function()
      return #vim.lsp.get_clients({ name = 'copyspec' }) == 0
    end, 10000, 'the first server to stop')
    require('copyspec').setup({ init_options = { prediction = 'sometimes', costAware = 'no', compile = 'always' } })
    H.open('settings_bad.py', FUNCTION)
    local keys = { 'prediction', 'costAware', 'compile' }
    local warned = {}
    H.wait(function()
      for _, line in ipairs(server_messages()) do
        for _, key in ipairs(keys) do
          if line:find('%[Warning%].* bad value for ' .. vim.pesc("'" .. key .. "'")) then
            warned[key] = true
          end
        end
      end
      return #vim.tbl_keys(warned) == #keys
    end, 30000, 'a warning for each bad value')
  end },
})
