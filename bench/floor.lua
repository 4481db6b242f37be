-- The benchmark's floor: the least a reservation can cost in Redis.
-- KEYS: 1 the key; ARGV: 1 the value, 2 time to live in milliseconds.
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
