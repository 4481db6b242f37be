// Package syncer runs the jobs that keep bufferd's picture of the chain
// current and make the reservations follow it:
//
//   - with a source that lists UTXOs (blockcenter), the UTXO sync pulls every
//     UTXO of every pool (unconfirmed ones included) and reconciles
//     PostgreSQL with it; failed transactions are found by looking them up;
//   - with a node (bytomd), the chain index reads every block and the
//     mempool itself, needing no wallet;
//   - either way the Applier brings each change to Redis and settles the
//     reservations, and the sweep repairs whatever a failure left out of step.
//
// Every job runs only on the elected leader, and every write carries its
// leadership epoch.
package syncer

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
)

// jobUTXO names the UTXO sync job in sync cursors.
const jobUTXO = "utxo"

// utxoSync syncs the UTXOs of one pool at a time from a source that lists
// them.
type utxoSync struct {
	Store   utxoStore
	Locks   endLocks
	Chain   chain.Source
	Lister  chain.Lister
	Apply   *Applier
	Rebuild *Rebuilder
	Log     *slog.Logger

	mu    sync.Mutex
	quiet map[int64]quietMark // by pool: its last sync that changed nothing
}

// quietMark is what a pool's last sync that changed nothing compared: the
// digest of the chain's listing and the pool's UTXO version read before the
// stored rows. A sync that finds both again has nothing to reconcile: the
// reconciliation is a function of the listing, the pool and its rows.
type quietMark struct {
	listing [sha256.Size]byte
	version int64
}

// SyncPool pulls all of the pool's UTXOs from the chain, reconciles the
// database (new -> available, gone -> spent, seen again -> available),
// invalidates the outputs of transactions that failed, and applies the
// changes to Redis and the reservations. When Redis has lost the pool's view
// it is loaded whole from the database.
//
// When the listing and the pool's stored UTXOs are what they were at the
// pool's last sync that changed nothing, it skips the reconciliation (reading
// the whole pool back from PostgreSQL) and reports Unchanged.
func (u *utxoSync) SyncPool(ctx context.Context, pool storage.Pool) (storage.SyncResult, error) {
	version, versioned, err := u.Store.UTXOVersion(ctx, pool.ID)
	if err != nil {
		return storage.SyncResult{}, fmt.Errorf("syncer: %w", err)
	}
	seen, err := u.Lister.ListUTXOs(ctx, chain.Filter{Asset: pool.Asset, Program: pool.Program, Unconfirmed: true})
	if err != nil {
		return storage.SyncResult{}, fmt.Errorf("syncer: list utxos: %w", err)
	}
	mark := quietMark{listing: listingDigest(pool, seen), version: version}
	if versioned && pool.SyncedAt != nil && u.quietSince(pool.ID, mark) {
		if _, err := u.Rebuild.RebuildIfLost(context.WithoutCancel(ctx), pool.ID); err != nil {
			return storage.SyncResult{}, err
		}
		return storage.SyncResult{Unchanged: true}, nil
	}
	u.forgetQuiet(pool.ID)
	res, err := u.reconcile(ctx, pool, seen)
	if err == nil && versioned && res.Changes() == 0 {
		u.markQuiet(pool.ID, mark)
	}
	return res, err
}

// quietSince reports whether pool's last sync that changed nothing left m.
func (u *utxoSync) quietSince(pool int64, m quietMark) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	last, ok := u.quiet[pool]
	return ok && last == m
}

func (u *utxoSync) markQuiet(pool int64, m quietMark) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.quiet == nil {
		u.quiet = make(map[int64]quietMark)
	}
	u.quiet[pool] = m
}

func (u *utxoSync) forgetQuiet(pool int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.quiet, pool)
}

// listingDigest digests what a reconciliation of pool reads from the chain:
// the pool's own settings and every listed UTXO, in order.
func listingDigest(pool storage.Pool, seen []chain.UTXO) [sha256.Size]byte {
	h := sha256.New()
	var buf []byte
	field := func(s string) {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	field(pool.Asset)
	field(pool.Program)
	buf = append(buf, boolByte(pool.Unconfirmed))
	for _, x := range seen {
		field(x.Hash)
		field(x.Asset)
		field(x.Program)
		field(x.TxID)
		buf = binary.BigEndian.AppendUint64(buf, x.Amount)
		buf = append(buf, boolByte(x.Confirmed))
		if len(buf) >= 32<<10 {
			_, _ = h.Write(buf)
			buf = buf[:0]
		}
	}
	_, _ = h.Write(buf)
	return [sha256.Size]byte(h.Sum(nil))
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// reconcile is a sync's work once the listing may differ from the database.
func (u *utxoSync) reconcile(ctx context.Context, pool storage.Pool, seen []chain.UTXO) (storage.SyncResult, error) {
	res, err := u.Store.ReconcilePool(ctx, pool, seen)
	if err != nil {
		return res, fmt.Errorf("syncer: reconcile: %w", err)
	}
	touched := res.Touched()
	lin := u.lineage()
	if len(res.Spent) > 0 {
		// Outputs of a transaction that failed are invalidated, not spent.
		if err := lin.sortGone(ctx, pool, res.Spent); err != nil {
			return res, fmt.Errorf("syncer: lineage: %w", err)
		}
	}
	settled, err := u.Apply.Apply(ctx, pool.ID, touched)
	if err != nil {
		return res, err
	}
	// A spend settled from the mempool may still fail: note which pool
	// outputs (its change) it creates, so that they can be invalidated; and
	// a settled spend whose UTXOs came back failed: so did its descendants.
	followed := map[string]bool{}
	for _, r := range settled {
		if r.From == lockmgr.StateSpent && r.TxID != "" && !followed[r.TxID] {
			followed[r.TxID] = true
			if err := lin.fail(ctx, pool, r.TxID, nil); err != nil {
				return res, err
			}
			continue
		}
		if r.State != lockmgr.StateSpent || r.TxID == "" || followed[r.TxID] {
			continue
		}
		followed[r.TxID] = true
		if _, err := lin.follow(ctx, pool, r.TxID); err != nil {
			if isStale(err) {
				return res, err
			}
			u.logger().Warn("follow settled transaction", "pool", pool.ID, "tx", r.TxID, "err", err)
		}
	}
	if pool.SyncedAt == nil {
		if err := u.Store.MarkSynced(ctx, pool.ID); err != nil {
			return res, err
		}
		t := time.Now()
		pool.SyncedAt = &t
	}
	// Redis lost the pool (or never had it): rebuild it from the database,
	// which now holds this sync's result.
	if _, err := u.Rebuild.RebuildIfLost(context.WithoutCancel(ctx), pool.ID); err != nil {
		return res, err
	}
	return res, nil
}

func (u *utxoSync) lineage() *lineage {
	return &lineage{store: u.Store, locks: u.Locks, chain: u.Chain, apply: u.Apply, log: u.logger()}
}

func (u *utxoSync) logger() *slog.Logger {
	if u.Log != nil {
		return u.Log
	}
	return slog.Default()
}

// now is the clock of the runner (a variable so tests need not sleep).
var now = time.Now
