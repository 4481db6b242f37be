-- After the journal write: is the grant still in Redis? (Redis may have lost it
-- in between; then the client must not be told it holds anything.)
-- KEYS: 1 holder, 2 loaded, 3 the reservation's key; ARGV: 1 id, 2.. hashes
if redis.call('EXISTS', KEYS[2]) == 0 or redis.call('EXISTS', KEYS[3]) == 0 then
  return 0
end
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[1] then
    return 0
  end
end
return 1
