-- Release a reservation the journal has just ended: its UTXOs go free at once
-- (those the chain still offers).
-- KEYS: the pool's keys (see the prelude)
-- ARGV: 1 id
-- Returns the reservation as it was, or an error NOTLOADED | NOTFOUND.
local id = ARGV[1]
local err = require_ready()
if err then return err end
local now = now_ms()
reclaim(now)
local r = read_res(id)
if not r or field(r, 'state') == 'ended' then
  return redis.error_reply('NOTFOUND')
end
end_res(id, now)
return r
