-- End a reservation as the chain decided: spent or invalidated drop its holds
-- without offering the UTXOs again; released frees them.
-- KEYS: 1 avail, 2 amount, 3 held, 4 holder, 5 legacy, 6 the reservation's key,
-- 7 epoch
-- ARGV: 1 id, 2 state, 3 leadership epoch
-- Returns the number of UTXOs it still held.
local avail, amount, held, holder, legacy, reskey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, state = ARGV[1], ARGV[2]
if not epoch_current(KEYS[7], ARGV[3]) then
  return redis.error_reply('STALEEPOCH epoch ' .. ARGV[3] .. ' is older than the pool\'s')
end
local hashes = split(redis.call('HGET', reskey, 'hashes'))
local n = 0
for _, h in ipairs(hashes) do
  if redis.call('HGET', holder, h) == id then
    unhold(avail, amount, held, holder, h, state == 'released')
    n = n + 1
  end
end
redis.call('DEL', reskey)
redis.call('ZREM', legacy, id)
if state == 'released' and n > 0 then
  notify(avail)
end
return n
