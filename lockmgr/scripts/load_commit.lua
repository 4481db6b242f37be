-- Finish a full load: the staged sets replace the pool's, minus what is held.
-- KEYS: 1 avail, 2 amount, 3 held, 4 staged avail, 5 staged amount, 6 loaded marker
-- ARGV: 1 load id (stored in the marker)
local avail, amount, held, savail, samount, loaded = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local hs = redis.call('ZRANGE', held, 0, -1)
for i = 1, #hs, 1000 do
  local chunk = {}
  for j = i, math.min(i + 999, #hs) do
    chunk[#chunk + 1] = hs[j]
  end
  if redis.call('EXISTS', savail) == 1 then
    redis.call('ZREM', savail, unpack(chunk))
  end
end
if redis.call('EXISTS', savail) == 1 then
  redis.call('RENAME', savail, avail)
else
  redis.call('DEL', avail)
end
if redis.call('EXISTS', samount) == 1 then
  redis.call('RENAME', samount, amount)
else
  redis.call('DEL', amount)
end
redis.call('SET', loaded, ARGV[1])
return 1
