// Package lockmgr hands out contract UTXOs through reservations kept in Redis:
// every operation is one Lua script over keys sharing the pool's hash tag, so a
// UTXO is never held by two reservations, whatever the number of API replicas,
// and the layout also works on Redis Cluster. The key layout is documented at
// the top of internal/scripts/prelude.lua; amounts are kept as 20-digit decimal
// strings and the free set is ordered by them lexically, so selection by
// amount is exact up to 2^64-1.
//
// # Parts
//
// A Manager (New) is the engine. It composes its concerns, each a type over
// the same connection, key prefix and leadership epoch (Manager.Fenced):
// Reservations, what clients hold (reservations.go, wait.go); Pools, the
// UTXOs Redis offers and the chain's changes to them (pools.go, submits.go);
// Releases, the log of releases the syncer writes to the journal
// (releases.go); and Loads, whether a pool is in Redis and its rebuild
// (loads.go). The API replicas use a Manager; the leader's sync jobs use one
// fenced with their term's epoch, which their ApplyChain and EndReservations
// carry.
//
// # The reservation lifecycle
//
// This is the one state machine of a reservation; every path that ends one
// goes through the same Redis function (let_go in internal/scripts/prelude.lua) and
// the journal's conditional update (Journal.Update).
//
// A UTXO's chain state, as the syncer keeps it in PostgreSQL, is one of
// available (unspent, mature, not spent by a pending transaction), immature
// (a coinbase output before its maturity), spent (by a transaction in a block
// or in the mempool) and invalidated (its creating transaction failed, was
// dropped or was reorganised away). Redis mirrors the available ones: only
// they are offered. "Reserved" is not a chain state: an available UTXO is
// reserved while a live reservation holds it.
//
// A reservation is live while held or submitted, and ends released, expired,
// spent or invalidated:
//
//	event (who)                          from        to           Redis                      journal
//	reserve (client)                     -           held         take free UTXOs            insert (in the same load)
//	extend (client)                      held        held         move the expiry            update expiry
//	submit tx (client)                   held        submitted    hold until grace           update state, tx
//	release (client)                     held        released     end: UTXOs offered again   after Redis, not waited for
//	release (client)                     submitted   submitted    -                          refused: ErrNotHeld
//	release again (client)               released    released     -                          -: answered as done
//	TTL passes (clock)                   live        expired      lazily, by the next script the syncer, later
//	a UTXO spent, by T or unknown (chain) held       spent(T)     end                        first, then Redis
//	a UTXO spent by T (chain)            submitted T spent        end                        first, then Redis
//	a UTXO spent by X != T (chain)       submitted T invalidated  end                        first, then Redis
//	a UTXO invalidated (chain)           live        invalidated  end                        first, then Redis
//	its spend vanished or failed (chain) spent       released     -                          update
//	... and a UTXO of it invalidated     spent       invalidated  -                          update
//
// "End" lets go of every UTXO the reservation still holds and offers again
// exactly those the chain still offers: the others of a reservation whose one
// UTXO was spent come back at once, a spent or invalidated one never does. A
// reservation that ran out before the chain event was seen ends expired, not
// spent. The syncer settles reservations from the chain state of their UTXOs
// (storage.Store.Settle decides, with NextState), so the same rules hold
// whether a spend is learnt from a block, the mempool or a listing, and a
// missed event is caught by the next sweep.
//
// Writes are ordered so that a failure never lets a UTXO be held twice:
//
//   - A grant is journalled before it is acknowledged, and undone if the
//     journal refuses it. The journal refuses a grant made in a load of the
//     pool into Redis that a rebuild has replaced (Reservation.Load,
//     Snapshot.Load): the rebuild records its new load before it takes its
//     snapshot, so an acknowledged grant is either in the snapshot or was
//     never lost.
//   - A release takes effect in Redis, is answered, and reaches the journal
//     afterwards (Journal.Released). Until it does, the journal still counts
//     the reservation live; if Redis is lost meanwhile, the rebuild restores
//     live reservations newest fence first and skips one whose UTXO a newer
//     reservation holds, so a release the journal has not learnt can only
//     keep its UTXOs held until its expiry, never hand them out twice. Once
//     the release reaches the journal after a rebuild of its pool began
//     (Reservation.Load is no longer the pool's load), Redis ends the
//     reservation again as soon as the pool is loaded, so the restored hold
//     is ended then, not at its expiry (Journal.FollowReloads); a release
//     the journal decides while Redis has lost the pool is followed the same
//     way. The chain's settlement does not overtake a release: the syncer takes a
//     UTXO the chain took away out of Redis first, then writes the releases
//     Redis recorded of the reservations holding it (Releases.ReleasesOf),
//     then settles; a release after the first step finds the UTXO gone and
//     is decided by the journal, where the settlement orders it.
//   - Every other change (extend, submit, the chain's endings) is journalled
//     before it is acknowledged; when the journal says a reservation ended,
//     Redis is made to follow (EndReservations). An extend or submit takes
//     effect in Redis first: when its journal write then fails, the caller
//     gets the error and the journal still learns the change afterwards
//     (Journal.UpdateLater), so that Redis and the journal agree again.
package lockmgr

import (
	"context"
	"errors"
	"time"

	"github.com/bufferd/bufferd/client"
	"github.com/bufferd/bufferd/lockmgr/internal/scripts"
)

// Sentinel errors.
var (
	// ErrNoUTXOAvailable means no free UTXO matches the request.
	ErrNoUTXOAvailable = errors.New("lockmgr: no utxo available")
	// ErrLocked means a requested UTXO is held by another reservation.
	ErrLocked = errors.New("lockmgr: utxo is locked")
	// ErrUnknownUTXO means a requested UTXO is not an unspent UTXO of the pool.
	ErrUnknownUTXO = errors.New("lockmgr: unknown utxo")
	// ErrBadRequest means the request is malformed (no mode, bad TTL...).
	ErrBadRequest = errors.New("lockmgr: bad request")
	// ErrNotFound means no live reservation has that id in the pool (it never
	// existed, or it ended: released, expired, spent).
	ErrNotFound = errors.New("lockmgr: reservation not found")
	// ErrEnded is what a Journal's Update returns (wrapped) when the journal
	// says the reservation already ended (released, expired, spent...).
	ErrEnded = errors.New("lockmgr: reservation has ended")
	// ErrStaleEpoch means a sync write carried the epoch of a leadership term
	// older than one that already wrote to the pool.
	ErrStaleEpoch = errors.New("lockmgr: stale leadership epoch")
	// ErrLifetime means an extension would keep a reservation past MaxLifetime.
	ErrLifetime = errors.New("lockmgr: reservation lifetime exceeded")
	// ErrNotHeld means the operation needs a held reservation but it was
	// submitted: it can no longer be extended or released; the chain settles it.
	ErrNotHeld = errors.New("lockmgr: reservation is not held")
	// ErrTxMismatch means the reservation was already submitted with another transaction.
	ErrTxMismatch = errors.New("lockmgr: reservation submitted with another transaction")
	// ErrStaleSnapshot means a rebuild's snapshot predates a change the syncer
	// applied meanwhile; take a new snapshot and rebuild again.
	ErrStaleSnapshot = errors.New("lockmgr: rebuild snapshot is stale")
	// ErrRebuilding means Redis lost the pool's state and it is being rebuilt
	// from the journal; retry shortly.
	ErrRebuilding = errors.New("lockmgr: pool state is being rebuilt")
	// ErrKeyReused means an idempotency key was sent again with another
	// request (another body or owner) within IdempotencyWindow.
	ErrKeyReused = errors.New("lockmgr: idempotency key reused with another request")
	// ErrKeyInFlight means the first request with this idempotency key has not
	// finished yet; retry shortly.
	ErrKeyInFlight = errors.New("lockmgr: a request with this idempotency key is in progress")
	// ErrKeyTaken is what a Journal's Record returns (wrapped) when another
	// reservation already has the idempotency key.
	ErrKeyTaken = errors.New("lockmgr: idempotency key already recorded")

	// ErrScriptKeys is a script called with another number of keys than
	// its header declares: a bug in lockmgr, never sent to Redis.
	ErrScriptKeys = scripts.ErrKeyCount
)

// Default and limits of a reservation's time to live.
const (
	DefaultTTL = 600 * time.Second
	MinTTL     = time.Second
	MaxTTL     = time.Hour
	// LegacyOwner is the owner label of reservations made by the legacy /dapp API.
	LegacyOwner = "legacy"
	// LegacyShortTTL is what the legacy list-utxos shortens the oldest legacy hold to
	// when nothing is free (the original's behaviour, kept for legacy holds only).
	LegacyShortTTL = 60 * time.Second
)

// MaxLifetime caps how long a reservation may live in all, extensions included.
const MaxLifetime = 24 * time.Hour

// DefaultSubmitGrace is how long a submitted reservation keeps its UTXOs while
// the chain settles the transaction.
const DefaultSubmitGrace = 30 * time.Minute

// IdempotencyWindow is how long an idempotency key is remembered: a request
// repeating it within the window gets the first reservation back (or
// ErrKeyReused when its request differs); after it, the key is new again.
const IdempotencyWindow = 24 * time.Hour

// keyInFlightLimit is how long a grant may stay unjournalled: an idempotency
// key naming a reservation the journal still lacks after that belongs to a
// grant that failed without being undone, and is forgotten.
const keyInFlightLimit = 30 * time.Second

// Reservation states: the client module's names (one vocabulary from the
// API to the journal).
const (
	StateHeld        = client.StateHeld
	StateSubmitted   = client.StateSubmitted
	StateReleased    = client.StateReleased
	StateExpired     = client.StateExpired
	StateSpent       = client.StateSpent
	StateInvalidated = client.StateInvalidated
)

// Live reports whether a reservation in state holds its UTXOs.
func Live(state string) bool { return state == StateHeld || state == StateSubmitted }

// Item is one UTXO of a pool with its amount.
type Item struct {
	Hash   string
	Amount uint64
}

// Request asks for a reservation in one pool, in one of four modes: exactly
// Hashes (all or nothing); any Count free UTXOs; Amount (best fit: an exact
// match, else the smallest free UTXO worth at least Amount); or Amount with
// Combine (the fewest UTXOs whose sum covers Amount, then the least excess a
// search bounded whatever the pool's size finds: the least there is in a
// pool of up to 256 free UTXOs while the search fits its budget, as it
// always does for two UTXOs).
type Request struct {
	PoolID  int64
	Hashes  []string
	Count   int
	Amount  uint64
	Combine bool
	Owner   string
	TTL     time.Duration // 0 means DefaultTTL
	// IdempotencyKey makes a retried reserve return the reservation the first
	// attempt made instead of a second one (any replica), as long as its
	// Fingerprint is the same; the same key with another fingerprint fails
	// with ErrKeyReused.
	IdempotencyKey string
	// Fingerprint identifies the request (method, route, body, owner); see
	// Fingerprint. Required with IdempotencyKey.
	Fingerprint string
}

// Reservation is a granted hold.
type Reservation struct {
	ID        string // 32 hex characters naming the pool, the rest random (see PoolOfID)
	PoolID    int64
	Fence     int64
	Owner     string
	Items     []Item
	State     string
	TxID      string // the spending transaction, once submitted or settled
	CreatedAt time.Time
	ExpiresAt time.Time
	// Key is the digest of the idempotency key it was made with ("" if none)
	// and Fingerprint that request's fingerprint.
	Key         string
	Fingerprint string
	// Replayed is true when an idempotent retry returned an earlier
	// reservation, or a repeated Release one it had released.
	Replayed bool
	// Load names the pool's load into Redis the grant was made in (see
	// Snapshot.Load); set by Reserve, and by Release to the load the
	// release was made in, for the journal.
	Load string
	// UpdatedAt is when it last changed, set by the calls that change it
	// (Release and Released: the Redis clock); zero otherwise.
	UpdatedAt time.Time
}

// Hashes returns the hashes of the reserved UTXOs.
func (r *Reservation) Hashes() []string {
	out := make([]string, len(r.Items))
	for i, it := range r.Items {
		out[i] = it.Hash
	}
	return out
}

// Journal durably records every reservation state change before it is
// acknowledged. If Record fails the Redis hold is undone and the reserve fails.
type Journal interface {
	// Record writes a new reservation (state held). Recording the same
	// reservation again is a no-op; when another one already has its
	// idempotency key (r.Key) the error wraps ErrKeyTaken. A grant made in a
	// load of the pool that a rebuild has since replaced (r.Load) must be
	// refused with an error wrapping ErrRebuilding: Redis may have lost it
	// before the rebuild's snapshot, which then lacks it.
	Record(ctx context.Context, r *Reservation) error
	// Update writes a change of a reservation (r.State, r.ExpiresAt, r.TxID)
	// whose row is in one of the states from (all live ones when empty) with
	// a fence no newer than r.Fence. A row that ended fails with an error
	// wrapping ErrEnded; a live row in another state (a submitted one asked
	// to be released) with ErrNotHeld.
	Update(ctx context.Context, r *Reservation, from ...string) error
	// Released records, without being waited for, that r was released at
	// at: the release took effect in Redis, in its pool's load r.Load, and
	// was answered. It is retried while the journal's store fails, for a
	// while past r's expiry. A release written after a rebuild of the pool
	// began (the pool's load is no longer r.Load) is passed to the function
	// given to FollowReloads: the rebuild may have restored r from the
	// journal, where it was still live.
	Released(r *Reservation, at time.Time)
	// UpdateLater writes, without being waited for, a change Update could
	// not write: it took effect in Redis, whose state the journal must
	// follow. It is retried like Released; a row the change no longer
	// applies to (it ended meanwhile) is left as it is.
	UpdateLater(r *Reservation, from ...string)
	// Withdrawn records, without being waited for, that the grant r was
	// undone in Redis after a Record that failed for a reason other than a
	// refusal (a timeout, a broken connection): that Record may still have
	// been written, or be written yet, and the journal must not keep r live.
	// It is retried like Released, and followed like it when the pool was
	// reloaded since r.Load.
	Withdrawn(r *Reservation)
	// FollowReloads sets the function the journal calls, without waiting
	// for it, with the reservations of a pool whose deferred ending
	// (Released, Withdrawn) it wrote after the pool's load changed: Redis
	// must end them again if a rebuild restored them. New sets it.
	FollowReloads(end func(pool int64, ids []string))
	// Lookup returns the journal's reservation id, or ErrNotFound.
	Lookup(ctx context.Context, id string) (*Reservation, error)
	// LookupKey returns the reservation made with the idempotency key of
	// digest key, or ErrNotFound.
	LookupKey(ctx context.Context, key string) (*Reservation, error)
}

// Options configure a Manager.
type Options struct {
	// Prefix is put before every key (tests isolate themselves with it).
	Prefix string
	// Journal, when set, records every state change before it is acknowledged.
	Journal Journal
	// SubmitGrace is how long a submitted reservation keeps holding; 0 means DefaultSubmitGrace.
	SubmitGrace time.Duration
	// MaxLifetime caps a reservation's life, extensions included; 0 means MaxLifetime.
	MaxLifetime time.Duration
}

// Snapshot is the durable state a pool is rebuilt from after Redis lost it.
type Snapshot struct {
	Available  []Item         // every UTXO the chain offers for the pool, held or not
	Live       []*Reservation // live reservations (held or submitted, not expired)
	FenceFloor int64          // the highest fence the journal knows
	// Keys are the idempotency keys still remembered (reservations made within
	// IdempotencyWindow with a key), live or not.
	Keys []*Reservation
	// SyncGen is the pool's sync generation read (SyncGeneration) before the
	// snapshot was taken; the rebuild refuses if the syncer changed the pool since.
	SyncGen int64
	// Load names the new load of the pool into Redis (NewLoadID), recorded
	// in the journal before the snapshot was taken, so that the journal
	// refuses grants made in the load being replaced; empty: a new one.
	Load string
}
