-- Reserve UTXOs of one pool atomically.
--! keys 14
-- KEYS: the pool's keys (see the prelude), then
--   14 the reservation's idempotency key (any key of the pool when unused)
-- ARGV: 1 id, 2 owner, 3 ttl_ms, 4 legacy (0|1), 5 mode (hashes|count|amount|combine),
--       6 count, 7 amount (20 decimal digits), 8 request fingerprint ('' without
--       an idempotency key), 9 idempotency window ms, 10 step budget of combine,
--       11.. hashes
-- Returns the flat list {'result', R, 'load', L, <fields>} where L names the
-- pool's current load into Redis (its ready marker) and R is
--   'new'    a reservation was granted; the fields are the reservation's;
--   'rerun'  this id was reserved before (the script ran twice); the fields
--            are that reservation's as it is now;
--   'replay' the idempotency key names an earlier reservation with the same
--            fingerprint: fields 'id', 'age' (ms since its grant) and, while
--            Redis has it, the reservation's;
-- or an error NOTLOADED | LOCKED <hash> | UNKNOWN <hash> | UNAVAILABLE | IDEMMISMATCH.
local idemkey = KEYS[14]
local id, owner, ttl, is_legacy, mode = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local count, want, fingerprint = tonumber(ARGV[6]), ARGV[7], ARGV[8]
local window, budget = tonumber(ARGV[9]), tonumber(ARGV[10])

local err, load = require_ready()
if err then return err end

local function result(kind, r)
  local out = {'result', kind, 'load', load}
  for _, x in ipairs(r) do
    out[#out + 1] = x
  end
  return out
end

if redis.call('EXISTS', P.res .. id) == 1 then
  return result('rerun', read_res(id))
end

local now = now_ms()
reclaim(now)

if fingerprint ~= '' then
  local rec = redis.call('GET', idemkey)
  if rec then
    local pid, pfp, pat = string.match(rec, '^(%S+) (%S+) (%d+)$')
    if pfp ~= fingerprint then
      return redis.error_reply('IDEMMISMATCH')
    end
    local out = {'id', pid, 'age', tostring(now - tonumber(pat))}
    local r = read_res(pid)
    if r then
      for _, x in ipairs(r) do
        out[#out + 1] = x
      end
    end
    return result('replay', out)
  end
end

-- Exact arithmetic on 20-digit amounts: a value is a pair of numbers (h, l)
-- worth h * 1e10 + l, each part well inside a double's exact range.
local E = 10000000000
local function limbs(a)
  return tonumber(string.sub(a, 1, 10)), tonumber(string.sub(a, 11, 20))
end
local function norm(h, l)
  local c = math.floor(l / E)
  local r = l - c * E
  if r < 0 then
    c, r = c - 1, r + E
  elseif r >= E then
    c, r = c + 1, r - E
  end
  return h + c, r
end
local function less(h1, l1, h2, l2)
  h1, l1 = norm(h1, l1)
  h2, l2 = norm(h2, l2)
  return h1 < h2 or (h1 == h2 and l1 < l2)
end

-- combine_pick returns the members of the fewest free UTXOs whose amounts
-- sum to at least want, with the least excess it finds; nil when the pool
-- cannot cover it. Its work does not grow with the pool: it reads the pool's
-- TOP largest free UTXOs, chooses all but the last UTXO of a combination
-- among them (a branch and bound, largest first), and looks the last one up
-- in the whole free set: the smallest that completes the sum. Past budget
-- steps it keeps the best found so far. On a pool of at most TOP free UTXOs
-- (and within budget) the excess is the least there is; a combination that
-- needs more than TOP UTXOs is the largest ones.
local TOP = 256
local function fmt(h, l)
  return string.format('%010d%010d', h, l)
end
local function combine_pick()
  local single = redis.call('ZRANGEBYLEX', P.free, '[' .. want, '+', 'LIMIT', 0, 1)
  if #single == 1 then
    return single
  end
  local ms = redis.call('ZRANGE', P.free, 0, TOP - 1, 'REV')
  local n = #ms
  local ah, al = {}, {}
  for i = 1, n do
    ah[i], al[i] = limbs(ms[i])
  end
  local wh, wl = limbs(want)
  -- k: how many of the largest it takes to reach want (the fewest)
  local k, sh, sl = 0, 0, 0
  while k < n and less(sh, sl, wh, wl) do
    k = k + 1
    sh, sl = sh + ah[k], sl + al[k]
  end
  if less(sh, sl, wh, wl) then
    if n < TOP then
      return nil
    end
    -- more than TOP are needed: the largest, a page at a time
    local out = ms
    local from = TOP
    while true do
      local page = redis.call('ZRANGE', P.free, from, from + TOP - 1, 'REV')
      if #page == 0 then
        return nil
      end
      for _, m in ipairs(page) do
        local h, l = limbs(m)
        sh, sl = sh + h, sl + l
        out[#out + 1] = m
        if not less(sh, sl, wh, wl) then
          return out
        end
      end
      from = from + TOP
    end
  end
  -- k >= 2 (no single UTXO covers want). Lower bounds: the j smallest free
  -- UTXOs of the pool sum to lh[j], ll[j] (j < k).
  local lh, ll = {[0] = 0}, {[0] = 0}
  for j, m in ipairs(redis.call('ZRANGE', P.free, 0, k - 2)) do
    local h, l = limbs(m)
    lh[j], ll[j] = lh[j - 1] + h, ll[j - 1] + l
  end
  -- prefix sums of the largest, largest first
  local ph, pl = {[0] = 0}, {[0] = 0}
  for i = 1, n do
    ph[i], pl[i] = ph[i - 1] + ah[i], pl[i - 1] + al[i]
  end
  local bh, bl = norm(sh, sl)
  local best = {}
  for i = 1, k do best[i] = ms[i] end
  local chosen, steps, exact = {}, 0, false
  -- last completes chosen[1..k-1] (summing h, l) with the smallest free UTXO
  -- not among them that reaches want.
  local function last(h, l)
    local gh, gl = norm(wh - h, wl - l)
    local found = redis.call('ZRANGEBYLEX', P.free, '[' .. fmt(gh, gl), '+', 'LIMIT', 0, k)
    for _, m in ipairs(found) do
      local taken = false
      for j = 1, k - 1 do
        if ms[chosen[j]] == m then
          taken = true
          break
        end
      end
      if not taken then
        local mh, ml = limbs(m)
        if less(h + mh, l + ml, bh, bl) then
          bh, bl = norm(h + mh, l + ml)
          for j = 1, k - 1 do best[j] = ms[chosen[j]] end
          best[k] = m
          exact = not less(wh, wl, bh, bl)
        end
        return
      end
    end
  end
  -- dfs chooses the (depth+1)-th of the k-1 UTXOs taken from the largest.
  local function dfs(start, depth, h, l)
    if depth == k - 1 then
      steps = steps + 1
      last(h, l)
      return
    end
    local mid = k - 1 - depth -- still to take from the largest, this one included
    for i = start, n - mid + 1 do
      steps = steps + 1
      if steps > budget then return end
      -- the most a combination from i on can sum to: the mid largest from i
      -- on, and a last UTXO no larger than the smallest of them
      local j = i + mid - 1
      if less(h + ph[j] - ph[i - 1] + ah[j], l + pl[j] - pl[i - 1] + al[j], wh, wl) then return end
      -- the least a combination taking i can sum to: i and the mid smallest
      if less(h + ah[i] + lh[mid], l + al[i] + ll[mid], bh, bl) then
        chosen[depth + 1] = i
        dfs(i + 1, depth + 1, h + ah[i], l + al[i])
        if steps > budget or exact then return end
      end
    end
  end
  dfs(1, 0, 0, 0)
  return best
end

-- picked holds free-set members ("<amount>:<hash>").
local picked
if mode == 'count' then
  picked = redis.call('ZRANGE', P.free, 0, count - 1)
  if #picked < count then
    return redis.error_reply('UNAVAILABLE')
  end
elseif mode == 'amount' then
  picked = redis.call('ZRANGEBYLEX', P.free, '[' .. want, '+', 'LIMIT', 0, 1)
  if #picked == 0 then
    return redis.error_reply('UNAVAILABLE')
  end
elseif mode == 'combine' then
  picked = combine_pick()
  if not picked then
    return redis.error_reply('UNAVAILABLE')
  end
else
  picked = {}
  for i = 11, #ARGV do
    local h = ARGV[i]
    local a = redis.call('HGET', P.utxo, h)
    if not a then
      return redis.error_reply('UNKNOWN ' .. h)
    end
    if redis.call('HEXISTS', P.holder, h) == 1 then
      return redis.error_reply('LOCKED ' .. h)
    end
    picked[#picked + 1] = member(a, h)
  end
end

local expires = now + ttl
local f = redis.call('INCR', P.fence)
local hashes, amounts = {}, {}
for i, m in ipairs(picked) do
  local a, h = string.sub(m, 1, 20), string.sub(m, 22)
  hashes[i], amounts[i] = h, a
  redis.call('ZREM', P.free, m)
  redis.call('ZADD', P.held, expires, h)
  redis.call('HSET', P.holder, h, id)
end
local hs, as = table.concat(hashes, ','), table.concat(amounts, ',')
local key = P.res .. id
redis.call('HSET', key, 'fence', f, 'owner', owner, 'state', 'held', 'created', now,
  'expires', expires, 'hashes', hs, 'amounts', as)
redis.call('PEXPIREAT', key, math.max(expires, now + RERUN_GRACE_MS))
if is_legacy == '1' then
  redis.call('ZADD', P.legacy, f, id)
end
if fingerprint ~= '' then
  redis.call('SET', idemkey, id .. ' ' .. fingerprint .. ' ' .. now, 'PX', window)
end
return result('new', {'id', id, 'fence', tostring(f), 'owner', owner, 'state', 'held', 'created', tostring(now),
  'expires', tostring(expires), 'hashes', hs, 'amounts', as, 'txid', ''})
