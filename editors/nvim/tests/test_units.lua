-- The plugin's pure functions (no server needed).
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local copyspec = require('copyspec')

H.run({
  { 'final stats and status are formatted for messages', function()
    H.eq('41.3 tok/s · 63% copied · 80 tokens',
      copyspec.format_stats({ tokens_per_second = 41.26, copied_share = 0.634, new_tokens = 80 }), 'stats')
    H.eq('server 0.1.0, model /m on cpu (float32): error\nerror: no weights\nqueue 0, sessions 0',
      copyspec.format_status({ version = '0.1.0', model = '/m', device = 'cpu', dtype = 'float32', state = 'error',
        error = 'no weights', queue = 0, sessions = {} }), 'status')
  end },
})
