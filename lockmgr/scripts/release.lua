-- Release a held reservation: its UTXOs go free at once (those the chain
-- still offers). The reservation's key stays for RELEASED_MEMORY_MS, marked
-- released with the time it ended, so that a repeated release and a read
-- find the release while its journal write may still be on its way.
-- KEYS: the pool's keys (see the prelude), then 14 the pool's releases: a
--       ZSET of "<id> <fence>" by the time of the release, which the syncer's
--       sweep writes to the journal should the API's own write be lost; those
--       older than ARGV[3] ms are dropped
-- ARGV: 1 id, 2 how long to remember the release (ms), 3 how long the
--       releases are kept for the sweep (ms)
-- Returns {'result', R, 'ended', T, <the reservation's fields>} where R is
-- 'released' (this call released it at T) or 'again' (it was released at T
-- before), or an error NOTLOADED | NOTFOUND (Redis does not have it live,
-- or the chain took one of its UTXOs: ask the journal) | NOTHELD (it was
-- submitted).
local id, memory = ARGV[1], tonumber(ARGV[2])
local err = require_ready()
if err then return err end
local now = now_ms()
reclaim(now)
local key = P.res .. id
local r = read_res(id)
if not r then
  return redis.error_reply('NOTFOUND')
end
local state = field(r, 'state')
local out = {'result', 'again', 'ended', redis.call('HGET', key, 'ended')}
if state == 'released' then
  for _, x in ipairs(r) do out[#out + 1] = x end
  return out
end
if state == 'submitted' then
  return redis.error_reply('NOTHELD')
end
if state ~= 'held' or tonumber(field(r, 'expires')) <= now then
  return redis.error_reply('NOTFOUND')
end
-- Once the chain took one of its UTXOs away (spent in a block or the
-- mempool, gone in a reorg) the syncer is settling the reservation in the
-- journal: the journal decides, or this release could overtake that
-- settlement and be answered released while the journal records it spent.
for _, h in ipairs(split(field(r, 'hashes'))) do
  if redis.call('HEXISTS', P.utxo, h) == 0 then
    return redis.error_reply('NOTFOUND')
  end
end
end_res(id, now)
set_field(r, 'state', 'released')
redis.call('HSET', key, 'fence', field(r, 'fence'), 'owner', field(r, 'owner'), 'state', 'released',
  'created', field(r, 'created'), 'expires', field(r, 'expires'), 'hashes', field(r, 'hashes'),
  'amounts', field(r, 'amounts'), 'txid', field(r, 'txid'), 'ended', now)
redis.call('PEXPIRE', key, memory)
redis.call('ZADD', KEYS[14], now, id .. ' ' .. field(r, 'fence'))
redis.call('ZREMRANGEBYSCORE', KEYS[14], '-inf', now - tonumber(ARGV[3]))
out = {'result', 'released', 'ended', tostring(now)}
for _, x in ipairs(r) do out[#out + 1] = x end
return out
