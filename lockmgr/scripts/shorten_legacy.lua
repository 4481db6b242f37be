-- The original bufferserver's rule, for legacy holds only: when no UTXO of the
-- pool is free, the oldest live legacy hold is cut to at most short_ms from now.
-- It never lengthens a hold and never touches a hold made through the v1 API.
-- KEYS: 1 avail, 2 amount, 3 held, 4 holder, 5 legacy
-- ARGV: 1 short_ms, 2 key prefix of reservations (the key of id X is prefix .. X)
-- Returns the shortened reservation (see read_res), or an empty array.
local avail, amount, held, holder, legacy = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local short, resprefix = tonumber(ARGV[1]), ARGV[2]
local now = now_ms()
reclaim(avail, amount, held, holder, now)
if redis.call('ZCARD', avail) > 0 then
  return {}
end
local limit = now + short
for _ = 1, 100 do
  local oldest = redis.call('ZRANGE', legacy, 0, 0)
  if #oldest == 0 then
    return {}
  end
  local id = oldest[1]
  local reskey = resprefix .. id
  local hashes = redis.call('HGET', reskey, 'hashes')
  if not hashes then
    redis.call('ZREM', legacy, id)
  else
    local expires = tonumber(redis.call('HGET', reskey, 'expires'))
    if expires <= now then
      -- Already over (a server that expires keys late): forget it, look further.
      redis.call('ZREM', legacy, id)
    elseif expires <= limit then
      return {}
    else
      for h in string.gmatch(hashes, '[^,]+') do
        if redis.call('HGET', holder, h) == id then
          redis.call('ZADD', held, 'XX', limit, h)
        end
      end
      redis.call('HSET', reskey, 'expires', limit)
      redis.call('PEXPIREAT', reskey, limit)
      return read_res(reskey, id)
    end
  end
end
return {}
