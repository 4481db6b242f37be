package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/metrics"
	"github.com/bufferd/bufferd/storage"
)

// Runner runs the sync jobs every Interval. Pools are synced concurrently; a
// failing pool is logged, retried with exponential backoff up to MaxBackoff,
// and never holds up the others.
type Runner struct {
	UTXO        *UTXOSync
	Balances    *BalanceVerify  // optional
	Submitted   *SubmittedCheck // optional
	Mempool     *MempoolWatch   // optional: sources that list their mempool
	Crawl       *Crawler        // optional: sources that serve blocks
	Interval    time.Duration
	MaxBackoff  time.Duration
	Parallelism int // pools synced at once; 0 means 4
	Log         *slog.Logger
	// Epoch is the leadership term the runner works in; its cursor writes
	// carry it and are refused once a newer term began.
	Epoch int64
	// Wake, when set, names pools to sync at once (a reservation in them was
	// submitted): the change output of the spend is offered without waiting
	// for the next tick.
	Wake <-chan int64

	mu    sync.Mutex
	pools map[int64]*poolState
	// deposed is set by the first write refused for a stale epoch: a newer
	// term began, so Run stops.
	deposed atomic.Bool
}

// ErrDeposed is returned by Run when a write was refused because a newer
// leadership term began.
var ErrDeposed = errors.New("syncer: deposed: a newer leadership term began")

// Jobs are what the sync jobs work with. ForTerm builds the Runner of one
// leadership term.
type Jobs struct {
	Store      *storage.Store
	Locks      *lockmgr.Manager
	Chain      chain.Source
	Rebuild    *Rebuilder
	Interval   time.Duration
	MaxBackoff time.Duration
	// CrawlStart is the height a pool's block crawl starts from (0: the tip
	// when the pool is first crawled); the crawler runs when Chain serves blocks.
	CrawlStart uint64
	Log        *slog.Logger
}

// ForTerm returns the Runner of the leadership term with epoch: each of its
// writes to PostgreSQL and Redis carries the epoch and is refused once a newer
// term began, whatever this process believes (epoch 0: no term, no fencing,
// as in `bufferd dev`).
func (j Jobs) ForTerm(epoch int64) *Runner {
	store, locks := j.Store, j.Locks
	if epoch != 0 {
		store, locks = store.Fenced(LeaderJob, epoch), locks.Fenced(epoch)
	}
	var mempool *MempoolWatch
	if m, ok := j.Chain.(chain.MempoolSource); ok {
		mempool = &MempoolWatch{Store: store, Mempool: m, Chain: j.Chain}
	}
	var crawl *Crawler
	if b, ok := j.Chain.(chain.BlockSource); ok {
		crawl = &Crawler{Store: store, Chain: j.Chain, Blocks: b, StartHeight: j.CrawlStart, Log: j.Log}
	}
	return &Runner{
		Crawl:      crawl,
		Mempool:    mempool,
		UTXO:       &UTXOSync{Store: store, Locks: locks, Chain: j.Chain, Rebuild: j.Rebuild, Log: j.Log},
		Submitted:  &SubmittedCheck{Store: store, Locks: locks, Chain: j.Chain, Log: j.Log},
		Balances:   &BalanceVerify{Store: store, Chain: j.Chain, Log: j.Log},
		Interval:   j.Interval,
		MaxBackoff: j.MaxBackoff,
		Log:        j.Log,
		Epoch:      epoch,
	}
}

// refused reports whether err is a write refused for a stale epoch, counting
// it and marking the runner deposed.
func (r *Runner) refused(err error) bool {
	if !staleEpoch(err) {
		return false
	}
	if !r.deposed.Swap(true) {
		r.logger().Warn("write refused: a newer leadership term began; stepping down", "epoch", r.Epoch, "err", err)
	}
	return true
}

type poolState struct {
	backoff   *backoff.ExponentialBackOff
	failures  int
	nextTry   time.Time
	lastError string
	// Of the last successful sync in this process: when, and the chain tip
	// seen just before it (synced reports whether there was one).
	synced      bool
	lastSuccess time.Time
	tip         chain.Status
}

// LeaderJob names the leadership term of the sync jobs.
const LeaderJob = "sync"

// tipTimeout bounds the chain status call of a tick.
const tipTimeout = 5 * time.Second

// Run syncs at once and then every Interval until ctx ends, or until a write
// is refused because a newer term began (ErrDeposed). `bufferd syncer` runs it
// only while the process leads the sync jobs (see LeaderJob), so while it runs
// bufferd_sync_leader is 1.
func (r *Runner) Run(ctx context.Context) error {
	metrics.SyncLeader.Set(1)
	metrics.SyncLeaderChanges.Inc()
	defer metrics.SyncLeader.Set(0)
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		if err := r.Tick(ctx); err != nil && ctx.Err() == nil {
			r.logger().Error("sync tick", "err", err)
		}
		if r.deposed.Load() {
			return ErrDeposed
		}
		if !r.waitTick(ctx, t) {
			return nil
		}
		if r.deposed.Load() {
			return ErrDeposed
		}
	}
}

// waitTick waits for the next tick, syncing the pools Wake names meanwhile; it
// returns false when ctx ended.
func (r *Runner) waitTick(ctx context.Context, t *time.Ticker) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case id := <-r.Wake:
			r.SyncNow(ctx, id)
		}
	}
}

// SyncNow syncs one pool at once, whatever its backoff.
func (r *Runner) SyncNow(ctx context.Context, poolID int64) {
	p, err := r.UTXO.Store.GetPool(ctx, poolID)
	if err != nil {
		if ctx.Err() == nil {
			r.logger().Warn("sync now", "pool", poolID, "err", err)
		}
		return
	}
	r.syncOne(ctx, p, chain.Status{}, false)
}

// Tick runs one pass: expire ended reservations in the journal, sync every
// pool that is not backing off, note the lineage of the mempool's
// transactions (sources that list it), follow the transactions of submitted
// reservations (a failed one's lineage is applied), then verify pending legacy
// balance rows. It returns an error only when the pass could not
// start (the pool list could not be read); per-pool failures are logged and
// retried later.
func (r *Runner) Tick(ctx context.Context) error {
	store := r.UTXO.Store
	if n, err := store.ExpireReservations(ctx, now()); r.refused(err) {
		return nil
	} else if err != nil {
		r.logger().Warn("expire reservations", "err", err)
	} else if n > 0 {
		metrics.ReservationOutcomes.WithLabelValues(metrics.OutcomeExpired).Add(float64(n))
		r.logger().Info("expired reservations", "count", n)
	}
	tip, tipOK := r.chainTip(ctx)
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
			r.syncOne(ctx, p, tip, tipOK)
		}(p)
	}
	wg.Wait()
	if tipOK {
		r.observeLag(pools, tip)
	}
	if r.Mempool != nil {
		if _, err := r.Mempool.Run(ctx, pools); r.refused(err) {
			return nil
		} else if err != nil && ctx.Err() == nil {
			r.logger().Warn("mempool watch", "err", err)
		}
	}
	if r.Crawl != nil {
		start := now()
		res, err := r.Crawl.Run(ctx)
		observeJob(storage.JobCrawl, err, now().Sub(start))
		if r.refused(err) {
			return nil
		} else if err != nil && ctx.Err() == nil {
			r.logger().Warn("block crawl", "err", err)
		} else if res.Blocks+res.Reorgs > 0 {
			r.logger().Info("blocks crawled", "blocks", res.Blocks, "transactions", res.Txs, "reorgs", res.Reorgs)
		}
	}
	if r.Submitted != nil {
		if _, err := r.Submitted.Run(ctx); err != nil && !r.refused(err) && ctx.Err() == nil {
			r.logger().Warn("submitted check", "err", err)
		}
	}
	if r.Balances != nil {
		out, err := r.Balances.Run(ctx)
		if r.refused(err) {
			return nil
		} else if err != nil && ctx.Err() == nil {
			r.logger().Warn("balance verify", "err", err)
		} else if out.Confirmed+out.Rejected+out.Expired > 0 {
			r.logger().Info("balances verified", "confirmed", out.Confirmed, "rejected", out.Rejected, "expired", out.Expired)
		}
	}
	return nil
}

// chainTip reads the chain's tip for the sync lag; ok is false when the
// chain does not answer (the lag gauges then keep their values).
func (r *Runner) chainTip(ctx context.Context) (chain.Status, bool) {
	ctx, cancel := context.WithTimeout(ctx, tipTimeout)
	defer cancel()
	st, err := r.UTXO.Chain.ChainStatus(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.logger().Warn("chain status", "err", err)
		}
		return chain.Status{}, false
	}
	return st, true
}

// observeLag sets bufferd_sync_blocks_behind of every pool synced at least
// once by this process: the tip minus the tip seen before its last success
// (so 0 right after a success, growing while its syncs fail).
func (r *Runner) observeLag(pools []storage.Pool, tip chain.Status) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range pools {
		s := r.state(p.ID)
		if !s.synced {
			continue
		}
		behind := 0.0
		if tip.Height > s.tip.Height {
			behind = float64(tip.Height - s.tip.Height)
		}
		metrics.SyncBlocksBehind.WithLabelValues(poolLabel(p.ID)).Set(behind)
	}
}

func (r *Runner) syncOne(ctx context.Context, p storage.Pool, tip chain.Status, tipOK bool) {
	start := now()
	res, err := r.UTXO.SyncPool(ctx, p)
	elapsed := now().Sub(start)
	observeSync(p.ID, err, elapsed, res)
	cur := storage.SyncCursor{PoolID: p.ID, Job: JobUTXO, Epoch: r.Epoch, UpdatedAt: now()}
	if err != nil {
		if r.refused(err) || ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return
		}
		wait, failures := r.failed(p.ID, err)
		r.logger().Warn("pool sync failed", "pool", p.ID, "asset", p.Asset, "err", err,
			"failures", failures, "retry_in", wait.Round(time.Millisecond))
		cur.LastError = err.Error()
		// Keep showing the last success this process saw.
		if last, ok := r.lastSuccess(p.ID); ok {
			cur.LastSuccess = &last.lastSuccess
			cur.Height, cur.BlockHash = int64(last.tip.Height), last.tip.BlockHash
		}
	} else {
		t := now()
		r.succeeded(p.ID, t, tip, tipOK)
		cur.LastSuccess = &t
		if tipOK {
			// The pool reflects the chain at least as of the tip seen before the sync.
			cur.Height, cur.BlockHash = int64(tip.Height), tip.BlockHash
		}
		if len(res.Added)+len(res.Revived)+len(res.Spent) > 0 {
			r.logger().Info("pool synced", "pool", p.ID, "added", len(res.Added), "revived", len(res.Revived),
				"spent", len(res.Spent), "took", elapsed.Round(time.Millisecond))
		}
	}
	if err := r.UTXO.Store.SaveCursor(ctx, cur); err != nil && !r.refused(err) {
		countRefused(err)
		if ctx.Err() == nil {
			r.logger().Warn("save sync cursor", "pool", p.ID, "err", err)
		}
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

// succeeded resets the pool's backoff and records the success at t, after
// the chain tip (when tipOK).
func (r *Runner) succeeded(id int64, t time.Time, tip chain.Status, tipOK bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.state(id)
	s.failures = 0
	s.lastError = ""
	s.nextTry = time.Time{}
	s.backoff.Reset()
	s.lastSuccess = t
	if tipOK {
		s.synced, s.tip = true, tip
	}
}

// lastSuccess returns a copy of the pool's state when this process synced
// it successfully before.
func (r *Runner) lastSuccess(id int64) (poolState, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.state(id)
	if s.lastSuccess.IsZero() {
		return poolState{}, false
	}
	return poolState{lastSuccess: s.lastSuccess, tip: s.tip}, true
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
