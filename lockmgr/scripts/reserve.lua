-- Reserve UTXOs of one pool atomically.
-- KEYS: 1 avail, 2 amount, 3 held, 4 holder, 5 legacy, 6 fence, 7 loaded,
--       8 the new reservation's key, 9 the idempotency key, 10 the freed channel (unused here)
-- ARGV: 1 id, 2 owner, 3 ttl_ms, 4 legacy (0|1), 5 mode (hashes|count|amount|combine),
--       6 count, 7 amount, 8 use idempotency (0|1), 9 node budget of combine, 10.. hashes
-- Returns {'NEW'|'REPLAY', id, fence, owner, state, created, expires, hashes, amounts, txid}
-- or an error reply NOTLOADED | LOCKED <hash> | UNKNOWN <hash> | UNAVAILABLE.
local avail, amount, held, holder, legacy, fence, loaded, reskey, idem =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local id, owner, ttl, is_legacy, mode = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local count, want, use_idem, budget = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9])

local err = require_loaded(loaded)
if err then return err end
local now = now_ms()
reclaim(avail, amount, held, holder, now)

if use_idem == '1' then
  local prev = redis.call('GET', idem)
  if prev then
    local r = read_res(string.sub(reskey, 1, #reskey - #id) .. prev, prev)
    if r then
      table.insert(r, 1, 'REPLAY')
      return r
    end
  end
end

-- combine_pick returns the fewest free UTXOs whose amounts sum to at least
-- want, with the least excess among those; nil when the pool cannot cover it.
local function combine_pick()
  local single = redis.call('ZRANGEBYSCORE', avail, want, '+inf', 'LIMIT', 0, 1)
  if #single == 1 then
    return single
  end
  local raw = redis.call('ZRANGE', avail, 0, -1, 'REV', 'WITHSCORES')
  local hs, as = {}, {}
  for i = 1, #raw, 2 do
    hs[#hs + 1] = raw[i]
    as[#as + 1] = tonumber(raw[i + 1])
  end
  local n = #as
  local k, s = 0, 0
  while s < want and k < n do
    k = k + 1
    s = s + as[k]
  end
  if s < want then
    return nil
  end
  -- prefix[i] = sum of as[1..i] (largest first); the r smallest of as[i..n] sum
  -- to prefix[n] - prefix[n-r].
  local prefix = {[0] = 0}
  for i = 1, n do
    prefix[i] = prefix[i - 1] + as[i]
  end
  local best_sum, best = s, {}
  for i = 1, k do best[i] = i end
  local chosen, nodes = {}, 0
  local function dfs(start, depth, sum)
    nodes = nodes + 1
    if nodes > budget then return end
    local left = k - depth
    if left == 0 then
      if sum >= want and sum < best_sum then
        best_sum = sum
        for i = 1, k do best[i] = chosen[i] end
      end
      return
    end
    for i = start, n - left + 1 do
      -- the largest `left` items from i on cannot reach want: neither can later ones
      if sum + prefix[i + left - 1] - prefix[i - 1] < want then return end
      -- lower bound of any completion that takes as[i]: it plus the smallest left-1 items
      if sum + as[i] + prefix[n] - prefix[n - left + 1] < best_sum then
        chosen[depth + 1] = i
        dfs(i + 1, depth + 1, sum + as[i])
        if nodes > budget or best_sum == want then return end
      end
    end
  end
  dfs(1, 0, 0)
  local out = {}
  for i = 1, k do out[i] = hs[best[i]] end
  return out
end

local picked = {}
if mode == 'count' then
  picked = redis.call('ZRANGE', avail, 0, count - 1)
  if #picked < count then
    return redis.error_reply('UNAVAILABLE')
  end
elseif mode == 'amount' then
  picked = redis.call('ZRANGEBYSCORE', avail, want, '+inf', 'LIMIT', 0, 1)
  if #picked == 0 then
    return redis.error_reply('UNAVAILABLE')
  end
elseif mode == 'combine' then
  picked = combine_pick()
  if not picked then
    return redis.error_reply('UNAVAILABLE')
  end
else
  for i = 10, #ARGV do
    local h = ARGV[i]
    if not redis.call('ZSCORE', avail, h) then
      if redis.call('HEXISTS', holder, h) == 1 then
        return redis.error_reply('LOCKED ' .. h)
      end
      return redis.error_reply('UNKNOWN ' .. h)
    end
    picked[#picked + 1] = h
  end
end

local expires = now + ttl
local f = redis.call('INCR', fence)
local amounts = {}
for _, h in ipairs(picked) do
  amounts[#amounts + 1] = redis.call('HGET', amount, h)
  redis.call('ZREM', avail, h)
  redis.call('ZADD', held, expires, h)
  redis.call('HSET', holder, h, id)
end
local hashes, amts = table.concat(picked, ','), table.concat(amounts, ',')
redis.call('HSET', reskey, 'fence', f, 'owner', owner, 'state', 'held', 'created', now,
  'expires', expires, 'hashes', hashes, 'amounts', amts)
redis.call('PEXPIREAT', reskey, expires)
if is_legacy == '1' then
  redis.call('ZADD', legacy, f, id)
end
if use_idem == '1' then
  redis.call('SET', idem, id, 'PX', ttl)
end
return {'NEW', id, tostring(f), owner, 'held', tostring(now), tostring(expires), hashes, amts, ''}
