-- Mark a reservation submitted with its spending transaction; it keeps holding
-- until at least grace from now, while the chain settles the transaction.
--! keys 13
-- KEYS: the pool's keys (see the prelude)
-- ARGV: 1 id, 2 tx id, 3 grace_ms
-- Returns the reservation or an error NOTLOADED | NOTFOUND | TXMISMATCH.
local id, txid, grace = ARGV[1], ARGV[2], tonumber(ARGV[3])
local err = require_ready()
if err then return err end
local now = now_ms()
reclaim(now)
local r, hashes, notfound = live_res(id, now)
if notfound then return notfound end
if field(r, 'state') == 'submitted' then
  if field(r, 'txid') == txid then
    return r
  end
  return redis.error_reply('TXMISMATCH')
end
local expires = math.max(tonumber(field(r, 'expires')), now + grace)
set_expiry(id, hashes, tonumber(field(r, 'created')), expires)
redis.call('HSET', P.res .. id, 'state', 'submitted', 'txid', txid)
set_field(r, 'state', 'submitted')
set_field(r, 'expires', tostring(expires))
set_field(r, 'txid', txid)
return r
