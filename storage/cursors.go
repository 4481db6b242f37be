package storage

import (
	"context"
	"fmt"
	"strings"

	"gorm.io/gorm"
)

// SaveCursor inserts or replaces the cursor of (c.PoolID, c.Job). The write is
// fenced by leadership epoch: if the stored cursor has a newer epoch than
// c.Epoch, nothing changes and ErrStaleFence is returned, so a deposed
// leader's late write cannot move the cursor.
func (s *Store) SaveCursor(ctx context.Context, c SyncCursor) error {
	c.Job = strings.TrimSpace(c.Job)
	if c.Job == "" || c.PoolID < 0 {
		return fmt.Errorf("%w: cursor needs a job and a pool id >= 0", errInvalidArgument)
	}
	ctx, cancel := s.writeContext(ctx)
	defer cancel()
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := s.saveCursorTx(tx, c); err != nil {
			return err
		}
		return s.checkFence(tx)
	})
	if err != nil {
		return fmt.Errorf("storage: save cursor: %w", err)
	}
	return nil
}

// saveCursorTx is SaveCursor inside tx, without the fence check.
func (s *Store) saveCursorTx(tx *gorm.DB, c SyncCursor) error {
	c.UpdatedAt = now()
	if c.Epoch == 0 {
		c.Epoch = s.epoch()
	}
	if c.LastSuccess != nil {
		t := dbTime(*c.LastSuccess)
		c.LastSuccess = &t
	}
	res := tx.Exec(`INSERT INTO sync_cursors
		(pool_id, job, height, block_hash, epoch, last_success, last_error, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (pool_id, job) DO UPDATE SET
			height = excluded.height, block_hash = excluded.block_hash, epoch = excluded.epoch,
			last_success = excluded.last_success, last_error = excluded.last_error, updated_at = excluded.updated_at
		WHERE sync_cursors.epoch <= excluded.epoch`,
		c.PoolID, c.Job, c.Height, c.BlockHash, c.Epoch, c.LastSuccess, c.LastError, c.UpdatedAt)
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("%w: cursor %d/%s has a newer epoch than %d", ErrStaleFence, c.PoolID, c.Job, c.Epoch)
	}
	return nil
}

// Cursor returns the cursor of (poolID, job), or ErrNotFound.
func (s *Store) Cursor(ctx context.Context, poolID int64, job string) (SyncCursor, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var out []SyncCursor
	if err := s.db.WithContext(ctx).Where("pool_id = ? AND job = ?", poolID, job).Limit(1).Find(&out).Error; err != nil {
		return SyncCursor{}, fmt.Errorf("storage: cursor: %w", err)
	}
	if len(out) == 0 {
		return SyncCursor{}, ErrNotFound
	}
	return out[0], nil
}

// Cursors returns every sync cursor ordered by pool and job.
func (s *Store) Cursors(ctx context.Context) ([]SyncCursor, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var out []SyncCursor
	if err := s.db.WithContext(ctx).Order("pool_id, job").Find(&out).Error; err != nil {
		return nil, fmt.Errorf("storage: cursors: %w", err)
	}
	return out, nil
}
