package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/metrics"
	"github.com/bufferd/bufferd/storage"
)

// lineage follows the transactions that create pool UTXOs: it remembers which
// transaction created which output, and when one fails (status_fail once
// mined, or dropped from the mempool) invalidates its outputs and the
// reservations on them, and releases the reservation that submitted it.
type lineage struct {
	store *storage.Store
	locks *lockmgr.Manager
	chain chain.Source
	log   *slog.Logger
}

// failed reports whether the chain's answer for a transaction we saw before
// means it failed: mined with status_fail, or unknown (dropped).
func failed(tx *chain.Tx, err error) bool {
	return errors.Is(err, chain.ErrTxNotFound) || err == nil && tx.Confirmed() && tx.StatusFail
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

// sortGone splits UTXOs that disappeared from the chain's list into those
// spent and those invalidated because the transaction that created them
// failed; the latter are applied at once (FailLineage). A creator that cannot
// be looked up leaves its outputs spent.
func (l *lineage) sortGone(ctx context.Context, pool storage.Pool, gone []string) ([]string, error) {
	creators, err := l.store.CreatedTxOf(ctx, pool.ID, gone)
	if err != nil || len(creators) == 0 {
		return gone, err
	}
	byTx := map[string][]string{}
	for h, txID := range creators {
		byTx[txID] = append(byTx[txID], h)
	}
	invalid := map[string]struct{}{}
	for txID, hashes := range byTx {
		tx, err := l.chain.GetTransaction(ctx, txID)
		if !failed(tx, err) {
			if err != nil {
				l.log.Warn("lineage: look up creating transaction", "pool", pool.ID, "tx", txID, "err", err)
			}
			continue
		}
		if err := l.fail(ctx, pool, txID, append(hashes, poolOutputs(pool, tx)...)); err != nil {
			return gone, err
		}
		for _, h := range hashes {
			invalid[h] = struct{}{}
		}
	}
	spent := gone[:0:0]
	for _, h := range gone {
		if _, ok := invalid[h]; !ok {
			spent = append(spent, h)
		}
	}
	return spent, nil
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
	if failed(tx, nil) {
		return true, l.fail(ctx, pool, txID, poolOutputs(pool, tx))
	}
	return false, l.store.NoteCreatedTx(ctx, pool.ID, txID, poolOutputs(pool, tx))
}

// fail applies a failed transaction to the database, then to Redis.
func (l *lineage) fail(ctx context.Context, pool storage.Pool, txID string, outputs []string) error {
	lin, err := l.store.FailLineage(ctx, pool.ID, txID, outputs)
	if err != nil {
		return err
	}
	ctx = context.WithoutCancel(ctx) // the database has it: Redis must follow
	if len(outputs) > 0 {
		if err := l.locks.SyncAvailable(ctx, pool.ID, nil, outputs); err != nil {
			return err
		}
	}
	for _, r := range lin.Invalidated {
		if err := l.locks.Settle(ctx, pool.ID, r.ID, lockmgr.StateInvalidated); err != nil {
			return err
		}
		metrics.Outcome(metrics.OutcomeInvalidated)
	}
	for _, r := range lin.Released {
		if err := l.locks.Settle(ctx, pool.ID, r.ID, lockmgr.StateReleased); err != nil {
			return err
		}
		metrics.Outcome(metrics.OutcomeReleased)
	}
	if lin.Outputs+int64(len(lin.Invalidated)+len(lin.Released)) > 0 {
		l.log.Info("transaction failed: lineage applied", "pool", pool.ID, "tx", txID, "outputs_invalidated", lin.Outputs,
			"reservations_invalidated", len(lin.Invalidated), "reservations_released", len(lin.Released))
	}
	return nil
}
