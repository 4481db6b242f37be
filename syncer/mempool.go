package syncer

import (
	"context"
	"fmt"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/storage"
)

// MempoolWatch follows the transactions waiting in the mempool of a source
// that lists it (bytomd): the pool outputs of each pending transaction are
// noted as created by it, so that if it fails its change is invalidated even
// when it was never submitted through bufferd (the legacy flow has no
// submit). Each pending transaction is read once while it stays pending.
type MempoolWatch struct {
	Store   *storage.Store
	Mempool chain.MempoolSource
	Chain   chain.Source

	pending map[string]*chain.Tx // read transactions still in the mempool
}

// Run reads the mempool once and notes the lineage of its transactions in
// pools. It returns how many pending transactions touch a pool.
func (w *MempoolWatch) Run(ctx context.Context, pools []storage.Pool) (int, error) {
	ids, err := w.Mempool.Mempool(ctx)
	if err != nil {
		return 0, fmt.Errorf("syncer: mempool: %w", err)
	}
	next := make(map[string]*chain.Tx, len(ids))
	for _, id := range ids {
		if tx, ok := w.pending[id]; ok {
			next[id] = tx
			continue
		}
		tx, err := w.Chain.GetTransaction(ctx, id)
		if err != nil {
			// Mined or dropped since it was listed, or unreadable: next pass.
			continue
		}
		next[id] = tx
	}
	w.pending = next
	touching := 0
	for id, tx := range next {
		touched := false
		for _, p := range pools {
			outs := poolOutputs(p, tx)
			if len(outs) == 0 && !spendsFrom(p, tx) {
				continue
			}
			touched = true
			if err := w.Store.NoteCreatedTx(ctx, p.ID, id, outs); err != nil {
				return touching, err
			}
		}
		if touched {
			touching++
		}
	}
	return touching, nil
}

// spendsFrom reports whether tx spends an output locked in pool.
func spendsFrom(pool storage.Pool, tx *chain.Tx) bool {
	for _, in := range tx.Inputs {
		if in.Program == pool.Program && in.Asset == pool.Asset {
			return true
		}
	}
	return false
}
