package syncer

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/metrics"
	"github.com/bufferd/bufferd/storage"
)

// defaultSweepInterval is how often the sweep checks each pool.
const defaultSweepInterval = 30 * time.Second

// expiryMargin is how long after its expiry a reservation is marked expired
// in the journal, and how old a hold must be before the sweep ends it for
// lacking a journal row: Redis ends holds on its own clock, an extension
// granted at the last moment reaches the journal a little later, and a grant
// is journalled within the journal's timeout.
const expiryMargin = 30 * time.Second

// sweeper repairs what a failure left out of step between the chain's picture
// in PostgreSQL, the reservations and Redis, so that at every quiet point
// each UTXO is held by one live reservation or offered, and nothing else:
//
//   - reservations whose UTXOs the chain moved without Settle seeing it (a
//     grant journalled after its UTXO was settled, a syncer that died between
//     two steps) are settled;
//   - Redis offers exactly the UTXOs PostgreSQL says are available;
//   - holds in Redis that no live reservation of the journal explains (the
//     journal ended them but Redis missed it, or a grant that was never
//     journalled) end;
//   - releases Redis made whose journal write was lost (the API died right
//     after answering) are written to the journal, as of when they happened.
//
// It runs in the job that writes the pool's chain state, never beside it.
type sweeper struct {
	Store sweepStore
	Locks sweepLocks
	Apply *Applier
	Log   *slog.Logger
}

// sweepResult counts what one sweep repaired.
type sweepResult struct {
	Unsettled, Offered, Unoffered, OrphanHolds, LostReleases int
}

// releaseSettle is how old a release must be before the sweep writes it to
// the journal for the API that made it: that API's own write, which lands
// within milliseconds, normally comes first (should both write it, the
// second finds it done).
const releaseSettle = time.Second

// Pool sweeps one pool whose Redis state is loaded (a pool Redis lost is the
// rebuild's business).
func (s *sweeper) Pool(ctx context.Context, pool int64) (sweepResult, error) {
	var res sweepResult
	if ok, err := s.Locks.Loaded(ctx, pool); err != nil || !ok {
		return res, err
	}
	hashes, err := s.Store.UnsettledHashes(ctx, pool)
	if err != nil {
		return res, err
	}
	settled, err := s.Apply.Apply(ctx, pool, hashes)
	if err != nil {
		return res, err
	}
	res.Unsettled = len(settled)

	want, err := s.Store.AvailableUTXOs(ctx, pool)
	if err != nil {
		return res, err
	}
	have, err := s.Locks.Offered(ctx, pool)
	if err != nil {
		return res, err
	}
	var add []lockmgr.Item
	var remove []string
	for h, a := range want {
		if b, ok := have[h]; !ok || b != a {
			add = append(add, lockmgr.Item{Hash: h, Amount: a})
		}
	}
	for h := range have {
		if _, ok := want[h]; !ok {
			remove = append(remove, h)
		}
	}
	if len(add)+len(remove) > 0 {
		if err := s.Locks.ApplyChain(context.WithoutCancel(ctx), pool, add, remove); err != nil {
			return res, err
		}
	}
	res.Offered, res.Unoffered = len(add), len(remove)

	holds, err := s.Locks.Holds(ctx, pool)
	if err != nil {
		return res, err
	}
	cutoff := time.Now().Add(-expiryMargin)
	live, err := s.Store.LiveReservationIDs(ctx, pool, cutoff)
	if err != nil {
		return res, err
	}
	var orphans []string
	for id, created := range holds {
		if live[id] {
			continue
		}
		orphan := created.Before(cutoff)
		if !orphan {
			// A young hold the journal lacks may be a grant in flight; one
			// the journal ended is over, whatever its age.
			if orphan, err = s.endedInJournal(ctx, id); err != nil {
				return res, err
			}
		}
		if orphan {
			orphans = append(orphans, id)
		}
	}
	if len(orphans) > 0 {
		if err := s.Locks.EndReservations(context.WithoutCancel(ctx), pool, orphans); err != nil {
			return res, err
		}
	}
	res.OrphanHolds = len(orphans)
	if res.LostReleases, err = s.releases(ctx, pool); err != nil {
		return res, err
	}
	s.count(pool, res)
	return res, nil
}

// releasePage is how many of a pool's recorded releases the sweep reads,
// writes and forgets at a time, and maxReleasePages how many pages one sweep
// takes at most (the rest waits for the next).
const (
	releasePage     = 500
	maxReleasePages = 2000
)

// releases writes to the journal the pool's releases older than
// releaseSettle that it lacks, and returns how many, a page at a time: each
// Redis call and statement stays short however many releases the pool made
// since the last sweep.
func (s *sweeper) releases(ctx context.Context, pool int64) (int, error) {
	cutoff := time.Now().Add(-releaseSettle)
	total := 0
	for range maxReleasePages {
		rs, err := s.Locks.RecentReleases(ctx, pool, cutoff, releasePage)
		if err != nil || len(rs) == 0 {
			return total, err
		}
		n, err := s.Store.RecordReleases(ctx, rs)
		total += n
		if err != nil {
			return total, err
		}
		if err := s.Locks.ForgetReleases(ctx, pool, rs); err != nil {
			return total, err
		}
		if len(rs) < releasePage {
			break
		}
	}
	return total, nil
}

// endedInJournal reports whether the journal has reservation id and says it
// ended.
func (s *sweeper) endedInJournal(ctx context.Context, id string) (bool, error) {
	r, err := s.Store.GetReservation(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return !lockmgr.Live(r.State), nil
}

func (s *sweeper) count(pool int64, res sweepResult) {
	metrics.SweepRepairs.WithLabelValues("unsettled").Add(float64(res.Unsettled))
	metrics.SweepRepairs.WithLabelValues("offered").Add(float64(res.Offered))
	metrics.SweepRepairs.WithLabelValues("unoffered").Add(float64(res.Unoffered))
	metrics.SweepRepairs.WithLabelValues("orphan_hold").Add(float64(res.OrphanHolds))
	metrics.SweepRepairs.WithLabelValues("lost_release").Add(float64(res.LostReleases))
	if res != (sweepResult{}) {
		s.logger().Warn("sweep repaired a pool out of step", "pool", pool, "unsettled", res.Unsettled,
			"offered", res.Offered, "unoffered", res.Unoffered, "orphan_holds", res.OrphanHolds,
			"lost_releases", res.LostReleases)
	}
}

func (s *sweeper) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}
