-- The plugin's pure functions (no server needed).
local H = dofile(vim.fs.dirname(debug.getinfo(1, 'S').source:sub(2)) .. '/helpers.lua')
local copyspec = require('copyspec')

H.run({
  { 'live figures come from the counters of a running turn', function()
    local meter = {}
    local live = function(passes, copied, now)
      local stats = { new_tokens = 0, tokens_per_second = 0, forward_passes = passes, copied_tokens = copied, drafted_tokens = 0 }
      return copyspec.live(meter, stats, now)
    end
    H.eq('0% copied · 2 tokens', live(2, 0, 10), 'first chunk')
    H.eq('76.0 tok/s · 75% copied · 40 tokens', live(10, 30, 10.5), 'half a second later')
    H.eq('0% copied · 1 tokens', live(1, 0, 11), 'the next fix turn starts over')
  end },
  { 'final stats and status are formatted for messages', function()
    H.eq('41.3 tok/s · 63% copied · 80 tokens',
      copyspec.format_stats({ tokens_per_second = 41.26, copied_share = 0.634, new_tokens = 80 }), 'stats')
    H.eq('server 0.1.0, model /m on cpu (float32): error\nerror: no weights\nqueue 0, sessions 0',
      copyspec.format_status({ version = '0.1.0', model = '/m', device = 'cpu', dtype = 'float32', state = 'error',
        error = 'no weights', queue = 0, sessions = {} }), 'status')
  end },
})
