-- The prelude of every script: the pool's keys, the Redis clock, and the one
-- way a hold or a reservation ends (see the lifecycle in lockmgr's package
-- doc). Every script receives the pool's keys first, in this order:
--
--   KEYS[1]  free      ZSET, every score 0, members "<amount>:<hash>" with the
--                      amount as 20 decimal digits: free UTXOs in exact amount
--                      order (ZRANGEBYLEX), never a float
--   KEYS[2]  utxo      HASH hash -> amount (20 digits): the UTXOs the chain
--                      offers (unspent, mature, not spent in the mempool)
--   KEYS[3]  held      ZSET hash -> expiry in ms on the Redis clock
--   KEYS[4]  holder    HASH hash -> the id of the reservation holding it
--   KEYS[5]  legacy    ZSET id -> fence: live legacy reservations, oldest first
--   KEYS[6]  fence     STRING the pool's fencing counter
--   KEYS[7]  ready     STRING set once the pool's state is in Redis
--   KEYS[8]  syncgen   STRING counts the syncer's writes to the pool
--   KEYS[9]  epoch     STRING the newest leadership epoch that wrote
--   KEYS[10] res       the prefix of reservation keys: res .. id is a HASH
--                      (fence, owner, state, created, expires, hashes,
--                      amounts, txid), a key that expires with the hold
--   KEYS[11] freed     pub/sub channel: UTXOs were freed
--   KEYS[12] submitted pub/sub channel: a reservation was submitted
--   KEYS[13] idem      the prefix of idempotency keys
--
-- and its own keys after them. Each script declares how many keys it takes
-- on a line "--! keys N" ("N+" when more may follow), which Go checks on
-- every call. Keys a script derives itself (a reservation's: KEYS[10] .. id;
-- an idempotency key's: KEYS[13] .. digest) extend a key of the pool, so
-- they carry its hash tag and live in its cluster slot.
--
-- The pool's other keys: <tag>:listturn (STRING, the counter of sampled
-- listings, see list.lua), <tag>:releases (ZSET, the recent releases, see
-- release.lua) and <tag>:stage:<nonce>:* (a rebuild's staged state, see
-- rebuild_commit.lua).
local P = {
  free = KEYS[1], utxo = KEYS[2], held = KEYS[3], holder = KEYS[4], legacy = KEYS[5],
  fence = KEYS[6], ready = KEYS[7], syncgen = KEYS[8], epoch = KEYS[9], res = KEYS[10],
  freed = KEYS[11], submitted = KEYS[12], idem = KEYS[13],
}

-- The least time a reservation key outlives its creation, so that a script
-- run twice (go-redis resends one after a lost connection) finds the first
-- run's reservation even when its hold was very short.
local RERUN_GRACE_MS = 10000

-- The owner of legacy reservations (lockmgr.LegacyOwner), which the pool's
-- legacy set lists.
local LEGACY_OWNER = 'legacy'

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- member is a free-set member: the 20-digit amount, ':', the hash.
local function member(amount, h)
  return amount .. ':' .. h
end

-- offer makes h, whose hold was just removed, free if the chain offers it.
-- amount, when given, is its amount and says the chain offers it (the
-- caller checked), saving the read.
local function offer(h, amount)
  local a = amount or redis.call('HGET', P.utxo, h)
  if a then
    redis.call('ZADD', P.free, 0, member(a, h))
    return 1
  end
  return 0
end

-- unoffer takes h out of the free set.
local function unoffer(h)
  local a = redis.call('HGET', P.utxo, h)
  if a then
    redis.call('ZREM', P.free, member(a, h))
  end
end

-- split turns a comma-separated string into a table.
local function split(s)
  local out = {}
  for x in string.gmatch(s or '', '[^,]+') do
    out[#out + 1] = x
  end
  return out
end

-- read_res returns reservation id as a flat list of field names and values
-- (Go decodes it by name), or nil when Redis has no such reservation.
local function read_res(id)
  local f = redis.call('HMGET', P.res .. id, 'fence', 'owner', 'state', 'created', 'expires', 'hashes', 'amounts', 'txid')
  if not f[1] then
    return nil
  end
  return {'id', id, 'fence', f[1], 'owner', f[2] or '', 'state', f[3], 'created', f[4], 'expires', f[5],
    'hashes', f[6] or '', 'amounts', f[7] or '', 'txid', f[8] or ''}
end

-- field returns the value of name in a flat list read_res returned.
local function field(r, name)
  for i = 1, #r, 2 do
    if r[i] == name then
      return r[i + 1]
    end
  end
  return nil
end

-- set_field changes the value of name in a flat list read_res returned.
local function set_field(r, name, v)
  for i = 1, #r, 2 do
    if r[i] == name then
      r[i + 1] = v
      return
    end
  end
  r[#r + 1] = name
  r[#r + 1] = v
end

-- let_go is the one way holds end, whatever ends them (a release, an expiry,
-- the chain, an undone grant): each of hashes reservation id still holds is
-- let go and offered again if, and only if, the chain still offers it.
-- offered, when given, holds the amounts of hashes, all of which the caller
-- found the chain offering in this same script. It returns how many UTXOs
-- became free, having told the waiters.
local function let_go(id, hashes, offered)
  local freed = 0
  for i, h in ipairs(hashes) do
    if redis.call('HGET', P.holder, h) == id then
      redis.call('ZREM', P.held, h)
      redis.call('HDEL', P.holder, h)
      freed = freed + offer(h, offered and offered[i])
    end
  end
  if freed > 0 then
    redis.call('PUBLISH', P.freed, '1')
  end
  return freed
end

-- end_res is the one way a reservation ends in Redis (its holds end through
-- let_go). Its key is deleted, except that one which ran out within
-- RERUN_GRACE_MS of its creation stays until then, marked ended, for a rerun
-- of its reserve script to find. It returns how many UTXOs became free.
local function end_res(id, now)
  local key = P.res .. id
  local f = redis.call('HMGET', key, 'hashes', 'created', 'expires', 'owner')
  local freed = let_go(id, split(f[1]))
  if f[2] and tonumber(f[3]) <= now and tonumber(f[2]) + RERUN_GRACE_MS > now then
    redis.call('HSET', key, 'state', 'ended')
  else
    redis.call('DEL', key)
  end
  if f[4] == LEGACY_OWNER then
    redis.call('ZREM', P.legacy, id)
  end
  return freed
end

-- reclaim ends the reservations whose hold ran out before now (at most 1000
-- holds a call; the next script goes on).
local function reclaim(now)
  local expired = redis.call('ZRANGEBYSCORE', P.held, '-inf', now, 'LIMIT', 0, 1000)
  for _, h in ipairs(expired) do
    local id = redis.call('HGET', P.holder, h)
    if id and redis.call('EXISTS', P.res .. id) == 1 then
      end_res(id, now)
    end
    -- What is left of the hold (its reservation's key expired first).
    let_go(id, {h})
  end
  return #expired
end

-- require_ready fails the script when Redis lost the pool (restart, flush,
-- failover to a stale replica): nothing may be granted until it is rebuilt.
-- Else it returns nil and the id of the pool's current load into Redis.
local function require_ready()
  local load = redis.call('GET', P.ready)
  if not load then
    return redis.error_reply('NOTLOADED')
  end
  return nil, load
end

-- holds_all reports whether reservation id holds every one of hashes.
local function holds_all(hashes, id)
  for _, h in ipairs(hashes) do
    if redis.call('HGET', P.holder, h) ~= id then
      return false
    end
  end
  return true
end

-- live_res reads a reservation that must be live: it exists, has not run
-- out, and holds all its UTXOs. It returns the reservation and its hashes,
-- or nil and an error reply.
local function live_res(id, now)
  local r = read_res(id)
  if not r or tonumber(field(r, 'expires')) <= now then
    return nil, nil, redis.error_reply('NOTFOUND')
  end
  local hashes = split(field(r, 'hashes'))
  if not holds_all(hashes, id) then
    return nil, nil, redis.error_reply('NOTFOUND')
  end
  return r, hashes, nil
end

-- set_expiry makes reservation id end at expires: its holds and its key
-- (which lives at least RERUN_GRACE_MS from its creation).
local function set_expiry(id, hashes, created, expires)
  for _, h in ipairs(hashes) do
    redis.call('ZADD', P.held, 'XX', expires, h)
  end
  redis.call('HSET', P.res .. id, 'expires', expires)
  redis.call('PEXPIREAT', P.res .. id, math.max(expires, created + RERUN_GRACE_MS))
end

-- epoch_current admits a sync job's write made in leadership term epoch unless
-- a newer term already wrote to the pool (its key remembers the highest
-- epoch). Epoch 0 is a write outside any term and is always admitted.
local function epoch_current(epoch)
  epoch = tonumber(epoch)
  if epoch == 0 then
    return true
  end
  local cur = tonumber(redis.call('GET', P.epoch) or '0')
  if epoch < cur then
    return false
  end
  if epoch > cur then
    redis.call('SET', P.epoch, epoch)
  end
  return true
end

local function stale_epoch(epoch)
  return redis.error_reply('STALEEPOCH epoch ' .. epoch .. ' is older than the pool\'s')
end
