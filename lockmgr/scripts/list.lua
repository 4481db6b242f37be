-- List free UTXOs of a pool by amount.
-- KEYS: the pool's keys (see the prelude)
-- ARGV: 1 desc (0|1), 2 start, 3 stop
-- Returns {hash1, amount1, hash2, amount2, ...} (amounts as 20 digits) or an
-- error NOTLOADED.
local err = require_ready()
if err then return err end
reclaim(now_ms())
local ms
if ARGV[1] == '1' then
  ms = redis.call('ZRANGE', P.free, ARGV[2], ARGV[3], 'REV')
else
  ms = redis.call('ZRANGE', P.free, ARGV[2], ARGV[3])
end
local out = {}
for _, m in ipairs(ms) do
  out[#out + 1] = string.sub(m, 22)
  out[#out + 1] = string.sub(m, 1, 20)
end
return out
