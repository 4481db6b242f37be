-- Apply the syncer's view of the chain to a pool: UTXOs the chain now offers
-- are known and free unless held; UTXOs it no longer offers (spent, spent in
-- the mempool, invalidated, immature again) are not offered any more (a hold
-- on one stays until its reservation ends, and then it is not offered).
-- Every call bumps the pool's sync generation, so that a rebuild whose
-- snapshot predates it knows it is stale.
--! keys 13
-- KEYS: the pool's keys (see the prelude)
-- ARGV: 1 leadership epoch, 2 number of additions n, then n pairs hash, amount
-- (20 digits), then hashes to remove
-- Returns n.
if not epoch_current(ARGV[1]) then
  return stale_epoch(ARGV[1])
end
redis.call('INCR', P.syncgen)
local n = tonumber(ARGV[2])
local freed = 0
for i = 0, n - 1 do
  local h, a = ARGV[3 + 2 * i], ARGV[4 + 2 * i]
  local old = redis.call('HGET', P.utxo, h)
  if old and old ~= a then
    redis.call('ZREM', P.free, member(old, h))
  end
  redis.call('HSET', P.utxo, h, a)
  if redis.call('HEXISTS', P.holder, h) == 0 then
    freed = freed + redis.call('ZADD', P.free, 0, member(a, h))
  end
end
for i = 3 + 2 * n, #ARGV do
  local h = ARGV[i]
  unoffer(h)
  redis.call('HDEL', P.utxo, h)
end
if freed > 0 then
  redis.call('PUBLISH', P.freed, '1')
end
return n
