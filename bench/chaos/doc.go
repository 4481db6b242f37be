// Package chaos is the randomized lifecycle checker of bufferd (issue 13):
// a seeded driver that runs many clients against a whole deployment of real
// processes, mixes their operations with chain events and faults, and checks
// at every quiet point that no UTXO was lost or doubled.
//
// # The deployment
//
// Run starts a private redis-server and a private PostgreSQL on free
// loopback ports (testenv.LaunchRedis, testenv.LaunchPostgres: they can be
// killed, stopped and flushed without touching the machine's shared
// servers), then for each trial a database and a Redis key prefix of its
// own, `bufferd migrate up`, `bufferd simchain`, 3 × `bufferd api` and
// 2 × `bufferd syncer` indexing the simulated node (BUFFERD_CHAIN_KIND=bytomd)
// with short settings (sync 200ms, index poll 100ms, leader lease 2s, sweep
// Options.SweepInterval). The pools hold an issued asset under P2WSH
// programs and take unconfirmed outputs; no coinbase output is ever theirs.
//
// # Rounds
//
// A run is a sequence of rounds. In each, for about Options.Round and all at
// once:
//
//   - every client (Options.Clients) reserves by count and by amount
//     (with an Idempotency-Key, retried on another API while the outcome is
//     unknown), extends, submits (it spends its UTXOs on the simulated chain,
//     its change back to the pool, sometimes as a transaction that fails),
//     releases, abandons a reservation to its expiry (TTLs are 1-5 s), and
//     retries its last reserve to check that the retry returns the same
//     reservation;
//   - the chain actor funds pools, spends UTXOs of the pools away (confirmed
//     ones, outputs of pending transactions, and again outputs a pending
//     transaction already spends), mines blocks, reorganises the last 1-3
//     blocks and drops pending transactions;
//   - the fault actor (most rounds) flushes Redis, kills it with SIGKILL,
//     stops PostgreSQL cleanly, pauses the leading syncer with SIGSTOP past
//     its lease, kills it, or kills an API, and undoes the fault after a
//     moment.
//
// # Quiet points and the model
//
// A quiet point ends every round: clients, chain events and faults stop;
// paused processes continue and dead ones start again; the driver waits
// until every grant whose outcome a client does not know ran out, a syncer
// leads, every pool is loaded in Redis and indexed up to the simulator's tip
// (and stays so for a few index polls, so that the mempool overlay is
// applied), and one sweep interval passed. Then it reads the truth and
// bufferd's view of it:
//
//   - the truth: the simulator's blockcenter list-utxos with unconfirmed
//     set, per pool: its confirmed unspent outputs minus those a pending
//     transaction spends, plus the outputs of pending transactions; exactly
//     what bufferd must offer;
//   - the journal (PostgreSQL: reservations, reservation_utxos), Redis
//     (the free set through lockmgr.Manager.ListAvailable, the live holds
//     through Holds and Get) and GET /v1/pools.
//
// and checks:
//
//   - none lost: every unspent UTXO is reservable or held by exactly one
//     live reservation, the same one in the journal and in Redis;
//   - none doubled: no UTXO is in two live reservations, nor reservable
//     while held; nothing else is reservable; a held reservation holds only
//     unspent UTXOs;
//   - the counts of GET /v1/pools equal what can be reserved;
//   - fences only grow: each pool's highest fence in the journal never goes
//     down, and a reservation requested after another's grant was
//     acknowledged has a larger fence;
//   - every reservation a client was told it holds is in the journal, with
//     the fence and UTXOs it was told;
//   - continuously: every grant is recorded with the span in which its
//     client certainly held it (from the answer to the release it sent, its
//     expiry, or the first chain event that may have ended it), and no two
//     such spans of one UTXO overlap (bench.CheckGrants); the journal's rows
//     that no transaction touched must not overlap either
//     (bench.CheckJournal).
//
// A reservation expiring within a second of a check is left out of it, and
// a failing check is repeated a few times, a sweep apart, before it counts:
// what the sweep repairs within that time is not reported.
//
// # Seeds, histories and shrinking
//
// Every random choice comes from the seed: round r's steps (which actor does
// what, with what amounts and TTLs, after what pause, which fault for how
// long) are drawn from a PRNG seeded with (seed, r) alone. What a step acts
// on at run time (which of the client's reservations, which UTXO, which API)
// is picked among the candidates of the moment with the step's own random
// number, so any subset of a schedule can be replayed. Every step carried
// out is recorded with the seed, its index and its time.
//
// On a violation Run replays subsets of the failing history on fresh
// deployments (first the empty one, then by delta debugging, within
// Options.ShrinkBudget) and reports the shortest history that still fails.
//
// Real processes keep some timing nondeterminism: the interleaving of
// concurrent clients, the moments at which the syncer polls, leader
// elections and Redis's clock are not under the seed's control, so the same
// seed gives the same schedule but not always the same interleaving, and a
// failure may need several replays (or none may reproduce it).
package chaos
