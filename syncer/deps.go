package syncer

import (
	"context"
	"time"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
)

// Each job depends on what it uses of storage and lockmgr, an interface of
// its own; Jobs hands them a *storage.Store and a *lockmgr.Manager (fenced
// with the leadership term's epoch).

// applyStore is what an Applier records of the chain's changes.
type applyStore interface {
	GetUTXOs(ctx context.Context, hashes []string) ([]storage.UTXO, error)
	HeldHolding(ctx context.Context, poolID int64, hashes []string) ([]lockmgr.ReleaseRecord, error)
	RecordReleases(ctx context.Context, rs []lockmgr.ReleaseRecord) (int, error)
	Settle(ctx context.Context, poolID int64, hashes []string) ([]storage.Settled, error)
}

// applyLocks is what an Applier changes in Redis.
type applyLocks interface {
	ApplyChain(ctx context.Context, pool int64, add []lockmgr.Item, remove []string) error
	EndReservations(ctx context.Context, pool int64, ids []string) error
	ReleasesOf(ctx context.Context, pool int64, rs []lockmgr.ReleaseRecord) ([]lockmgr.ReleaseRecord, error)
}

// balanceStore keeps the legacy balance rows balanceVerify checks.
type balanceStore interface {
	BalancesByTx(ctx context.Context, txIDs []string) ([]storage.Balance, error)
	PendingBalances(ctx context.Context, limit int) ([]storage.Balance, error)
	SetBalanceState(ctx context.Context, ids []int64, state string, statusFail bool) error
}

// indexStore is the chain index a chainIndex keeps.
type indexStore interface {
	ApplyBlocks(ctx context.Context, pools []int64, blocks []storage.IndexedBlock) (storage.Touched, error)
	ChangeUTXOs(ctx context.Context, outs []storage.IndexedOutput, changes []storage.UTXOChange) error
	Genesis(ctx context.Context) (string, error)
	SetGenesis(ctx context.Context, hash string) error
	IndexCursors(ctx context.Context) (map[int64]storage.SyncCursor, error)
	IndexedHashes(ctx context.Context, from, to int64) (map[int64]string, error)
	ListPools(ctx context.Context) ([]storage.Pool, error)
	LowestIndexed(ctx context.Context) (int64, bool, error)
	MarkSynced(ctx context.Context, poolID int64) error
	MatureUTXOs(ctx context.Context, tip int64) (storage.Touched, error)
	MempoolRows(ctx context.Context, pools []int64, hashes []string) ([]storage.UTXO, error)
	ReleaseFailedSubmits(ctx context.Context, pools []int64, txIDs []string) ([]storage.Reservation, error)
	RollbackIndex(ctx context.Context, fork int64, forkHash string) (storage.Touched, error)
	SaveCursor(ctx context.Context, c storage.SyncCursor) error
}

// lineageStore follows which transaction created a pool's outputs.
type lineageStore interface {
	CreatedTxOf(ctx context.Context, poolID int64, hashes []string) (map[string]string, error)
	FailLineage(ctx context.Context, poolID int64, txID string, outputs []string) (storage.Lineage, error)
	NoteCreatedTx(ctx context.Context, poolID int64, txID string, hashes []string) error
}

// endLocks ends reservations in Redis.
type endLocks interface {
	EndReservations(ctx context.Context, pool int64, ids []string) error
}

// utxoStore is what a utxoSync reconciles a listing with.
type utxoStore interface {
	lineageStore
	MarkSynced(ctx context.Context, poolID int64) error
	ReconcilePool(ctx context.Context, pool storage.Pool, seen []chain.UTXO) (storage.SyncResult, error)
	UTXOVersion(ctx context.Context, poolID int64) (version int64, ok bool, err error)
}

// submittedStore lists the submitted reservations a submittedCheck follows.
type submittedStore interface {
	lineageStore
	GetPool(ctx context.Context, id int64) (storage.Pool, error)
	SubmittedReservations(ctx context.Context, limit int) ([]storage.Reservation, error)
}

// rebuildStore is what a Rebuilder reads a lost pool back from.
type rebuildStore interface {
	BeginLoad(ctx context.Context, poolID int64, load string) error
	ListPools(ctx context.Context) ([]storage.Pool, error)
	LockSnapshot(ctx context.Context, poolID int64) (lockmgr.Snapshot, error)
}

// rebuildLocks is the Redis side of a rebuild.
type rebuildLocks interface {
	Loaded(ctx context.Context, pool int64) (bool, error)
	Rebuild(ctx context.Context, pool int64, s lockmgr.Snapshot) error
	SyncGeneration(ctx context.Context, pool int64) (int64, error)
}

// runnerStore is what a Runner schedules the jobs by.
type runnerStore interface {
	Cursor(ctx context.Context, poolID int64, job string) (storage.SyncCursor, error)
	GetPool(ctx context.Context, id int64) (storage.Pool, error)
	ListPools(ctx context.Context) ([]storage.Pool, error)
	OldestLiveReservation(ctx context.Context, pool int64) (time.Time, bool, error)
	PoolCounts(ctx context.Context) (map[int64]storage.Counts, error)
	SaveCursor(ctx context.Context, c storage.SyncCursor) error
	ExpireReservations(ctx context.Context, before time.Time) (int64, error)
	ForgetKeys(ctx context.Context, before time.Time) (int64, error)
}

// sweepStore is what the sweep compares Redis with.
type sweepStore interface {
	AvailableUTXOs(ctx context.Context, poolID int64) (map[string]uint64, error)
	GetReservation(ctx context.Context, id string) (storage.Reservation, error)
	LiveReservationIDs(ctx context.Context, poolID int64, at time.Time) (map[string]bool, error)
	RecordReleases(ctx context.Context, rs []lockmgr.ReleaseRecord) (int, error)
	UnsettledHashes(ctx context.Context, poolID int64) ([]string, error)
}

// sweepLocks is the Redis state the sweep repairs.
type sweepLocks interface {
	ApplyChain(ctx context.Context, pool int64, add []lockmgr.Item, remove []string) error
	EndReservations(ctx context.Context, pool int64, ids []string) error
	ForgetReleases(ctx context.Context, pool int64, rs []lockmgr.ReleaseRecord) error
	Holds(ctx context.Context, pool int64) (map[string]time.Time, error)
	Loaded(ctx context.Context, pool int64) (bool, error)
	Offered(ctx context.Context, pool int64) (map[string]uint64, error)
	RecentReleases(ctx context.Context, pool int64, cutoff time.Time, limit int) ([]lockmgr.ReleaseRecord, error)
}

// A rebuild needs only the Loads of a *lockmgr.Manager, ending reservations
// only its Reservations; the other jobs use several of its concerns.
var (
	_ rebuildLocks = (*lockmgr.Loads)(nil)
	_ endLocks     = (*lockmgr.Reservations)(nil)
)
