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
	// Invalidated are the UTXOs it invalidated: settle them (Settle).
	Invalidated []string
	// Released are the submitted reservations whose own transaction failed,
	// now released: their UTXOs must be freed in Redis too.
	Released []Reservation
	// Failed are the failed transactions: txID and its descendants.
	Failed []string
}

// FailLineage applies a failed (status_fail, or dropped) transaction txID to
// the pool, for a source that lists UTXOs (a node-backed index sees failures
// itself): its outputs (outputs, and those recorded as created by it) become
// invalidated, whatever their state; a transaction that spent one of them
// (recorded as a reservation's or a UTXO's spender) failed with it, and so
// on down the lineage; the submitted reservations of the failed transactions
// are released. One transaction.
func (s *Store) FailLineage(ctx context.Context, poolID int64, txID string, outputs []string) (Lineage, error) {
	var out Lineage
	if txID == "" {
		return out, fmt.Errorf("%w: failed transaction without id", errInvalidArgument)
	}
	ctx, cancel := s.writeContext(ctx)
	defer cancel()
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		t := now()
		failed := map[string]bool{txID: true}
		queue := []string{txID}
		known := map[string][]string{txID: outputs}
		for len(queue) > 0 {
			cur := queue[0]
			queue = queue[1:]
			out.Failed = append(out.Failed, cur)
			var created []string
			if err := tx.Model(&UTXO{}).Where("pool_id = ? AND created_tx = ?", poolID, cur).Pluck("hash", &created).Error; err != nil {
				return err
			}
			outs := append(slices.Clone(known[cur]), created...)
			for _, chunk := range chunks(outs) {
				var hit []string
				err := tx.Raw(`UPDATE utxos SET state = ?, updated_at = ?, spent_at = COALESCE(spent_at, ?)
					WHERE pool_id = ? AND state <> ? AND hash IN ? RETURNING hash`,
					StateInvalidated, t, t, poolID, StateInvalidated, chunk).Scan(&hit).Error
				if err != nil {
					return err
				}
				out.Invalidated = append(out.Invalidated, hit...)
				// Whoever spent an output of a failed transaction failed too.
				var children []string
				err = tx.Raw(`SELECT DISTINCT r.tx_id FROM reservation_utxos ru JOIN reservations r ON r.id = ru.reservation_id
					WHERE ru.hash IN ? AND r.pool_id = ? AND r.tx_id <> ''
					UNION SELECT DISTINCT spent_tx FROM utxos WHERE pool_id = ? AND hash IN ? AND spent_tx <> ''`,
					chunk, poolID, poolID, chunk).Scan(&children).Error
				if err != nil {
					return err
				}
				for _, c := range children {
					if !failed[c] {
						failed[c] = true
						queue = append(queue, c)
					}
				}
			}
		}
		var released []Reservation
		err := tx.Raw(`UPDATE reservations SET state = ?, updated_at = ?
			WHERE id IN (SELECT id FROM reservations WHERE pool_id = ? AND tx_id IN ? AND state = ?`+lockInIDOrder(tx)+`)
			AND state = ? RETURNING *`,
			ResReleased, t, poolID, out.Failed, ResSubmitted, ResSubmitted).Scan(&released).Error
		if err != nil {
			return err
		}
		out.Released = released
		return s.checkFence(tx)
	})
	if err != nil {
		return Lineage{}, fmt.Errorf("storage: fail lineage of %s: %w", txID, err)
	}
	slices.SortFunc(out.Released, func(a, b Reservation) int { return cmp.Compare(a.Fence, b.Fence) })
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
