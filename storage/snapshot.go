package storage

import (
	"context"
	"database/sql"
	"fmt"

	"gorm.io/gorm"

	"github.com/bufferd/bufferd/lockmgr"
)

// snapshot reads, in one read-only transaction (REPEATABLE READ on
// PostgreSQL, so all parts are of the same moment), what a pool's Redis
// state is rebuilt from: its available UTXOs (by id), its live reservations
// (held or submitted, not expired; by fence), the reservations whose
// idempotency key is still remembered, and the highest fence it ever
// journalled (0 if none).
func (s *Store) snapshot(ctx context.Context, poolID int64) (utxos []UTXO, live, keyed []Reservation, maxFence int64, err error) {
	opts := &sql.TxOptions{ReadOnly: true}
	if s.dialect == dialectPostgres {
		opts.Isolation = sql.LevelRepeatableRead
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		err := tx.Where("pool_id = ? AND state = ?", poolID, StateAvailable).Order("id").Find(&utxos).Error
		if err != nil {
			return err
		}
		err = tx.Where("pool_id = ? AND state IN ? AND expires_at > ?", poolID, liveStates, now()).
			Order("fence").Find(&live).Error
		if err != nil {
			return err
		}
		err = tx.Where("pool_id = ? AND idempotency_key <> '' AND created_at > ?", poolID,
			now().Add(-lockmgr.IdempotencyWindow)).Find(&keyed).Error
		if err != nil {
			return err
		}
		return tx.Raw(`SELECT COALESCE(MAX(fence), 0) FROM reservations WHERE pool_id = ?`, poolID).
			Scan(&maxFence).Error
	}, opts)
	if err != nil {
		return nil, nil, nil, 0, fmt.Errorf("storage: snapshot of pool %d: %w", poolID, err)
	}
	return utxos, live, keyed, maxFence, nil
}

// LockSnapshot is the pool's snapshot in the form lockmgr.Manager.Rebuild takes.
func (s *Store) LockSnapshot(ctx context.Context, poolID int64) (lockmgr.Snapshot, error) {
	utxos, live, keyed, maxFence, err := s.snapshot(ctx, poolID)
	if err != nil {
		return lockmgr.Snapshot{}, err
	}
	snap := lockmgr.Snapshot{
		Available:  make([]lockmgr.Item, len(utxos)),
		Live:       make([]*lockmgr.Reservation, len(live)),
		Keys:       make([]*lockmgr.Reservation, len(keyed)),
		FenceFloor: maxFence,
	}
	amounts := make(map[string]uint64, len(utxos))
	for i, u := range utxos {
		snap.Available[i] = lockmgr.Item{Hash: u.Hash, Amount: uint64(u.Amount)}
		amounts[u.Hash] = uint64(u.Amount)
	}
	for i, r := range live {
		snap.Live[i] = r.lockReservation(amounts)
	}
	for i, r := range keyed {
		snap.Keys[i] = r.lockReservation(nil)
	}
	return snap, nil
}
