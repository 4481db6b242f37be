-- End the reservations whose hold ran out (what every other script does
-- first), for a caller that only wants that done.
--! keys 13
-- KEYS: the pool's keys (see the prelude)
-- ARGV: none
-- Returns how many holds ran out.
return reclaim(now_ms())
