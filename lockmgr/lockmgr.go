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

// Item is one UTXO of a pool with its amount.
type Item struct {
	Hash   string
	Amount int64
}

// Request asks for a reservation in one pool: either exactly Hashes, or any Count free UTXOs.
type Request struct {
	PoolID int64
	Hashes []string
	Count  int
	Owner  string
	TTL    time.Duration // 0 means DefaultTTL
}

// Reservation is a granted hold.
type Reservation struct {
	ID        string // 128-bit random, 32 hex characters
	PoolID    int64
	Fence     int64
	Owner     string
	Items     []Item
	State     string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Hashes returns the hashes of the reserved UTXOs.
func (r *Reservation) Hashes() []string {
	out := make([]string, len(r.Items))
	for i, it := range r.Items {
		out[i] = it.Hash
	}
	return out
}

// Journal durably records a reservation before it is acknowledged. If Record
// fails the Redis hold is undone and the reserve fails.
type Journal interface {
	Record(ctx context.Context, r *Reservation) error
}

// Options configure a Manager.
type Options struct {
	// Prefix is put before every key (tests isolate themselves with it).
	Prefix string
	// Journal, when set, records every granted reservation.
	Journal Journal
}
