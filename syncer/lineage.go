package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/metrics"
	"github.com/bufferd/bufferd/storage"
)

// lineage follows the transactions that create pool UTXOs: it remembers which
// transaction created which output, and when one fails (status_fail once
// mined, or dropped from the mempool) invalidates its outputs and the
// reservations on them, and releases the reservation that submitted it.
type lineage struct {
	store lineageStore
	locks endLocks
	chain chain.Source
	apply *Applier
	log   *slog.Logger
}

// failed reports whether the chain's answer for a transaction we saw before
// means it failed for a pool of asset: unknown (dropped), or mined with
// status_fail when that leaves asset unmoved (a failed transaction still
// spends and creates its BTM: see chain.Tx.Moves).
func failed(tx *chain.Tx, err error, asset string) bool {
	return errors.Is(err, chain.ErrTxNotFound) || err == nil && tx.Confirmed() && !tx.Moves(asset)
}

// poolOutputs are the hashes of tx's outputs locked into the pool.
func poolOutputs(pool storage.Pool, tx *chain.Tx) []string {
	if tx == nil {
		return nil
	}
	var out []string
	for _, o := range tx.Outputs {
		if o.UTXO != "" && o.Program == pool.Program && o.Asset == pool.Asset {
			out = append(out, o.UTXO)
		}
	}
	return out
}

// sortGone looks at UTXOs that disappeared from the chain's list: those
// whose creating transaction failed are invalidated with its lineage
// (FailLineage), the others stay spent. A creator that cannot be looked up
// leaves its outputs spent.
func (l *lineage) sortGone(ctx context.Context, pool storage.Pool, gone []string) error {
	creators, err := l.store.CreatedTxOf(ctx, pool.ID, gone)
	if err != nil || len(creators) == 0 {
		return err
	}
	byTx := map[string][]string{}
	for h, txID := range creators {
		byTx[txID] = append(byTx[txID], h)
	}
	for txID, hashes := range byTx {
		tx, err := l.chain.GetTransaction(ctx, txID)
		if !failed(tx, err, pool.Asset) {
			if err != nil {
				l.log.Warn("lineage: look up creating transaction", "pool", pool.ID, "tx", txID, "err", err)
			}
			continue
		}
		if err := l.fail(ctx, pool, txID, append(hashes, poolOutputs(pool, tx)...)); err != nil {
			return err
		}
	}
	return nil
}

// follow looks up a transaction that spends pool UTXOs (a submitted or a
// settled reservation's): when it failed, its lineage is failed; otherwise
// its pool outputs are noted as created by it. It reports whether it failed.
func (l *lineage) follow(ctx context.Context, pool storage.Pool, txID string) (bool, error) {
	tx, err := l.chain.GetTransaction(ctx, txID)
	if errors.Is(err, chain.ErrTxNotFound) {
		return false, nil // not (yet) known: a dropped spend is left to expire
	}
	if err != nil {
		return false, fmt.Errorf("syncer: get transaction %s: %w", txID, err)
	}
	if failed(tx, nil, pool.Asset) {
		return true, l.fail(ctx, pool, txID, poolOutputs(pool, tx))
	}
	return false, l.store.NoteCreatedTx(ctx, pool.ID, txID, poolOutputs(pool, tx))
}

// fail applies a failed transaction to the database (its outputs and its
// descendants' are invalidated, its submitted reservations released), then
// to Redis and the reservations.
func (l *lineage) fail(ctx context.Context, pool storage.Pool, txID string, outputs []string) error {
	lin, err := l.store.FailLineage(ctx, pool.ID, txID, outputs)
	if err != nil {
		return err
	}
	ctx = context.WithoutCancel(ctx) // the database has it: Redis must follow
	ids := make([]string, len(lin.Released))
	for i, r := range lin.Released {
		ids[i] = r.ID
		metrics.Outcome(metrics.OutcomeReleased)
	}
	if err := l.locks.EndReservations(ctx, pool.ID, ids); err != nil {
		return err
	}
	if _, err := l.apply.Apply(ctx, pool.ID, lin.Invalidated); err != nil {
		return err
	}
	if len(lin.Invalidated)+len(lin.Released) > 0 {
		l.log.Info("transaction failed: lineage applied", "pool", pool.ID, "tx", txID, "failed_transactions", len(lin.Failed),
			"outputs_invalidated", len(lin.Invalidated), "reservations_released", len(lin.Released))
	}
	return nil
}
