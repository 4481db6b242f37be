package storage

import (
	"context"
	"strings"

	"github.com/bufferd/bufferd/lockmgr"
)

// LockJournal records the reservations lockmgr grants in the reservations table
// (it implements lockmgr.Journal).
type LockJournal struct {
	Store *Store
}

// Record writes a granted reservation and marks its UTXOs reserved.
func (j LockJournal) Record(ctx context.Context, r *lockmgr.Reservation) error {
	return j.Store.RecordReservation(ctx, Reservation{
		ID:        r.ID,
		PoolID:    r.PoolID,
		Fence:     r.Fence,
		Owner:     r.Owner,
		Hashes:    strings.Join(r.Hashes(), ","),
		State:     ResHeld,
		CreatedAt: r.CreatedAt,
		ExpiresAt: r.ExpiresAt,
		UpdatedAt: r.CreatedAt,
	})
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.PingContext(ctx)
}
