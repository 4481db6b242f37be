-- Shared prelude: the Redis clock in milliseconds and the lazy reclaim of expired
-- holds. Prepended to every script that reads or changes a pool.
-- KEYS[1] avail, KEYS[2] amount, KEYS[3] held, KEYS[4] holder
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function reclaim(avail, amount, held, holder, now)
  local expired = redis.call('ZRANGEBYSCORE', held, '-inf', now, 'LIMIT', 0, 1000)
  for _, h in ipairs(expired) do
    redis.call('ZREM', held, h)
    redis.call('HDEL', holder, h)
    local a = redis.call('HGET', amount, h)
    if a then
      redis.call('ZADD', avail, a, h)
    end
  end
end
