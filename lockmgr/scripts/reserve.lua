-- Reserve UTXOs of one pool atomically.
-- KEYS: 1 avail, 2 amount, 3 held, 4 holder, 5 legacy, 6 fence, 7 the new reservation's key
-- ARGV: 1 id, 2 owner, 3 ttl_ms, 4 legacy (0|1), 5 count (0 when hashes are given), 6.. hashes
-- Returns {fence, created_ms, expires_ms, hash1, amount1, hash2, amount2, ...}
-- or an error reply LOCKED <hash> | UNKNOWN <hash> | UNAVAILABLE.
local avail, amount, held, holder, legacy, fence, reskey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local id, owner, ttl, is_legacy, count = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])

local now = now_ms()
reclaim(avail, amount, held, holder, now)

local picked = {}
if count > 0 then
  local r = redis.call('ZRANGE', avail, 0, count - 1)
  if #r < count then
    return redis.error_reply('UNAVAILABLE')
  end
  picked = r
else
  for i = 6, #ARGV do
    local h = ARGV[i]
    if not redis.call('ZSCORE', avail, h) then
      if redis.call('HEXISTS', holder, h) == 1 then
        return redis.error_reply('LOCKED ' .. h)
      end
      return redis.error_reply('UNKNOWN ' .. h)
    end
    picked[#picked + 1] = h
  end
end

local expires = now + ttl
local f = redis.call('INCR', fence)
local out = {f, now, expires}
local amounts = {}
for _, h in ipairs(picked) do
  local a = redis.call('HGET', amount, h)
  redis.call('ZREM', avail, h)
  redis.call('ZADD', held, expires, h)
  redis.call('HSET', holder, h, id)
  out[#out + 1] = h
  out[#out + 1] = a
  amounts[#amounts + 1] = a
end
redis.call('HSET', reskey, 'fence', f, 'owner', owner, 'state', 'held', 'created', now,
  'expires', expires, 'hashes', table.concat(picked, ','), 'amounts', table.concat(amounts, ','))
redis.call('PEXPIREAT', reskey, expires)
if is_legacy == '1' then
  redis.call('ZADD', legacy, f, id)
end
return out
