-- Extend a held reservation to end ttl from now.
--! keys 13
-- KEYS: the pool's keys (see the prelude)
-- ARGV: 1 id, 2 ttl_ms, 3 max lifetime ms
-- Returns the reservation or an error NOTLOADED | NOTFOUND | NOTHELD | LIFETIME.
local id, ttl, maxlife = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local err = require_ready()
if err then return err end
local now = now_ms()
reclaim(now)
local r, hashes, notfound = live_res(id, now)
if notfound then return notfound end
if field(r, 'state') ~= 'held' then
  return redis.error_reply('NOTHELD')
end
local created, expires = tonumber(field(r, 'created')), now + ttl
if expires > created + maxlife then
  return redis.error_reply('LIFETIME')
end
set_expiry(id, hashes, created, expires)
set_field(r, 'expires', tostring(expires))
return r
