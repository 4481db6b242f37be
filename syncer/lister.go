// Package syncer runs the jobs that keep bufferd's picture of the chain
// current: the UTXO sync pulls every UTXO of every pool (unconfirmed ones
// included), reconciles PostgreSQL with it and keeps Redis's view of what is
// reservable in step.
package syncer

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/metrics"
	"github.com/bufferd/bufferd/storage"
)

// JobUTXO names the UTXO sync job in sync cursors.
const JobUTXO = "utxo"

// UTXOSync syncs the UTXOs of one pool at a time.
type UTXOSync struct {
	Store   *storage.Store
	Locks   *lockmgr.Manager
	Chain   chain.Source
	Rebuild *Rebuilder
	Log     *slog.Logger
}

// SyncPool pulls all of the pool's UTXOs from the chain, reconciles the
// database (new -> available, gone -> spent, seen again -> available) and
// applies the changes to Redis. When Redis has lost the pool's view it is
// loaded whole from the database.
func (u *UTXOSync) SyncPool(ctx context.Context, pool storage.Pool) (storage.SyncResult, error) {
	seen, err := u.Chain.ListUTXOs(ctx, chain.Filter{Asset: pool.Asset, Program: pool.Program, Unconfirmed: true})
	if err != nil {
		return storage.SyncResult{}, fmt.Errorf("syncer: list utxos: %w", err)
	}
	res, err := u.Store.ReconcilePool(ctx, pool, seen)
	if err != nil {
		return res, fmt.Errorf("syncer: reconcile: %w", err)
	}
	// What the database now holds goes to Redis even if the term ends
	// meanwhile: the epoch fence, not the cancellation, refuses late writes.
	ctx = context.WithoutCancel(ctx)
	// The changes go to Redis first, loaded or not: a rebuild running
	// elsewhere sees the sync generation move and takes a fresh snapshot.
	if len(res.Added)+len(res.Revived)+len(res.Spent) > 0 {
		add := append(toItems(res.Added), toItems(res.Revived)...)
		if err := u.Locks.SyncAvailable(ctx, pool.ID, add, res.Spent); err != nil {
			return res, fmt.Errorf("syncer: apply to redis: %w", err)
		}
	}
	// Redis lost the pool (or never had it): rebuild it from the database,
	// which now holds this sync's result.
	if _, err := u.Rebuild.RebuildIfLost(ctx, pool.ID); err != nil {
		return res, err
	}
	if len(res.Spent) > 0 {
		lin := &lineage{store: u.Store, locks: u.Locks, chain: u.Chain, log: u.logger()}
		// Outputs of a transaction that failed are invalidated, not spent.
		spent, err := lin.sortGone(ctx, pool, res.Spent)
		if err != nil {
			return res, fmt.Errorf("syncer: lineage: %w", err)
		}
		// Reservations whose UTXOs the chain spent are settled: journal first.
		settled, err := u.Store.SettleSpent(ctx, pool.ID, spent)
		if err != nil {
			return res, fmt.Errorf("syncer: settle spent: %w", err)
		}
		for _, r := range settled {
			if err := u.Locks.Settle(ctx, pool.ID, r.ID, lockmgr.StateSpent); err != nil {
				return res, err
			}
			metrics.Outcome(metrics.OutcomeSpent)
		}
		// A spend settled from the mempool may still fail: note which pool
		// outputs (its change) it creates, so that they can be invalidated.
		followed := map[string]bool{}
		for _, r := range settled {
			if r.TxID == "" || followed[r.TxID] {
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
	}
	return res, nil
}

func (u *UTXOSync) logger() *slog.Logger {
	if u.Log != nil {
		return u.Log
	}
	return slog.Default()
}

func toItems(rows []storage.UTXO) []lockmgr.Item {
	out := make([]lockmgr.Item, len(rows))
	for i, r := range rows {
		out[i] = lockmgr.Item{Hash: r.Hash, Amount: r.Amount}
	}
	return out
}

// now is the clock of the runner (a variable so tests need not sleep).
var now = time.Now
