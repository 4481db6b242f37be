package storage

import (
	"context"
	"errors"
	"fmt"

	"gorm.io/gorm"
)

// ErrStaleEpoch means a sync job's write carried the epoch of a leadership
// term that has ended: a newer term of the job began, so the write was rolled
// back.
var ErrStaleEpoch = errors.New("storage: stale leadership epoch")

// termFence is the leadership term a fenced store writes for.
type termFence struct {
	job   string
	epoch int64
}

// Fenced returns a Store sharing s's connections whose sync-job writes are
// guarded by the epoch of a leadership term of job: each write transaction
// ends by reading the job's current epoch (FOR SHARE, so a new term cannot be
// minted between that check and the commit) and rolls back with
// ErrStaleEpoch when a newer term began. A deposed leader's late writes are
// thus refused by PostgreSQL itself, whatever the leader believes.
//
// The writes of a fenced store are not cut short when the caller's context
// is cancelled (only its deadline, or the store's timeout, bounds them): a
// term ending cancels the job's context, and it is the fence, not the
// cancellation, that must decide whether a write in flight lands.
func (s *Store) Fenced(job string, epoch int64) *Store {
	return &Store{db: s.db, dialect: s.dialect, stmts: s.stmts, fence: &termFence{job: job, epoch: epoch}}
}

// epoch is the leadership epoch a fenced store writes for, 0 when unfenced.
func (s *Store) epoch() int64 {
	if s.fence == nil {
		return 0
	}
	return s.fence.epoch
}

// writeContext is the context of a write: for a fenced store, ctx's values and
// deadline without its cancellation.
func (s *Store) writeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.fence == nil {
		return withTimeout(ctx)
	}
	detached := context.WithoutCancel(ctx)
	if d, ok := ctx.Deadline(); ok {
		return context.WithDeadline(detached, d)
	}
	return withTimeout(detached)
}

// checkFence is the last statement of every write transaction of a sync job:
// for a fenced store it fails with ErrStaleEpoch when the job's current term
// is newer than the store's; an unfenced store checks nothing.
func (s *Store) checkFence(tx *gorm.DB) error {
	if s.fence == nil {
		return nil
	}
	q := `SELECT epoch FROM leader_terms WHERE job = ?`
	if s.dialect == dialectPostgres {
		q += ` FOR SHARE`
	}
	var epochs []int64
	if err := tx.Raw(q, s.fence.job).Scan(&epochs).Error; err != nil {
		return fmt.Errorf("storage: read leadership epoch: %w", err)
	}
	if len(epochs) == 1 && epochs[0] > s.fence.epoch {
		return fmt.Errorf("%w: %s term %d ended, term %d began", ErrStaleEpoch, s.fence.job, s.fence.epoch, epochs[0])
	}
	return nil
}
