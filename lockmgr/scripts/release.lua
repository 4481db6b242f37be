-- Release a live reservation: the UTXOs it holds are free at once.
-- KEYS: 1 avail, 2 amount, 3 held, 4 holder, 5 legacy, 6 loaded, 7 the reservation's key
-- ARGV: 1 id
-- Returns the reservation as it was (see read_res) or an error NOTLOADED | NOTFOUND.
local avail, amount, held, holder, legacy, loaded, reskey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local id = ARGV[1]
local err = require_loaded(loaded)
if err then return err end
reclaim(avail, amount, held, holder, now_ms())
local r = read_res(reskey, id)
if not r then
  return redis.error_reply('NOTFOUND')
end
for _, h in ipairs(split(r[7])) do
  if redis.call('HGET', holder, h) == id then
    unhold(avail, amount, held, holder, h, true)
  end
end
redis.call('DEL', reskey)
redis.call('ZREM', legacy, id)
notify(avail)
return r
