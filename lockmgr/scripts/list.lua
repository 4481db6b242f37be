-- List free UTXOs of a pool by amount.
-- KEYS: 1 avail, 2 amount, 3 held, 4 holder, 5 loaded
-- ARGV: 1 desc (0|1), 2 start, 3 stop
-- Returns {hash1, amount1, hash2, amount2, ...} or an error NOTLOADED.
local avail, amount, held, holder = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local err = require_loaded(KEYS[5])
if err then return err end
local now = now_ms()
reclaim(avail, amount, held, holder, now)
local r
if ARGV[1] == '1' then
  r = redis.call('ZRANGE', avail, ARGV[2], ARGV[3], 'REV')
else
  r = redis.call('ZRANGE', avail, ARGV[2], ARGV[3])
end
local out = {}
if #r == 0 then
  return out
end
local amounts = redis.call('HMGET', amount, unpack(r))
for i, h in ipairs(r) do
  out[#out + 1] = h
  out[#out + 1] = amounts[i]
end
return out
