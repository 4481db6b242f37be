-- Shared prelude of every script that reads or changes a pool's holds: the
-- Redis clock in milliseconds, the lazy reclaim of expired holds, the check
-- that the pool's state is present, and the reading of a reservation.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- notify wakes reservers waiting on the pool (its channel is <tag>:freed).
local function notify(avail)
  redis.call('PUBLISH', string.sub(avail, 1, #avail - 6) .. ':freed', '1')
end

-- unhold ends the hold on h; the UTXO is offered again when back is true and
-- the chain still has it.
local function unhold(avail, amount, held, holder, h, back)
  redis.call('ZREM', held, h)
  redis.call('HDEL', holder, h)
  if back then
    local a = redis.call('HGET', amount, h)
    if a then
      redis.call('ZADD', avail, a, h)
    end
  end
end

-- reclaim frees the holds that ended before now; it returns how many.
local function reclaim(avail, amount, held, holder, now)
  local expired = redis.call('ZRANGEBYSCORE', held, '-inf', now, 'LIMIT', 0, 1000)
  for _, h in ipairs(expired) do
    unhold(avail, amount, held, holder, h, true)
  end
  if #expired > 0 then
    notify(avail)
  end
  return #expired
end

-- require_loaded fails the script when Redis lost the pool (restart, flush,
-- failover to a stale replica): nothing may be granted until it is rebuilt.
local function require_loaded(loaded)
  if redis.call('EXISTS', loaded) == 0 then
    return redis.error_reply('NOTLOADED')
  end
  return nil
end

-- read_res returns a reservation as a flat reply, or nil when it is gone.
local function read_res(reskey, id)
  local f = redis.call('HMGET', reskey, 'fence', 'owner', 'state', 'created', 'expires', 'hashes', 'amounts', 'txid')
  if not f[1] then
    return nil
  end
  return {id, f[1], f[2] or '', f[3], f[4], f[5], f[6], f[7], f[8] or ''}
end

-- split turns a comma-separated string into a table.
local function split(s)
  local out = {}
  for x in string.gmatch(s or '', '[^,]+') do
    out[#out + 1] = x
  end
  return out
end

-- holds_all reports whether reservation id holds every one of hashes.
local function holds_all(holder, hashes, id)
  for _, h in ipairs(hashes) do
    if redis.call('HGET', holder, h) ~= id then
      return false
    end
  end
  return true
end

-- live_res reads a reservation that must be live and hold all its UTXOs; it
-- returns the reservation and its hashes, or nil and an error reply.
local function live_res(holder, reskey, id)
  local r = read_res(reskey, id)
  if not r then
    return nil, nil, redis.error_reply('NOTFOUND')
  end
  local hashes = split(r[7])
  if not holds_all(holder, hashes, id) then
    return nil, nil, redis.error_reply('NOTFOUND')
  end
  return r, hashes, nil
end

-- epoch_current admits a sync job's write made in leadership term epoch unless
-- a newer term already wrote to the pool (its key remembers the highest
-- epoch). Epoch 0 is a write outside any term and is always admitted.
local function epoch_current(key, epoch)
  epoch = tonumber(epoch)
  if epoch == 0 then
    return true
  end
  local cur = tonumber(redis.call('GET', key) or '0')
  if epoch < cur then
    return false
  end
  if epoch > cur then
    redis.call('SET', key, epoch)
  end
  return true
end
