-- Apply the syncer's view of the chain to a pool: new or revived UTXOs become
-- free unless held; UTXOs gone from the chain are no longer offered (a hold on
-- one stays until it ends, but the UTXO never comes back).
-- Every call bumps the pool's sync generation, so that a rebuild whose
-- snapshot predates it knows it is stale.
-- KEYS: 1 avail, 2 amount, 3 held, 4 sync generation, 5 epoch
-- ARGV: 1 leadership epoch, 2 number of additions n, then n pairs hash,
-- amount, then hashes to remove
local avail, amount, held = KEYS[1], KEYS[2], KEYS[3]
if not epoch_current(KEYS[5], ARGV[1]) then
  return redis.error_reply('STALEEPOCH epoch ' .. ARGV[1] .. ' is older than the pool\'s')
end
redis.call('INCR', KEYS[4])
local n = tonumber(ARGV[2])
local freed = 0
for i = 0, n - 1 do
  local h, a = ARGV[3 + 2 * i], ARGV[4 + 2 * i]
  redis.call('HSET', amount, h, a)
  if not redis.call('ZSCORE', held, h) then
    freed = freed + redis.call('ZADD', avail, a, h)
  end
end
if freed > 0 then
  notify(avail)
end
for i = 3 + 2 * n, #ARGV do
  local h = ARGV[i]
  redis.call('HDEL', amount, h)
  redis.call('ZREM', avail, h)
end
return n
