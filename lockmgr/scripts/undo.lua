-- Undo a grant the journal refused: free what reservation id still holds.
-- KEYS: 1 avail, 2 amount, 3 held, 4 holder, 5 legacy, 6 the reservation's key
-- ARGV: 1 id, 2.. hashes
local avail, amount, held, holder, legacy, reskey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id = ARGV[1]
local freed = 0
for i = 2, #ARGV do
  local h = ARGV[i]
  if redis.call('HGET', holder, h) == id then
    unhold(avail, amount, held, holder, h, true)
    freed = freed + 1
  end
end
redis.call('DEL', reskey)
redis.call('ZREM', legacy, id)
if freed > 0 then
  notify(avail)
end
return freed
