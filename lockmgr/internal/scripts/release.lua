-- Release a held reservation: its UTXOs go free at once (those the chain
-- still offers). The reservation's key stays for RELEASED_MEMORY_MS, marked
-- released with the time it ended, so that a repeated release and a read
-- find the release while its journal write may still be on its way.
--! keys 14
-- KEYS: the pool's keys (see the prelude), then 14 the pool's releases: a
--       ZSET of "<id> <fence>" by the time of the release, which the syncer's
--       sweep writes to the journal should the API's own write be lost; those
--       older than ARGV[3] ms are dropped (by one release in sixteen)
-- ARGV: 1 id, 2 how long to remember the release (ms), 3 how long the
--       releases are kept for the sweep (ms)
-- Returns {'result', R, 'ended', T, 'load', L, <the reservation's fields>}
-- where L names the pool's current load into Redis and R is 'released' (this
-- call released it at T) or 'again' (it was released at T before), or an
-- error NOTLOADED | NOTFOUND (Redis does not have it live, or the chain took
-- one of its UTXOs: ask the journal) | NOTHELD (it was submitted).
local id, memory = ARGV[1], tonumber(ARGV[2])
local err, load = require_ready()
if err then return err end
local now = now_ms()
reclaim(now)
local key = P.res .. id
local f = redis.call('HMGET', key, 'fence', 'owner', 'state', 'created', 'expires', 'hashes', 'amounts', 'txid',
  'ended')
local fence, owner, state, created, expires, hs, as, txid, ended =
  f[1], f[2] or '', f[3], f[4], f[5], f[6] or '', f[7] or '', f[8] or '', f[9]
if not fence then
  return redis.error_reply('NOTFOUND')
end
local function answer(kind, at)
  return {'result', kind, 'ended', at, 'load', load, 'id', id, 'fence', fence, 'owner', owner, 'state', state,
    'created', created, 'expires', expires, 'hashes', hs, 'amounts', as, 'txid', txid}
end
if state == 'released' then
  return answer('again', ended)
end
if state == 'submitted' then
  return redis.error_reply('NOTHELD')
end
if state ~= 'held' or tonumber(expires) <= now then
  return redis.error_reply('NOTFOUND')
end
-- Once the chain took one of its UTXOs away (spent in a block or the
-- mempool, gone in a reorg) the syncer is settling the reservation in the
-- journal: the journal decides, or this release could overtake that
-- settlement and be answered released while the journal records it spent.
local hashes = split(hs)
for _, h in ipairs(hashes) do
  if redis.call('HEXISTS', P.utxo, h) == 0 then
    return redis.error_reply('NOTFOUND')
  end
end
-- The chain offers every one of them (checked just above): their amounts
-- are the reservation's.
let_go(id, hashes, split(as))
if owner == LEGACY_OWNER then
  redis.call('ZREM', P.legacy, id)
end
state = 'released'
redis.call('HSET', key, 'state', state, 'ended', now)
redis.call('PEXPIRE', key, memory)
redis.call('ZADD', KEYS[14], now, id .. ' ' .. fence)
if tonumber(fence) % 16 == 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[14], '-inf', now - tonumber(ARGV[3]))
end
return answer('released', tostring(now))
