package handlers

import (
	"context"
	"time"

	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
)

// The handlers depend on what they use of storage and lockmgr, an interface
// each; *storage.Store and *lockmgr.Manager satisfy them.

// Store is what the routes read and write in PostgreSQL.
type Store interface {
	// Pools: find and register them.
	EnsurePool(ctx context.Context, asset, program string, opts ...storage.PoolOptions) (storage.Pool, bool, error)
	FindPool(ctx context.Context, asset, program string) (storage.Pool, error)
	GetPool(ctx context.Context, id int64) (storage.Pool, error)
	ListPools(ctx context.Context) ([]storage.Pool, error)
	PoolCounts(ctx context.Context) (map[int64]storage.Counts, error)

	// Reservations: read the journal.
	GetReservation(ctx context.Context, id string) (storage.Reservation, error)
	ListReservations(ctx context.Context, f storage.ReservationFilter, after storage.ReservationKey, limit int) ([]storage.Reservation, error)
	LiveReservations(ctx context.Context, limit int) (map[int64]int64, []storage.Reservation, error)
	GrantHistory(ctx context.Context, end time.Time, step time.Duration, n int) (map[int64][]int64, error)

	// The chain: read what the syncer recorded of it.
	GetUTXOs(ctx context.Context, hashes []string) ([]storage.UTXO, error)
	ListUTXOs(ctx context.Context, poolID int64, state string, afterID int64, limit int) ([]storage.UTXO, error)
	ListTransactions(ctx context.Context, poolID int64, address string, beforeID int64, limit int) ([]storage.Transaction, error)

	// Legacy balances: keep the rows.
	AddBalance(ctx context.Context, b storage.Balance) error
	ListBalances(ctx context.Context, address, asset string) ([]storage.Balance, error)

	// Status: read the sync jobs' state for /v1/status and the status page.
	Cursors(ctx context.Context) ([]storage.SyncCursor, error)
	CurrentTerm(ctx context.Context, job string) (storage.LeaderTerm, error)

	// Ping checks that the database answers (/readyz).
	Ping(ctx context.Context) error
}

// Locks is what the routes ask of the reservation engine in Redis.
type Locks interface {
	Reserve(ctx context.Context, r lockmgr.Request) (*lockmgr.Reservation, error)
	ReserveWait(ctx context.Context, r lockmgr.Request, wait time.Duration) (*lockmgr.Reservation, error)
	Extend(ctx context.Context, pool int64, id string, ttl time.Duration) (*lockmgr.Reservation, error)
	Submit(ctx context.Context, pool int64, id, txID string) (*lockmgr.Reservation, error)
	Release(ctx context.Context, pool int64, id string) (*lockmgr.Reservation, error)
	Peek(ctx context.Context, pool int64, id string) (*lockmgr.Reservation, error)
	ListAvailable(ctx context.Context, pool int64, desc bool, start, limit int) ([]lockmgr.Item, error)
	SampleAvailable(ctx context.Context, pool int64, desc bool, limit, size int) ([]lockmgr.Item, error)
	ShortenOldestLegacy(ctx context.Context, pool int64) (bool, error)
	Ping(ctx context.Context) error
}

var (
	_ Store = (*storage.Store)(nil)
	_ Locks = (*lockmgr.Manager)(nil)
)
