-- Finish a rebuild of a pool whose state Redis lost: the staged free set and
-- UTXOs replace the pool's, the live reservations of the journal are put
-- back, newest fence first (unless Redis still has them or one of their UTXOs
-- is held by another: a newer one, whose grant followed a release the journal
-- has not learnt yet),
-- their idempotency keys too, every held UTXO stays out of the free set, the
-- fencing counter is raised to the floor, and the pool is marked ready.
--! keys 18+
-- KEYS: the pool's keys (see the prelude), then 14 staged free, 15 staged utxo,
--       16-18 the keys of the layout before bufferd 2 (avail, amount, loaded),
--       deleted; 19.. the idempotency keys to restore, one per record in ARGV
-- ARGV: 1 fence floor, 2 load id, 3 the sync generation read before the
--       snapshot, 4 number of live reservations n, then 9 fields each: id,
--       fence, owner, state, created, expires, txid, hashes, amounts (20 digits);
--       then 2 fields per idempotency record: value, ms to live
-- Returns the number of reservations restored, or an error STALE when the
-- syncer changed the pool after the snapshot was taken (take a new one).
local sfree, sutxo = KEYS[14], KEYS[15]
if tonumber(redis.call('GET', P.syncgen) or '0') ~= tonumber(ARGV[3]) then
  redis.call('DEL', sfree, sutxo)
  return redis.error_reply('STALE')
end
local floor = tonumber(ARGV[1])
local now = now_ms()

if tonumber(redis.call('GET', P.fence) or '0') < floor then
  redis.call('SET', P.fence, floor)
end

local n = tonumber(ARGV[4])
local restored = 0
for i = 5, 4 + 9 * n, 9 do
  local id, f, owner, state, created, expires, txid, hashes, amts =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5]),
    ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
  local key = P.res .. id
  if expires > now and redis.call('EXISTS', key) == 0 then
    local hs = split(hashes)
    local free = true
    for _, h in ipairs(hs) do
      local cur = redis.call('HGET', P.holder, h)
      if cur and cur ~= id then
        free = false
      end
    end
    if free then
      for _, h in ipairs(hs) do
        redis.call('ZADD', P.held, expires, h)
        redis.call('HSET', P.holder, h, id)
      end
      redis.call('HSET', key, 'fence', f, 'owner', owner, 'state', state, 'created', created,
        'expires', expires, 'hashes', hashes, 'amounts', amts, 'txid', txid)
      redis.call('PEXPIREAT', key, expires)
      if owner == 'legacy' then
        redis.call('ZADD', P.legacy, f, id)
      end
      restored = restored + 1
    end
  end
end

local k = 19
for i = 5 + 9 * n, #ARGV, 2 do
  if redis.call('EXISTS', KEYS[k]) == 0 and tonumber(ARGV[i + 1]) > 0 then
    redis.call('SET', KEYS[k], ARGV[i], 'PX', ARGV[i + 1])
  end
  k = k + 1
end

-- The staged free set lacks every held UTXO.
if redis.call('EXISTS', sfree) == 1 then
  local hs = redis.call('HKEYS', P.holder)
  for i = 1, #hs, 1000 do
    local chunk = {}
    for j = i, math.min(i + 999, #hs) do
      local a = redis.call('HGET', sutxo, hs[j])
      if a then
        chunk[#chunk + 1] = member(a, hs[j])
      end
    end
    if #chunk > 0 then
      redis.call('ZREM', sfree, unpack(chunk))
    end
  end
end
-- The pool's old sets are unlinked first: freed in the background, where
-- RENAME over them would free them while every client waits.
redis.call('UNLINK', P.free, P.utxo, KEYS[16], KEYS[17], KEYS[18])
if redis.call('EXISTS', sfree) == 1 then
  redis.call('RENAME', sfree, P.free)
  redis.call('PERSIST', P.free)
end
if redis.call('EXISTS', sutxo) == 1 then
  redis.call('RENAME', sutxo, P.utxo)
  redis.call('PERSIST', P.utxo)
end
redis.call('SET', P.ready, ARGV[2])
reclaim(now)
redis.call('PUBLISH', P.freed, '1')
return restored
