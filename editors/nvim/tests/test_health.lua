-- :checkhealth copyspec, :CopySpecStatus and the default keymaps.
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
H.setup({ keymaps = { status = '<leader>cS' } })

H.run({
  { 'default keymaps are set, and can be remapped', function()
    H.eq('<Cmd>CopySpecRefine<CR>', vim.fn.maparg('<leader>cr', 'n'), 'normal-mode refine map')
    H.eq(':CopySpecRefine<CR>', vim.fn.maparg('<leader>cr', 'x'), 'visual-mode refine map')
    H.eq('<Cmd>CopySpecStatus<CR>', vim.fn.maparg('<leader>cS', 'n'), 'remapped status map')
  end },

  { ':CopySpecStatus reports the model once it is ready', function()
    H.open('status.py', { 'x = 1' })
    local messages = {}
    vim.notify = function(msg)
      messages[#messages + 1] = msg
    end
    H.wait(function()
      messages = {}
      vim.cmd('CopySpecStatus')
      H.sleep(200)
      return messages[1] and messages[1]:find(': ready') ~= nil
    end, 60000, 'the model to be ready')
    assert(messages[1]:find(os.getenv('COPYSPEC_TEST_MODEL'), 1, true), messages[1])
  end },

  { ':checkhealth copyspec shows the command, version and model state', function()
    vim.cmd('checkhealth copyspec')
    local report = table.concat(H.lines(0), '\n')
    assert(report:find('OK server command: ' .. os.getenv('COPYSPEC_LSP'), 1, true), report)
    assert(report:find('OK version: ', 1, true), report)
    assert(report:find('OK model .*: ready'), report)
    assert(not report:find('ERROR'), report)
  end },
})
