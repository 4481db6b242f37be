-- Extend a held reservation to end ttl from now.
-- KEYS: 1 avail, 2 amount, 3 held, 4 holder, 5 loaded, 6 the reservation's key
-- ARGV: 1 id, 2 ttl_ms, 3 max lifetime ms
-- Returns the reservation or an error NOTLOADED | NOTFOUND | NOTHELD | LIFETIME.
local avail, amount, held, holder, loaded, reskey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, ttl, maxlife = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local err = require_loaded(loaded)
if err then return err end
local now = now_ms()
reclaim(avail, amount, held, holder, now)
local r, hashes, notfound = live_res(holder, reskey, id)
if notfound then return notfound end
if r[4] ~= 'held' then
  return redis.error_reply('NOTHELD')
end
local expires = now + ttl
if expires > tonumber(r[5]) + maxlife then
  return redis.error_reply('LIFETIME')
end
for _, h in ipairs(hashes) do
  redis.call('ZADD', held, 'XX', expires, h)
end
redis.call('HSET', reskey, 'expires', expires)
redis.call('PEXPIREAT', reskey, expires)
r[6] = tostring(expires)
return r
