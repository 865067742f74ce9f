-- :checkhealth copyspec: the server command, its version, and the model's state.
local M = {}

function M.check()
  local health = vim.health
  local copyspec = require('copyspec')
  health.start('copyspec')
  if vim.fn.has('nvim-0.11') == 0 then
    health.error('Neovim 0.11 or later is required (vim.lsp.config / vim.lsp.enable)')
  end

  local cmd = copyspec.config.cmd
  local exe = vim.fn.exepath(cmd[1])
  if exe == '' then
    health.error(('server command not found: %s'):format(cmd[1]), {
      'pip install the copyspec-lsp package, or pass its path: require("copyspec").setup{ cmd = { "/path/to/copyspec-lsp", "--stdio" } }',
    })
    return
  end
  health.ok(('server command: %s (%s)'):format(table.concat(cmd, ' '), exe))

  local ok, out = pcall(function()
    return vim.system({ exe, '--version' }, { text = true }):wait(60000)
  end)
  if ok and out.code == 0 then
    health.ok('version: ' .. vim.trim(out.stdout ~= '' and out.stdout or out.stderr))
  else
    local why = ok and ('exit %d: %s'):format(out.code, vim.trim(out.stderr or '')) or tostring(out)
    health.error('`' .. cmd[1] .. ' --version` failed (' .. why .. ')')
  end

  local client = vim.lsp.get_clients({ name = 'copyspec' })[1]
  if not client then
    health.info('server not running: open a file to start it, then run :checkhealth copyspec again')
    return
  end
  local response = client:request_sync('copyspec/status', vim.empty_dict(), 10000)
  if not response or response.err then
    health.error('copyspec/status failed: ' .. (response and response.err.message or 'timed out'))
    return
  end
  local st = response.result
  local line = ('model %s on %s (%s): %s'):format(st.model, st.device or '?', st.dtype or '?', st.state)
  if st.state == 'ready' then
    health.ok(line)
  elseif st.state == 'loading' then
    health.info(line)
  else
    health.error(line .. (st.error and (': ' .. st.error) or ''))
  end
end

return M
