-- After the journal write: is the grant still in Redis? (Redis may have lost it
-- in between; then the client must not be told it holds anything.)
-- KEYS: the pool's keys (see the prelude)
-- ARGV: 1 id
-- Returns 1 when the reservation is there and holds all its UTXOs, else 0.
if redis.call('EXISTS', P.ready) == 0 then
  return 0
end
local hashes = redis.call('HGET', P.res .. ARGV[1], 'hashes')
if not hashes or redis.call('HGET', P.res .. ARGV[1], 'state') == 'ended' then
  return 0
end
if holds_all(split(hashes), ARGV[1]) then
  return 1
end
return 0
