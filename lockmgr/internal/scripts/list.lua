-- List free UTXOs of a pool by amount: a page of the ranking, or a sample.
--! keys 14
-- KEYS: the pool's keys (see the prelude), then 14 the pool's counter of
--       sampled listings
-- ARGV: 1 desc (0|1), 2 start, 3 stop, 4 sample size (0: the page start..stop)
-- A sample, taken when at least twice its size are free, is every P-th free
-- UTXO by amount (P = free / size) from an offset that moves on with each
-- call, so that callers at the same moment get different UTXOs, plus the
-- largest free UTXO; in the asked order, at most stop + 1 of them.
-- Returns {hash1, amount1, hash2, amount2, ...} (amounts as 20 digits) or an
-- error NOTLOADED.
local err = require_ready()
if err then return err end
reclaim(now_ms())
local desc, start, stop, size = ARGV[1] == '1', tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])

local function at(a, b)
  if desc then
    return redis.call('ZRANGE', P.free, a, b, 'REV')
  end
  return redis.call('ZRANGE', P.free, a, b)
end

local ms
local n = 0
if size > 0 then
  n = redis.call('ZCARD', P.free)
end
local step = 0
if size > 0 then
  step = math.floor(n / size)
end
if step < 2 then
  ms = at(start, stop)
else
  local limit = stop - start + 1
  local offset = redis.call('INCR', KEYS[14]) % step
  -- ranks in the asked order; the largest is rank 0 (desc) or n - 1 (asc)
  local largest = 0
  if not desc then
    largest = n - 1
  end
  ms = {}
  local function add(rank)
    local m = at(rank, rank)
    if m[1] then
      ms[#ms + 1] = m[1]
    end
  end
  if desc and offset ~= 0 then
    add(0)
  end
  local rank = offset
  while rank < n and #ms < limit do
    if desc or rank ~= largest then
      add(rank)
    end
    rank = rank + step
  end
  if not desc then
    if #ms >= limit then
      ms[#ms] = nil
    end
    add(largest)
  end
end
local out = {}
for _, m in ipairs(ms) do
  out[#out + 1] = string.sub(m, 22)
  out[#out + 1] = string.sub(m, 1, 20)
end
return out
