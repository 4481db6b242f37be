-- Undo a grant the journal refused: the reservation ends at once, and its
-- idempotency key is forgotten when it names it.
--! keys 14
-- KEYS: the pool's keys (see the prelude), then 14 the idempotency key (any key
-- of the pool when unused)
-- ARGV: 1 id
-- Returns how many UTXOs became free.
local id = ARGV[1]
local rec = redis.call('GET', KEYS[14])
if rec and string.sub(rec, 1, #id + 1) == id .. ' ' then
  redis.call('DEL', KEYS[14])
end
if redis.call('EXISTS', P.res .. id) == 0 then
  return 0
end
local now = now_ms()
local freed = end_res(id, now)
redis.call('DEL', P.res .. id)
return freed
