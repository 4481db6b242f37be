package storage

import (
	"time"

	"github.com/bufferd/bufferd/lockmgr"
)

// UTXO states: the chain's view of an output (see the lifecycle in
// lockmgr's package doc). StateReserved is not stored: it names the
// available UTXOs a live reservation holds, in counts and listings.
const (
	StateAvailable   = lockmgr.UTXOAvailable
	StateImmature    = lockmgr.UTXOImmature
	StateSpent       = lockmgr.UTXOSpent
	StateInvalidated = lockmgr.UTXOInvalidated
	StateReserved    = "reserved"
)

// Reservation states as kept in the journal: lockmgr's, which are the
// client module's (one vocabulary from the API to the database).
const (
	ResHeld        = lockmgr.StateHeld
	ResSubmitted   = lockmgr.StateSubmitted
	ResReleased    = lockmgr.StateReleased
	ResExpired     = lockmgr.StateExpired
	ResSpent       = lockmgr.StateSpent
	ResInvalidated = lockmgr.StateInvalidated
)

// Balance states (legacy update-balance rows).
const (
	BalancePending   = "pending"
	BalanceConfirmed = "confirmed"
	BalanceRejected  = "rejected"
	BalanceExpired   = "expired"
)

// Pool is a contract pool: the UTXOs locked by one program holding one asset
// (the original's "bases").
type Pool struct {
	ID        int64     `gorm:"primaryKey"`
	Asset     string    `gorm:"size:64;not null;uniqueIndex:pools_asset_program_key,priority:1"`
	Program   string    `gorm:"not null;uniqueIndex:pools_asset_program_key,priority:2"`
	CreatedAt time.Time `gorm:"not null"`
	UpdatedAt time.Time `gorm:"not null"`
	// Unconfirmed makes outputs of pending transactions reservable (as the
	// original bufferserver did); without it they wait for their block.
	Unconfirmed bool `gorm:"not null;default:true"`
	// FromHeight is the block a node-backed index starts the pool from.
	FromHeight int64 `gorm:"not null;default:0"`
	// SyncedAt is when the syncer first had the pool's whole UTXO set (a
	// node-backed index: when it caught up with the tip). Until then Redis
	// is not loaded and nothing is reserved in it.
	SyncedAt *time.Time
	// RedisLoad names the pool's current load into Redis (the value of its
	// ready marker, set by the rebuild that made it): a grant is journalled
	// only under the load it was made in (see Journal.Record).
	RedisLoad string `gorm:"not null;default:''"`
}

// UTXO is one contract output bufferd knows about.
type UTXO struct {
	ID        int64      `gorm:"primaryKey"`
	Hash      string     `gorm:"size:64;not null;uniqueIndex:utxos_hash_key"`
	PoolID    int64      `gorm:"not null;index:utxos_pool_state_idx,priority:1"`
	Asset     string     `gorm:"size:64;not null"`
	Amount    Amount     `gorm:"not null;check:utxos_amount_check,amount >= 0"`
	State     string     `gorm:"size:16;not null;index:utxos_pool_state_idx,priority:2;check:utxos_state_check,state IN ('available', 'immature', 'spent', 'invalidated')"`
	Confirmed bool       `gorm:"not null"`
	CreatedTx string     `gorm:"size:64;not null;default:''"` // transaction that created it, when known
	SpentTx   string     `gorm:"size:64;not null;default:''"` // transaction that spent it, when known
	CreatedAt time.Time  `gorm:"not null"`
	UpdatedAt time.Time  `gorm:"not null"`
	SpentAt   *time.Time // when the syncer first saw it gone
	// Height is the block of its creating transaction (0 while pending or
	// unknown), ValidHeight the tip from which it may be spent (a coinbase
	// output's height + 100; 0: at once), SpentHeight the block of its
	// spending transaction (0 while that is pending or unknown).
	Height      int64 `gorm:"not null;default:0"`
	ValidHeight int64 `gorm:"not null;default:0"`
	SpentHeight int64 `gorm:"not null;default:0"`
}

// Reservation is the durable journal of a reservation: every state change is
// written here before the client gets its answer.
type Reservation struct {
	ID        string    `gorm:"primaryKey;size:32"` // names its pool, the rest random (see lockmgr.PoolOfID)
	PoolID    int64     `gorm:"not null;index:reservations_pool_state_idx,priority:1;uniqueIndex:reservations_pool_fence_key,priority:1"`
	Fence     int64     `gorm:"not null;uniqueIndex:reservations_pool_fence_key,priority:2;check:reservations_fence_check,fence > 0"` // never reused within a pool
	Owner     string    `gorm:"not null;default:''"`
	Hashes    string    `gorm:"not null;check:reservations_hashes_check,hashes <> ''"` // comma-separated UTXO hashes
	State     string    `gorm:"size:16;not null;index:reservations_pool_state_idx,priority:2;check:reservations_state_check,state IN ('held', 'submitted', 'released', 'expired', 'spent', 'invalidated')"`
	TxID      string    `gorm:"size:64;not null;default:''"`
	CreatedAt time.Time `gorm:"not null"`
	ExpiresAt time.Time `gorm:"not null;index:reservations_expires_idx"`
	UpdatedAt time.Time `gorm:"not null"`
	// IdempotencyKey is the digest of the key the reservation was made with
	// ("" when none, and once the key is forgotten); Fingerprint identifies
	// that request (lockmgr.Fingerprint).
	IdempotencyKey string `gorm:"not null;default:'';uniqueIndex:reservations_idempotency_key,where:idempotency_key <> ''"`
	Fingerprint    string `gorm:"not null;default:''"`
}

// reservationUTXO is one UTXO a reservation holds (or held): the index from
// a UTXO to its reservations.
type reservationUTXO struct {
	ReservationID string `gorm:"primaryKey"`
	Hash          string `gorm:"primaryKey;index:reservation_utxos_hash_idx"`
	PoolID        int64  `gorm:"not null"`
}

// chainBlock is a block the chain index applied: its hash finds the fork
// point of a reorganisation.
type chainBlock struct {
	Height       int64  `gorm:"primaryKey;autoIncrement:false"`
	Hash         string `gorm:"not null"`
	PreviousHash string `gorm:"not null;default:''"`
}

// Balance is a legacy update-balance row.
type Balance struct {
	ID         int64     `gorm:"primaryKey"`
	Address    string    `gorm:"size:256;not null;index:balances_address_asset_idx,priority:1"`
	Asset      string    `gorm:"size:64;not null;index:balances_address_asset_idx,priority:2"`
	Amount     int64     `gorm:"not null"`
	TxID       string    `gorm:"size:64;not null;index"`
	State      string    `gorm:"size:16;not null;check:balances_state_check,state IN ('pending', 'confirmed', 'rejected', 'expired')"`
	StatusFail bool      `gorm:"not null"`
	CreatedAt  time.Time `gorm:"not null"`
	UpdatedAt  time.Time `gorm:"not null"`
}

// Transaction is a transaction the crawler recorded because it spends a pool UTXO.
type Transaction struct {
	ID         int64     `gorm:"primaryKey"`
	PoolID     int64     `gorm:"not null;uniqueIndex:transactions_pool_tx_key,priority:1;index:transactions_pool_height_idx,priority:1"`
	TxID       string    `gorm:"size:64;not null;uniqueIndex:transactions_pool_tx_key,priority:2"`
	Height     int64     `gorm:"not null;index:transactions_pool_height_idx,priority:2"`
	BlockHash  string    `gorm:"size:64;not null;default:''"`
	BlockTime  time.Time `gorm:"not null"`
	StatusFail bool      `gorm:"not null"`
	Inputs     string    `gorm:"not null;default:'[]'"` // JSON array of TxIO
	Outputs    string    `gorm:"not null;default:'[]'"` // JSON array of TxIO
	CreatedAt  time.Time `gorm:"not null"`
}

// transactionAddress is one address an input or output of a recorded
// transaction pays from or to.
type transactionAddress struct {
	TransactionID int64  `gorm:"primaryKey;autoIncrement:false;index:transaction_addresses_address_idx,priority:2"`
	Address       string `gorm:"primaryKey;index:transaction_addresses_address_idx,priority:1"`
}

// SyncCursor is the position of one sync job for one pool.
type SyncCursor struct {
	PoolID      int64  `gorm:"primaryKey;autoIncrement:false"`
	Job         string `gorm:"primaryKey;size:32"`
	Height      int64  `gorm:"not null;default:0"`
	BlockHash   string `gorm:"size:64;not null;default:''"`
	Epoch       int64  `gorm:"not null;default:0"`
	LastSuccess *time.Time
	LastError   string    `gorm:"not null;default:''"`
	UpdatedAt   time.Time `gorm:"not null"`
}

// LeaderTerm is the current term of one leader-elected job. Its epoch only
// grows; writes of the job carry it and are refused once a newer term began.
type LeaderTerm struct {
	Job      string    `gorm:"primaryKey"`
	Epoch    int64     `gorm:"not null;check:leader_terms_epoch_check,epoch > 0"`
	LeaderID string    `gorm:"not null"`
	Since    time.Time `gorm:"not null"`
}

// poolUTXOVersion counts the statements that changed one pool's UTXO rows.
// On PostgreSQL, triggers on utxos keep it (migration 5); SQLite has the
// table but not the triggers, so nothing reads it there.
type poolUTXOVersion struct {
	PoolID  int64 `gorm:"primaryKey;autoIncrement:false"`
	Version int64 `gorm:"not null"`
}

// models lists every model, for AutoMigrate in dev mode and schema checks in tests.
func models() []any {
	return []any{&Pool{}, &UTXO{}, &Reservation{}, &reservationUTXO{}, &Balance{}, &Transaction{}, &SyncCursor{},
		&LeaderTerm{}, &transactionAddress{}, &chainBlock{}, &poolUTXOVersion{}}
}
