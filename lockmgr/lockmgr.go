// Package lockmgr hands out contract UTXOs through reservations kept in Redis:
// every operation is one Lua script over keys sharing the pool's hash tag, so a
// UTXO is never held by two reservations, whatever the number of API replicas,
// and the layout also works on Redis Cluster.
//
// Key layout for pool 7 under prefix P (all in hash slot "{p7}"):
//
//	P{p7}:avail       ZSET hash -> amount   free and on chain, not held
//	P{p7}:amount      HASH hash -> amount   every UTXO the chain has for the pool
//	P{p7}:held        ZSET hash -> expiry   held UTXOs, scored by expiry (ms, Redis clock)
//	P{p7}:holder      HASH hash -> id       which reservation holds a UTXO
//	P{p7}:res:<id>    HASH                  the reservation, a TTL key
//	P{p7}:legacy      ZSET id -> fence      reservations made by the legacy API, oldest first
//	P{p7}:fence       STRING                the pool's fencing counter
//
// Expired holds are reclaimed lazily by the next script that touches the pool.
package lockmgr

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors.
var (
	// ErrUnavailable means no free UTXO matches the request.
	ErrUnavailable = errors.New("lockmgr: no utxo available")
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
	// ErrNotHeld means the operation needs a held reservation but it was submitted.
	ErrNotHeld = errors.New("lockmgr: reservation is not held")
	// ErrTxMismatch means the reservation was already submitted with another transaction.
	ErrTxMismatch = errors.New("lockmgr: reservation submitted with another transaction")
	// ErrStaleSnapshot means a rebuild's snapshot predates a change the syncer
	// applied meanwhile; take a new snapshot and rebuild again.
	ErrStaleSnapshot = errors.New("lockmgr: rebuild snapshot is stale")
	// ErrRebuilding means Redis lost the pool's state and it is being rebuilt
	// from the journal; retry shortly.
	ErrRebuilding = errors.New("lockmgr: pool state is being rebuilt")
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

// Reservation states as clients see them.
const (
	StateHeld        = "held"
	StateSubmitted   = "submitted"
	StateReleased    = "released"
	StateExpired     = "expired"
	StateSpent       = "spent"
	StateInvalidated = "invalidated"
)

// Item is one UTXO of a pool with its amount.
type Item struct {
	Hash   string
	Amount int64
}

// Request asks for a reservation in one pool, in one of four modes: exactly
// Hashes (all or nothing); any Count free UTXOs; Amount (best fit: an exact
// match, else the smallest free UTXO worth at least Amount); or Amount with
// Combine (the fewest UTXOs whose sum covers Amount, then the least excess).
type Request struct {
	PoolID  int64
	Hashes  []string
	Count   int
	Amount  int64
	Combine bool
	Owner   string
	TTL     time.Duration // 0 means DefaultTTL
	// IdempotencyKey makes a retried reserve return the reservation the first
	// attempt made instead of a second one (any replica).
	IdempotencyKey string
}

// Reservation is a granted hold.
type Reservation struct {
	ID        string // 32 hex characters naming the pool, the rest random (see PoolOfID)
	PoolID    int64
	Fence     int64
	Owner     string
	Items     []Item
	State     string
	TxID      string // the spending transaction, once submitted
	CreatedAt time.Time
	ExpiresAt time.Time
	// Replayed is true when an idempotent retry returned an earlier reservation.
	Replayed bool
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
	// Record writes a new reservation (state held) and marks its UTXOs reserved.
	Record(ctx context.Context, r *Reservation) error
	// Update writes a changed reservation (state, expiry, tx id); the row must
	// exist with the same fence and still be live, else the error wraps
	// ErrEnded. Ending states free its UTXOs.
	Update(ctx context.Context, r *Reservation) error
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
	Available  []Item         // every UTXO of the pool unspent on chain, held or not
	Live       []*Reservation // live reservations (held or submitted, not expired)
	FenceFloor int64          // the highest fence the journal knows
	// SyncGen is the pool's sync generation read (SyncGeneration) before the
	// snapshot was taken; the rebuild refuses if the syncer changed the pool since.
	SyncGen int64
}
