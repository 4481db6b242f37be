package storage

import (
	"context"
	"errors"
	"fmt"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// NewTerm starts a new term of job led by leaderID and returns its epoch, one
// more than any epoch the job had before (1 for the first term).
func (s *Store) NewTerm(ctx context.Context, job, leaderID string) (int64, error) {
	if job == "" || leaderID == "" {
		return 0, fmt.Errorf("%w: job and leader id are required", errInvalidArgument)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	t := LeaderTerm{Job: job, Epoch: 1, LeaderID: leaderID, Since: now()}
	err := s.db.WithContext(ctx).Clauses(
		clause.OnConflict{
			Columns: []clause.Column{{Name: "job"}},
			DoUpdates: clause.Set{
				{Column: clause.Column{Name: "epoch"}, Value: gorm.Expr("leader_terms.epoch + 1")},
				{Column: clause.Column{Name: "leader_id"}, Value: leaderID},
				{Column: clause.Column{Name: "since"}, Value: t.Since},
			},
		},
		clause.Returning{Columns: []clause.Column{{Name: "epoch"}}},
	).Create(&t).Error
	if err != nil {
		return 0, fmt.Errorf("storage: new term of %s: %w", job, err)
	}
	return t.Epoch, nil
}

// CurrentTerm returns the current term of job, or ErrNotFound before the first.
func (s *Store) CurrentTerm(ctx context.Context, job string) (LeaderTerm, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var t LeaderTerm
	err := s.db.WithContext(ctx).Where("job = ?", job).Take(&t).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return t, ErrNotFound
	}
	if err != nil {
		return t, fmt.Errorf("storage: current term of %s: %w", job, err)
	}
	return t, nil
}
