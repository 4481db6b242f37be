package syncer

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/metrics"
	"github.com/bufferd/bufferd/storage"
)

// Applier makes Redis and the reservations follow the chain state of UTXOs
// the database just changed: it is the one place where a chain event reaches
// the reservations, whatever the source (see the lifecycle in lockmgr's
// package doc).
type Applier struct {
	Store applyStore
	Locks applyLocks
	Log   *slog.Logger
}

// Apply brings the touched UTXOs of pool to Redis (offered when available,
// not offered otherwise) and settles the reservations holding them: PostgreSQL
// decides (storage.Store.Settle), then Redis ends the ones that ended. It
// returns the reservations it moved.
func (a *Applier) Apply(ctx context.Context, pool int64, hashes []string) ([]storage.Settled, error) {
	hashes = dedupe(hashes)
	if len(hashes) == 0 {
		return nil, nil
	}
	// What the database now holds goes to Redis even if the term ends
	// meanwhile: the epoch fence, not the cancellation, refuses late writes.
	ctx = context.WithoutCancel(ctx)
	rows, err := a.Store.GetUTXOs(ctx, hashes)
	if err != nil {
		return nil, err
	}
	var add []lockmgr.Item
	offered := make(map[string]bool, len(rows))
	for _, r := range rows {
		if r.PoolID == pool && r.State == storage.StateAvailable {
			add = append(add, lockmgr.Item{Hash: r.Hash, Amount: uint64(r.Amount)})
			offered[r.Hash] = true
		}
	}
	var remove []string
	for _, h := range hashes {
		if !offered[h] {
			remove = append(remove, h)
		}
	}
	// Redis first: a UTXO gone from the chain is no longer offered, so the
	// reservations ended below never offer it again.
	if err := a.Locks.ApplyChain(ctx, pool, add, remove); err != nil {
		return nil, fmt.Errorf("syncer: apply to redis: %w", err)
	}
	if err := a.recordReleases(ctx, pool, remove); err != nil {
		return nil, err
	}
	settled, err := a.Store.Settle(ctx, pool, hashes)
	if err != nil {
		return nil, err
	}
	return settled, a.end(ctx, pool, settled)
}

// recordReleases writes to the journal the releases Redis answered of the
// reservations holding UTXOs the chain took away, so that settling them
// cannot overtake a release whose journal write is on its way (or was lost
// with its API): the release came first. A release after ApplyChain goes
// through the journal (see release.lua), where the settlement orders it.
func (a *Applier) recordReleases(ctx context.Context, pool int64, gone []string) error {
	if len(gone) == 0 {
		return nil
	}
	held, err := a.Store.HeldHolding(ctx, pool, gone)
	if err != nil {
		return err
	}
	released, err := a.Locks.ReleasesOf(ctx, pool, held)
	if err != nil {
		return err
	}
	if _, err := a.Store.RecordReleases(ctx, released); err != nil {
		return err
	}
	return nil
}

// end makes Redis end the settled reservations that were live, and counts
// every outcome.
func (a *Applier) end(ctx context.Context, pool int64, settled []storage.Settled) error {
	var ids []string
	for _, r := range settled {
		if lockmgr.Live(r.From) {
			ids = append(ids, r.ID)
		}
		metrics.Outcome(outcomeOf(r.State))
	}
	if err := a.Locks.EndReservations(ctx, pool, ids); err != nil {
		return err
	}
	if len(settled) > 0 {
		a.logger().Info("reservations settled by the chain", "pool", pool, "count", len(settled), "ended", len(ids))
	}
	return nil
}

func outcomeOf(state string) string {
	switch state {
	case lockmgr.StateSpent:
		return metrics.OutcomeSpent
	case lockmgr.StateInvalidated:
		return metrics.OutcomeInvalidated
	case lockmgr.StateExpired:
		return metrics.OutcomeExpired
	default:
		return metrics.OutcomeReleased
	}
}

func (a *Applier) logger() *slog.Logger {
	if a.Log != nil {
		return a.Log
	}
	return slog.Default()
}

// dedupe returns the distinct values of xs, sorted.
func dedupe(xs []string) []string {
	out := slices.Clone(xs)
	slices.Sort(out)
	return slices.Compact(out)
}
