-- Finish a rebuild of a pool whose state Redis lost: the staged free set and
-- amounts replace the pool's, the live reservations of the journal are put
-- back (unless Redis still has them), every held UTXO stays out of the free
-- set, the fencing counter is raised to the floor, and the pool is marked loaded.
-- KEYS: 1 avail, 2 amount, 3 held, 4 holder, 5 legacy, 6 fence, 7 loaded, 8 staged avail,
--       9 staged amount, 10 sync generation
-- ARGV: 1 fence floor, 2 load id, 3 the sync generation read before the snapshot,
--       4.. live reservations, 9 fields each: id, fence, owner, state, created,
--       expires, txid, hashes, amounts
-- Returns the number of reservations restored, or an error STALE when the
-- syncer changed the pool after the snapshot was taken (take a new one).
local avail, amount, held, holder, legacy, fence, loaded, savail, samount, syncgen =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
if tonumber(redis.call('GET', syncgen) or '0') ~= tonumber(ARGV[3]) then
  redis.call('DEL', savail, samount)
  return redis.error_reply('STALE')
end
local floor = tonumber(ARGV[1])
local now = now_ms()
local tag = string.sub(held, 1, #held - 5)

if tonumber(redis.call('GET', fence) or '0') < floor then
  redis.call('SET', fence, floor)
end

local restored = 0
for i = 4, #ARGV, 9 do
  local id, f, owner, state, created, expires, txid, hashes, amts =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5]), ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
  local reskey = tag .. ':res:' .. id
  if expires > now and redis.call('EXISTS', reskey) == 0 then
    local hs = split(hashes)
    local free = true
    for _, h in ipairs(hs) do
      local cur = redis.call('HGET', holder, h)
      if cur and cur ~= id then
        free = false
      end
    end
    if free then
      for _, h in ipairs(hs) do
        redis.call('ZADD', held, expires, h)
        redis.call('HSET', holder, h, id)
      end
      redis.call('HSET', reskey, 'fence', f, 'owner', owner, 'state', state, 'created', created,
        'expires', expires, 'hashes', hashes, 'amounts', amts, 'txid', txid)
      redis.call('PEXPIREAT', reskey, expires)
      if owner == 'legacy' then
        redis.call('ZADD', legacy, f, id)
      end
      restored = restored + 1
    end
  end
end

if redis.call('EXISTS', savail) == 1 then
  local hs = redis.call('ZRANGE', held, 0, -1)
  for i = 1, #hs, 1000 do
    redis.call('ZREM', savail, unpack(hs, i, math.min(i + 999, #hs)))
  end
end
if redis.call('EXISTS', savail) == 1 then
  redis.call('RENAME', savail, avail)
  redis.call('PERSIST', avail)
else
  redis.call('DEL', avail)
end
if redis.call('EXISTS', samount) == 1 then
  redis.call('RENAME', samount, amount)
  redis.call('PERSIST', amount)
else
  redis.call('DEL', amount)
end
redis.call('SET', loaded, ARGV[2])
reclaim(avail, amount, held, holder, now)
notify(avail)
return restored
