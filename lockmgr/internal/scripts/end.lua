-- End reservations the journal says have ended (settled by the chain,
-- expired, released): Redis follows the journal. Each UTXO they hold is
-- offered again if the chain still offers it (see end_res).
--! keys 13
-- KEYS: the pool's keys (see the prelude)
-- ARGV: 1 leadership epoch (0: not a sync job's write), 2.. ids
-- Returns how many of the reservations Redis still had.
if not epoch_current(ARGV[1]) then
  return stale_epoch(ARGV[1])
end
local now = now_ms()
local n = 0
for i = 2, #ARGV do
  if redis.call('EXISTS', P.res .. ARGV[i]) == 1 then
    end_res(ARGV[i], now)
    n = n + 1
  end
end
return n
