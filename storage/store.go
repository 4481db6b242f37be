// Package storage keeps bufferd's durable state: contract pools, the UTXOs the
// syncer has seen, the reservation journal, legacy balance rows, crawled
// transactions and sync cursors. PostgreSQL in production (schema from the
// versioned migrations in migrations/), SQLite only for `bufferd dev`.
package storage

import (
	"errors"
	"sync/atomic"

	"gorm.io/gorm"
)

// Sentinel errors.
var (
	// ErrNotFound means the row does not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrStaleFence means a write carried a fence or epoch older than the stored one.
	ErrStaleFence = errors.New("storage: stale fence")
)

// Store is the gorm-backed repository. It is safe for concurrent use.
type Store struct {
	db      *gorm.DB
	dialect string        // "postgres" or "sqlite"
	stmts   *atomic.Int64 // SQL statements issued, see StatementCount
	fence   *termFence    // set on the copies Fenced returns
}

// DB returns the underlying gorm handle (tests and migrations).
func (s *Store) DB() *gorm.DB { return s.db }

// Counts are the number of UTXOs of a pool in each state.
type Counts struct {
	Available   int64 `json:"available"`
	Reserved    int64 `json:"reserved"`
	Spent       int64 `json:"spent"`
	Invalidated int64 `json:"invalidated"`
	Immature    int64 `json:"immature"`
}
