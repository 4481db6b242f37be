-- The original bufferserver's rule, for legacy holds only: when no UTXO of the
-- pool is free, the oldest live legacy hold is cut to at most short_ms from now.
-- It never lengthens a hold and never touches a hold made through the v1 API.
--! keys 13
-- KEYS: the pool's keys (see the prelude)
-- ARGV: 1 short_ms
-- Returns the shortened reservation, or an empty array.
local short = tonumber(ARGV[1])
local now = now_ms()
reclaim(now)
if redis.call('ZCARD', P.free) > 0 then
  return {}
end
local limit = now + short
for _ = 1, 100 do
  local oldest = redis.call('ZRANGE', P.legacy, 0, 0)
  if #oldest == 0 then
    return {}
  end
  local id = oldest[1]
  local r, hashes = live_res(id, now)
  if not r then
    -- Over already (reclaim takes its holds): forget it, look further.
    redis.call('ZREM', P.legacy, id)
  elseif tonumber(field(r, 'expires')) <= limit then
    return {}
  else
    set_expiry(id, hashes, tonumber(field(r, 'created')), limit)
    set_field(r, 'expires', tostring(limit))
    return r
  end
end
return {}
