-- Mark a reservation submitted with its spending transaction; it keeps holding
-- until at least grace from now, while the chain settles the transaction.
-- KEYS: 1 avail, 2 amount, 3 held, 4 holder, 5 loaded, 6 the reservation's key
-- ARGV: 1 id, 2 tx id, 3 grace_ms
-- Returns the reservation or an error NOTLOADED | NOTFOUND | TXMISMATCH.
local avail, amount, held, holder, loaded, reskey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, txid, grace = ARGV[1], ARGV[2], tonumber(ARGV[3])
local err = require_loaded(loaded)
if err then return err end
local now = now_ms()
reclaim(avail, amount, held, holder, now)
local r, hashes, notfound = live_res(holder, reskey, id)
if notfound then return notfound end
if r[4] == 'submitted' then
  if r[9] == txid then
    return r
  end
  return redis.error_reply('TXMISMATCH')
end
local expires = math.max(tonumber(r[6]), now + grace)
for _, h in ipairs(hashes) do
  redis.call('ZADD', held, 'XX', expires, h)
end
redis.call('HSET', reskey, 'state', 'submitted', 'txid', txid, 'expires', expires)
redis.call('PEXPIREAT', reskey, expires)
-- The leading syncer syncs the pool at once: the change output is offered soon.
redis.call('PUBLISH', string.sub(avail, 1, #avail - 6) .. ':submitted', '1')
r[4], r[6], r[9] = 'submitted', tostring(expires), txid
return r
