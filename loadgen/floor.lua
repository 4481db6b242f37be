-- The floor of the benchmark: the least a reservation can cost, one key set
-- only if absent, with an expiry.
-- KEYS: 1 the key; ARGV: 1 the holder, 2 time to live in ms
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
