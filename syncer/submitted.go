package syncer

import (
	"context"
	"log/slog"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/storage"
)

// submittedCheck follows, for a source that lists UTXOs, the transactions of
// submitted reservations and of those settled spent within the submit grace:
// the pool outputs of one still pending are noted as its own (so its change
// can be invalidated should it fail); when one fails on chain, its lineage is
// applied: a submitted reservation is released at once so its UTXOs come
// back, and its outputs, its descendants' and the reservations on them are
// invalidated. A spend is settled by the UTXO sync; a transaction that
// vanishes before it was seen lets the hold run out at the end of the submit
// grace.
type submittedCheck struct {
	Store submittedStore
	Locks endLocks
	Chain chain.Source
	Apply *Applier
	Log   *slog.Logger
}

// Run checks up to one batch of submitted reservations and returns how many
// it released.
func (s *submittedCheck) Run(ctx context.Context) (int, error) {
	subs, err := s.Store.SubmittedReservations(ctx, storage.MaxListLimit)
	if err != nil {
		return 0, err
	}
	lin := &lineage{store: s.Store, locks: s.Locks, chain: s.Chain, apply: s.Apply, log: s.logger()}
	pools := map[int64]storage.Pool{}
	followed := map[string]bool{}
	released := 0
	for _, r := range subs {
		if followed[r.TxID] {
			continue
		}
		followed[r.TxID] = true
		pool, ok := pools[r.PoolID]
		if !ok {
			if pool, err = s.Store.GetPool(ctx, r.PoolID); err != nil {
				return released, err
			}
			pools[r.PoolID] = pool
		}
		failed, err := lin.follow(ctx, pool, r.TxID)
		if err != nil {
			if ctx.Err() != nil || isStale(err) {
				return released, err
			}
			s.logger().Warn("submitted check", "reservation", r.ID, "tx", r.TxID, "err", err)
			continue
		}
		if failed {
			s.logger().Info("submitted transaction failed; reservation released", "reservation", r.ID, "pool", r.PoolID)
			released++
		}
	}
	return released, nil
}

func (s *submittedCheck) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}
