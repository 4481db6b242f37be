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

// SubmittedCheck follows the transactions of submitted reservations: when one
// fails on chain, its reservation is released at once so the UTXOs come back
// (a spend is settled by the UTXO sync; a transaction that vanishes lets the
// hold run out at the end of the submit grace).
type SubmittedCheck struct {
	Store *storage.Store
	Locks *lockmgr.Manager
	Chain chain.Source
	Log   *slog.Logger
}

// Run checks up to one batch of submitted reservations and returns how many
// it released.
func (s *SubmittedCheck) Run(ctx context.Context) (int, error) {
	subs, err := s.Store.SubmittedReservations(ctx, storage.MaxListLimit)
	if err != nil {
		return 0, err
	}
	released := 0
	for _, r := range subs {
		tx, err := s.Chain.GetTransaction(ctx, r.TxID)
		if errors.Is(err, chain.ErrTxNotFound) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return released, ctx.Err()
			}
			s.logger().Warn("submitted check: get transaction", "reservation", r.ID, "err", err)
			continue
		}
		if !tx.Confirmed() || !tx.StatusFail {
			continue
		}
		err = s.Store.UpdateReservation(ctx, r.ID, storage.ReservationUpdate{Fence: r.Fence, State: storage.ResReleased})
		if countRefused(err) {
			continue // released or settled meanwhile by someone else
		}
		if err != nil {
			return released, fmt.Errorf("syncer: release failed submit: %w", err)
		}
		if err := s.Locks.Settle(ctx, r.PoolID, r.ID, lockmgr.StateReleased); err != nil {
			return released, err
		}
		metrics.Outcome(metrics.OutcomeReleased)
		s.logger().Info("submitted transaction failed; reservation released", "reservation", r.ID, "pool", r.PoolID)
		released++
	}
	return released, nil
}

func (s *SubmittedCheck) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}
