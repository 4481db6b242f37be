package storage

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"gorm.io/gorm"
)

// NoteCreatedTx records txID as the transaction that created those of hashes
// that are UTXOs of the pool and have no creator recorded yet (list APIs
// rarely tell), so that the outputs can be invalidated if txID later fails.
func (s *Store) NoteCreatedTx(ctx context.Context, poolID int64, txID string, hashes []string) error {
	if txID == "" || len(hashes) == 0 {
		return nil
	}
	ctx, cancel := s.writeContext(ctx)
	defer cancel()
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for _, chunk := range chunks(hashes) {
			err := tx.Exec(`UPDATE utxos SET created_tx = ?, updated_at = ?
				WHERE pool_id = ? AND created_tx = '' AND hash IN ?`, txID, now(), poolID, chunk).Error
			if err != nil {
				return err
			}
		}
		return s.checkFence(tx)
	})
	if err != nil {
		return fmt.Errorf("storage: note created tx: %w", err)
	}
	return nil
}

// Lineage is what FailLineage changed.
type Lineage struct {
	// Invalidated are the live reservations that held an output of the failed
	// transaction, now invalidated.
	Invalidated []Reservation
	// Released are the reservations whose own spend was the failed
	// transaction (submitted, or already settled from the mempool), now
	// released: the UTXOs they spent come back when the chain still has them.
	Released []Reservation
	// Outputs is the number of UTXOs marked invalidated.
	Outputs int64
}

// FailLineage applies a failed (status_fail, or dropped) transaction txID to
// the pool: its outputs become invalidated, whatever their state; the live
// reservations holding one end invalidated; the reservations that submitted
// txID end released. One transaction; the reservations come back ordered by
// fence.
func (s *Store) FailLineage(ctx context.Context, poolID int64, txID string, outputs []string) (Lineage, error) {
	var out Lineage
	if txID == "" {
		return out, fmt.Errorf("%w: failed transaction without id", ErrInvalidArgument)
	}
	ctx, cancel := s.writeContext(ctx)
	defer cancel()
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		t := now()
		for _, chunk := range chunks(outputs) {
			res := tx.Exec(`UPDATE utxos SET state = ?, updated_at = ?, spent_at = COALESCE(spent_at, ?)
				WHERE pool_id = ? AND state <> ? AND hash IN ?`,
				StateInvalidated, t, t, poolID, StateInvalidated, chunk)
			if res.Error != nil {
				return res.Error
			}
			out.Outputs += res.RowsAffected
		}
		if len(outputs) > 0 {
			var err error
			if out.Invalidated, err = endLiveHolding(tx, poolID, outputs, ResInvalidated, t); err != nil {
				return err
			}
		}
		var released []Reservation
		err := tx.Raw(`UPDATE reservations SET state = ?, updated_at = ?
			WHERE id IN (SELECT id FROM reservations WHERE pool_id = ? AND tx_id = ? AND state IN ?`+lockInIDOrder(tx)+`)
			AND state IN ? RETURNING *`,
			ResReleased, t, poolID, txID, []string{ResSubmitted, ResSpent}, []string{ResSubmitted, ResSpent}).Scan(&released).Error
		if err != nil {
			return err
		}
		out.Released = released
		if len(released) > 0 {
			// Their UTXOs still marked reserved are free again unless another
			// live reservation holds them.
			err := tx.Exec(`UPDATE utxos SET state = ?, updated_at = ? WHERE pool_id = ? AND state = ?
				AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.state IN ? AND r.expires_at > ?
					AND r.pool_id = utxos.pool_id AND `+s.inHashes("r.hashes")+`)`,
				StateAvailable, t, poolID, StateReserved, liveStates, t).Error
			if err != nil {
				return err
			}
		}
		return s.checkFence(tx)
	})
	if err != nil {
		return Lineage{}, fmt.Errorf("storage: fail lineage of %s: %w", txID, err)
	}
	byFence := func(a, b Reservation) int { return cmp.Compare(a.Fence, b.Fence) }
	slices.SortFunc(out.Invalidated, byFence)
	slices.SortFunc(out.Released, byFence)
	return out, nil
}

// CreatedTxOf returns the recorded creating transaction of those of hashes
// that have one.
func (s *Store) CreatedTxOf(ctx context.Context, poolID int64, hashes []string) (map[string]string, error) {
	out := map[string]string{}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	for _, chunk := range chunks(hashes) {
		var rows []UTXO
		err := s.db.WithContext(ctx).Select("hash", "created_tx").
			Where("pool_id = ? AND created_tx <> '' AND hash IN ?", poolID, chunk).Find(&rows).Error
		if err != nil {
			return nil, fmt.Errorf("storage: created tx of utxos: %w", err)
		}
		for _, r := range rows {
			out[r.Hash] = r.CreatedTx
		}
	}
	return out, nil
}
