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
	"fmt"
	"log/slog"
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
}

// SyncPool pulls all of the pool's UTXOs from the chain, reconciles the
// database (new -> available, gone -> spent, seen again -> available),
// invalidates the outputs of transactions that failed, and applies the
// changes to Redis and the reservations. When Redis has lost the pool's view
// it is loaded whole from the database.
func (u *utxoSync) SyncPool(ctx context.Context, pool storage.Pool) (storage.SyncResult, error) {
	seen, err := u.Lister.ListUTXOs(ctx, chain.Filter{Asset: pool.Asset, Program: pool.Program, Unconfirmed: true})
	if err != nil {
		return storage.SyncResult{}, fmt.Errorf("syncer: list utxos: %w", err)
	}
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
