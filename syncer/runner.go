package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/bufferd/bufferd/storage"
)

// Runner runs the sync jobs every Interval. Pools are synced concurrently; a
// failing pool is logged, retried with exponential backoff up to MaxBackoff,
// and never holds up the others.
type Runner struct {
	UTXO        *UTXOSync
	Balances    *BalanceVerify  // optional
	Submitted   *SubmittedCheck // optional
	Interval    time.Duration
	MaxBackoff  time.Duration
	Parallelism int // pools synced at once; 0 means 4
	Log         *slog.Logger

	mu    sync.Mutex
	pools map[int64]*poolState
}

type poolState struct {
	backoff   *backoff.ExponentialBackOff
	failures  int
	nextTry   time.Time
	lastError string
}

// Run syncs at once and then every Interval until ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		if err := r.Tick(ctx); err != nil && ctx.Err() == nil {
			r.logger().Error("sync tick", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick runs one pass: expire ended reservations in the journal, sync every
// pool that is not backing off, release submitted reservations whose
// transaction failed, then verify pending legacy balance rows. It returns an error only when the pass could not
// start (the pool list could not be read); per-pool failures are logged and
// retried later.
func (r *Runner) Tick(ctx context.Context) error {
	store := r.UTXO.Store
	if n, err := store.ExpireReservations(ctx, now()); err != nil {
		r.logger().Warn("expire reservations", "err", err)
	} else if n > 0 {
		r.logger().Info("expired reservations", "count", n)
	}
	pools, err := store.ListPools(ctx)
	if err != nil {
		return fmt.Errorf("syncer: list pools: %w", err)
	}
	par := r.Parallelism
	if par <= 0 {
		par = 4
	}
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for _, p := range pools {
		if !r.due(p.ID) {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(p storage.Pool) {
			defer wg.Done()
			defer func() { <-sem }()
			r.syncOne(ctx, p)
		}(p)
	}
	wg.Wait()
	if r.Submitted != nil {
		if _, err := r.Submitted.Run(ctx); err != nil && ctx.Err() == nil {
			r.logger().Warn("submitted check", "err", err)
		}
	}
	if r.Balances != nil {
		out, err := r.Balances.Run(ctx)
		if err != nil && ctx.Err() == nil {
			r.logger().Warn("balance verify", "err", err)
		} else if out.Confirmed+out.Rejected+out.Expired > 0 {
			r.logger().Info("balances verified", "confirmed", out.Confirmed, "rejected", out.Rejected, "expired", out.Expired)
		}
	}
	return nil
}

func (r *Runner) syncOne(ctx context.Context, p storage.Pool) {
	start := now()
	res, err := r.UTXO.SyncPool(ctx, p)
	elapsed := now().Sub(start)
	observeSync(err, elapsed, res)
	cur := storage.SyncCursor{PoolID: p.ID, Job: JobUTXO, UpdatedAt: now()}
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return
		}
		wait, failures := r.failed(p.ID, err)
		r.logger().Warn("pool sync failed", "pool", p.ID, "asset", p.Asset, "err", err,
			"failures", failures, "retry_in", wait.Round(time.Millisecond))
		cur.LastError = err.Error()
	} else {
		r.succeeded(p.ID)
		t := now()
		cur.LastSuccess = &t
		if len(res.Added)+len(res.Revived)+len(res.Spent) > 0 {
			r.logger().Info("pool synced", "pool", p.ID, "added", len(res.Added), "revived", len(res.Revived),
				"spent", len(res.Spent), "took", elapsed.Round(time.Millisecond))
		}
	}
	if err := r.UTXO.Store.SaveCursor(ctx, cur); err != nil && ctx.Err() == nil {
		r.logger().Warn("save sync cursor", "pool", p.ID, "err", err)
	}
}

func (r *Runner) state(id int64) *poolState {
	if r.pools == nil {
		r.pools = map[int64]*poolState{}
	}
	s, ok := r.pools[id]
	if !ok {
		b := backoff.NewExponentialBackOff()
		b.InitialInterval = r.Interval
		b.MaxInterval = r.MaxBackoff
		if b.MaxInterval < b.InitialInterval {
			b.MaxInterval = b.InitialInterval
		}
		s = &poolState{backoff: b}
		r.pools[id] = s
	}
	return s
}

func (r *Runner) due(id int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !now().Before(r.state(id).nextTry)
}

func (r *Runner) failed(id int64, err error) (time.Duration, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.state(id)
	s.failures++
	s.lastError = err.Error()
	wait := s.backoff.NextBackOff()
	s.nextTry = now().Add(wait)
	return wait, s.failures
}

func (r *Runner) succeeded(id int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.state(id)
	s.failures = 0
	s.lastError = ""
	s.nextTry = time.Time{}
	s.backoff.Reset()
}

// Failures returns how many syncs of the pool failed in a row.
func (r *Runner) Failures(id int64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state(id).failures
}

func (r *Runner) logger() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.Default()
}
