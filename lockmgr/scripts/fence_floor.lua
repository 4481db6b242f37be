-- Raise a pool's fencing counter to at least a floor (never lower it).
-- KEYS: 1 fence; ARGV: 1 floor. Returns the counter's value.
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if cur < floor then
  redis.call('SET', KEYS[1], floor)
  return floor
end
return cur
