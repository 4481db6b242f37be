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

// DefaultIndexPoll is how often the chain index asks the node for a new block
// and the mempool: a block's outputs are reservable within about this.
const DefaultIndexPoll = 250 * time.Millisecond

// Runner runs the sync jobs of one leadership term (Jobs.ForTerm builds it).
// Every Jobs.Interval it expires reservations in the journal, syncs each pool
// of a source that lists UTXOs (concurrently; a failing pool is retried with
// exponential backoff up to Jobs.MaxBackoff and never holds up the others),
// follows submitted transactions and verifies legacy balances. With a node it
// runs the chain index instead of the UTXO sync, every Jobs.IndexPoll. Each
// pool is swept every Jobs.SweepInterval by the job that writes its chain
// state.
type Runner struct {
	utxo          *utxoSync       // a source that lists UTXOs
	index         *chainIndex     // or a node the syncer indexes
	sweep         *sweeper        // optional
	balances      *balanceVerify  // optional
	submitted     *submittedCheck // optional (sources that list UTXOs)
	store         runnerStore
	interval      time.Duration
	indexPoll     time.Duration // 0 means DefaultIndexPoll
	sweepInterval time.Duration // 0 means defaultSweepInterval
	maxBackoff    time.Duration
	log           *slog.Logger
	// epoch is the leadership term the runner works in; its writes carry it
	// and are refused once a newer term began.
	epoch int64
	// Wake, when set, names pools to sync at once (a reservation in them was
	// submitted): the change output of the spend is offered without waiting
	// for the next tick.
	Wake <-chan int64

	mu    sync.Mutex
	pools map[int64]*poolState
	// deposed is set by the first write refused for a stale epoch: a newer
	// term began, so Run stops.
	deposed atomic.Bool
	// chainErr is the last error of the chain source, "" after a success;
	// lastTip the tip it last showed.
	chainErr atomic.Pointer[string]
	lastTip  atomic.Uint64
	// poolsObserved is when the pool gauges were last set (guarded by mu).
	poolsObserved time.Time
}

// errDeposed is returned by Run when a write was refused because a newer
// leadership term began.
var errDeposed = errors.New("syncer: deposed: a newer leadership term began")

// Jobs are what the sync jobs work with. ForTerm builds the Runner of one
// leadership term.
type Jobs struct {
	Store         *storage.Store
	Locks         *lockmgr.Manager
	Chain         chain.Source
	Rebuild       *Rebuilder
	Interval      time.Duration
	MaxBackoff    time.Duration
	IndexPoll     time.Duration
	SweepInterval time.Duration
	// StartDepth is how far below the tip a pool registered without
	// from_height starts, with a node (0: 10,000 blocks).
	StartDepth uint64
	Log        *slog.Logger
}

// ForTerm returns the Runner of the leadership term with epoch: each of its
// writes to PostgreSQL and Redis carries the epoch and is refused once a newer
// term began, whatever this process believes (epoch 0: no term, no fencing,
// as in `bufferd dev`). A source that is an Indexer (a node) is indexed;
// one that is a Lister (blockcenter) is listed.
func (j Jobs) ForTerm(epoch int64) *Runner {
	store, locks := j.Store, j.Locks
	if epoch != 0 {
		store, locks = store.Fenced(LeaderJob, epoch), locks.Fenced(epoch)
	}
	apply := &Applier{Store: store, Locks: locks, Log: j.Log}
	r := &Runner{
		store:         store,
		sweep:         &sweeper{Store: store, Locks: locks, Apply: apply, Log: j.Log},
		balances:      &balanceVerify{Store: store, Chain: j.Chain, Log: j.Log},
		interval:      j.Interval,
		indexPoll:     j.IndexPoll,
		sweepInterval: j.SweepInterval,
		maxBackoff:    j.MaxBackoff,
		log:           j.Log,
		epoch:         epoch,
	}
	if node, ok := j.Chain.(chain.Indexer); ok {
		r.index = &chainIndex{Store: store, Node: node, Apply: apply, Rebuild: j.Rebuild, StartDepth: j.StartDepth, Log: j.Log}
		return r
	}
	if l, ok := j.Chain.(chain.Lister); ok {
		r.utxo = &utxoSync{Store: store, Locks: locks, Chain: j.Chain, Lister: l, Apply: apply, Rebuild: j.Rebuild, Log: j.Log}
		r.submitted = &submittedCheck{Store: store, Locks: locks, Chain: j.Chain, Apply: apply, Log: j.Log}
	}
	return r
}

// refused reports whether err is a write refused for a stale epoch, counting
// it and marking the runner deposed.
func (r *Runner) refused(err error) bool {
	if !staleEpoch(err) {
		return false
	}
	if !r.deposed.Swap(true) {
		r.logger().Warn("write refused: a newer leadership term began; stepping down", "epoch", r.epoch, "err", err)
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
	lastSweep   time.Time
}

// LeaderJob names the leadership term of the sync jobs.
const LeaderJob = "sync"

// tipTimeout bounds the chain status call of a tick.
const tipTimeout = 5 * time.Second

// Run runs the jobs until ctx ends, or until a write is refused because a
// newer term began (an error then). `bufferd syncer` runs it only while the
// process leads the sync jobs (see LeaderJob), so while it runs
// bufferd_sync_leader is 1.
func (r *Runner) Run(ctx context.Context) error {
	// Counted before the gauge says so: a reader that sees the gauge at 1
	// sees the change counted.
	metrics.SyncLeaderChanges.Inc()
	metrics.SyncLeader.Set(1)
	defer metrics.SyncLeader.Set(0)
	// Only the leader reports the pools: a standby's gauges would go stale.
	defer metrics.PoolUTXOs.Reset()
	defer metrics.PoolOldestReservationAge.Reset()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if r.index != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.runIndex(ctx)
			cancel()
		}()
	}
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		if err := r.Tick(ctx); err != nil && ctx.Err() == nil {
			r.logger().Error("sync tick", "err", err)
		}
		if r.deposed.Load() || !r.waitTick(ctx, t) || r.deposed.Load() {
			break
		}
	}
	cancel()
	wg.Wait()
	if r.deposed.Load() {
		return errDeposed
	}
	return nil
}

// runIndex runs the chain index every indexPoll (backing off while the node
// fails, up to maxBackoff) and sweeps its pools, until ctx ends or the term.
func (r *Runner) runIndex(ctx context.Context) {
	poll := r.indexPoll
	if poll <= 0 {
		poll = DefaultIndexPoll
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = poll, max(poll, r.maxBackoff)
	wait := poll
	var lastSweep time.Time
	for ctx.Err() == nil && !r.deposed.Load() {
		start := now()
		res, err := r.index.Pass(ctx)
		observeJob(storage.JobIndex, err, now().Sub(start))
		switch {
		case r.refused(err):
			return
		case err != nil && ctx.Err() == nil:
			wait = b.NextBackOff()
			r.chainFailed(err, wait)
		case err == nil:
			b.Reset()
			wait = poll
			r.chainOK(chain.Status{Height: res.Tip, BlockHash: res.TipHash})
			if res.Blocks+res.Reorgs > 0 {
				r.logger().Debug("chain indexed", "tip", res.Tip, "blocks", res.Blocks, "reorgs", res.Reorgs,
					"pending", res.Pending, "utxos_touched", res.Touched)
			}
			if now().Sub(lastSweep) >= r.sweepEvery() {
				lastSweep = now()
				r.sweepAll(ctx)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// chainFailed records a failed pass over the chain source.
func (r *Runner) chainFailed(err error, retry time.Duration) {
	msg := err.Error()
	prev := r.chainErr.Swap(&msg)
	metrics.ChainErrors.WithLabelValues(chainErrorReason(err)).Inc()
	if prev == nil || *prev != msg {
		r.logger().Error("chain source failed; retrying", "err", err, "retry_in", retry.Round(time.Millisecond))
	}
	r.saveChainCursor(chain.Status{}, msg)
}

// chainOK records a successful pass over the chain source.
func (r *Runner) chainOK(tip chain.Status) {
	empty := ""
	prev := r.chainErr.Swap(&empty)
	recovered := prev != nil && *prev != ""
	if recovered {
		r.logger().Info("chain source answers again", "tip", tip.Height)
	}
	if r.lastTip.Swap(tip.Height) != tip.Height || recovered || prev == nil {
		r.saveChainCursor(tip, "")
	}
}

// Index runs one pass of the chain index when the source is a node (and
// does nothing otherwise): it brings the pools up to the tip a batch at a
// time (a backfilling pool may need several passes) and overlays the mempool.
func (r *Runner) Index(ctx context.Context) error {
	if r.index == nil {
		return nil
	}
	_, err := r.index.Pass(ctx)
	return err
}

// ChainError returns the last error of the chain source ("" when its last
// pass succeeded): readiness fails meanwhile.
func (r *Runner) ChainError() string {
	if p := r.chainErr.Load(); p != nil {
		return *p
	}
	return ""
}

// saveChainCursor keeps the chain source's state where the API reads it
// (the cursor of pool 0, job "chain").
func (r *Runner) saveChainCursor(tip chain.Status, lastErr string) {
	ctx, cancel := context.WithTimeout(context.Background(), tipTimeout)
	defer cancel()
	c := storage.SyncCursor{PoolID: 0, Job: JobChain, Height: int64(tip.Height), BlockHash: tip.BlockHash, Epoch: r.epoch, LastError: lastErr}
	if lastErr == "" {
		t := now()
		c.LastSuccess = &t
	} else if prev, err := r.store.Cursor(ctx, 0, JobChain); err == nil {
		c.Height, c.BlockHash, c.LastSuccess = prev.Height, prev.BlockHash, prev.LastSuccess
	}
	if err := r.store.SaveCursor(ctx, c); err != nil && !r.refused(err) {
		r.logger().Warn("save chain state", "err", err)
	}
}

// JobChain names the chain source's own cursor (pool 0): the tip as last
// seen and the source's last error.
const JobChain = "chain"

// chainErrorReason classifies a chain source error for metrics.
func chainErrorReason(err error) string {
	var apiErr *chain.APIError
	switch {
	case errors.Is(err, errOtherChain):
		return "other_chain"
	case errors.Is(err, chain.ErrBadResponse):
		return "bad_response"
	case errors.As(err, &apiErr):
		return "api_error"
	default:
		return "unreachable"
	}
}

func (r *Runner) sweepEvery() time.Duration {
	if r.sweepInterval > 0 {
		return r.sweepInterval
	}
	return defaultSweepInterval
}

// sweepAll sweeps every pool the syncer offers.
func (r *Runner) sweepAll(ctx context.Context) {
	if r.sweep == nil {
		return
	}
	pools, err := r.store.ListPools(ctx)
	if err != nil {
		return
	}
	for _, p := range pools {
		if p.SyncedAt == nil {
			continue
		}
		if _, err := r.sweep.Pool(ctx, p.ID); err != nil && !r.refused(err) && ctx.Err() == nil {
			r.logger().Warn("sweep", "pool", p.ID, "err", err)
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
			r.syncNow(ctx, id)
		}
	}
}

// syncNow syncs one pool at once, whatever its backoff (sources that list
// UTXOs; the index polls often enough).
func (r *Runner) syncNow(ctx context.Context, poolID int64) {
	if r.utxo == nil {
		return
	}
	p, err := r.store.GetPool(ctx, poolID)
	if err != nil {
		if ctx.Err() == nil {
			r.logger().Warn("sync now", "pool", poolID, "err", err)
		}
		return
	}
	r.syncOne(ctx, p, chain.Status{}, false)
}

// Tick runs one pass of the slow jobs: expire ended reservations in the
// journal and forget old idempotency keys, sync (and sweep) every pool of a
// source that lists UTXOs that is not backing off, follow the transactions of
// submitted reservations (a failed one's lineage is applied), then verify
// pending legacy balance rows. It returns an error only when the pass could
// not start (the pool list could not be read); per-pool failures are logged
// and retried later.
func (r *Runner) Tick(ctx context.Context) error {
	store := r.store
	if n, err := store.ExpireReservations(ctx, now().Add(-expiryMargin)); r.refused(err) {
		return nil
	} else if err != nil {
		r.logger().Warn("expire reservations", "err", err)
	} else if n > 0 {
		metrics.ReservationOutcomes.WithLabelValues(metrics.OutcomeExpired).Add(float64(n))
		r.logger().Info("expired reservations", "count", n)
	}
	if _, err := store.ForgetKeys(ctx, now().Add(-lockmgr.IdempotencyWindow)); r.refused(err) {
		return nil
	} else if err != nil {
		r.logger().Warn("forget idempotency keys", "err", err)
	}
	if r.utxo != nil {
		if err := r.syncAll(ctx); err != nil {
			return err
		}
	}
	if r.submitted != nil {
		if _, err := r.submitted.Run(ctx); err != nil && !r.refused(err) && ctx.Err() == nil {
			r.logger().Warn("submitted check", "err", err)
		}
	}
	if r.balances != nil {
		out, err := r.balances.Run(ctx)
		switch {
		case r.refused(err):
			return nil
		case err != nil && ctx.Err() == nil:
			r.logger().Warn("balance verify", "err", err)
		case out.Confirmed+out.Rejected+out.Expired > 0:
			r.logger().Info("balances verified", "confirmed", out.Confirmed, "rejected", out.Rejected, "expired", out.Expired)
		}
	}
	r.observePools(ctx)
	return nil
}

// observePools sets the pool gauges (UTXOs by state, age of the oldest live
// reservation) at most once a sweep interval; errors only delay them.
func (r *Runner) observePools(ctx context.Context) {
	r.mu.Lock()
	due := now().Sub(r.poolsObserved) >= r.sweepEvery()
	if due {
		r.poolsObserved = now()
	}
	r.mu.Unlock()
	if !due {
		return
	}
	counts, err := r.store.PoolCounts(ctx)
	if err != nil {
		r.logger().Warn("pool gauges", "err", err)
		return
	}
	pools, err := r.store.ListPools(ctx)
	if err != nil {
		r.logger().Warn("pool gauges", "err", err)
		return
	}
	t := now()
	for _, p := range pools {
		c, label := counts[p.ID], poolLabel(p.ID)
		for state, n := range map[string]int64{storage.StateAvailable: c.Available, storage.StateReserved: c.Reserved,
			storage.StateSpent: c.Spent, storage.StateInvalidated: c.Invalidated, storage.StateImmature: c.Immature} {
			metrics.PoolUTXOs.WithLabelValues(label, state).Set(float64(n))
		}
		oldest, ok, err := r.store.OldestLiveReservation(ctx, p.ID)
		switch {
		case err != nil:
			r.logger().Warn("pool gauges", "pool", p.ID, "err", err)
		case ok:
			metrics.PoolOldestReservationAge.WithLabelValues(label).Set(max(0, t.Sub(oldest).Seconds()))
		default:
			metrics.PoolOldestReservationAge.WithLabelValues(label).Set(0)
		}
	}
}

// syncParallelism is how many pools a source that lists UTXOs syncs at once.
const syncParallelism = 4

// syncAll syncs every pool of a source that lists UTXOs.
func (r *Runner) syncAll(ctx context.Context) error {
	tip, tipOK := r.chainTip(ctx)
	pools, err := r.store.ListPools(ctx)
	if err != nil {
		return fmt.Errorf("syncer: list pools: %w", err)
	}
	sem := make(chan struct{}, syncParallelism)
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
	return nil
}

// chainTip reads the chain's tip for the sync lag; ok is false when the
// chain does not answer (the lag gauges then keep their values).
func (r *Runner) chainTip(ctx context.Context) (chain.Status, bool) {
	ctx, cancel := context.WithTimeout(ctx, tipTimeout)
	defer cancel()
	st, err := r.utxo.Chain.ChainStatus(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.chainFailed(err, r.interval)
		}
		return chain.Status{}, false
	}
	r.chainOK(st)
	metrics.ChainTipHeight.Set(float64(st.Height))
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
	res, err := r.utxo.SyncPool(ctx, p)
	elapsed := now().Sub(start)
	observeSync(p.ID, err, elapsed, res)
	cur := storage.SyncCursor{PoolID: p.ID, Job: jobUTXO, Epoch: r.epoch, UpdatedAt: now()}
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
		if r.sweepDue(p.ID) {
			if _, err := r.sweep.Pool(ctx, p.ID); err != nil && !r.refused(err) && ctx.Err() == nil {
				r.logger().Warn("sweep", "pool", p.ID, "err", err)
			}
		}
	}
	if err := r.store.SaveCursor(ctx, cur); err != nil && !r.refused(err) {
		countRefused(err)
		if ctx.Err() == nil {
			r.logger().Warn("save sync cursor", "pool", p.ID, "err", err)
		}
	}
}

// sweepDue reports whether the pool is due for a sweep, and if so counts it done.
func (r *Runner) sweepDue(id int64) bool {
	if r.sweep == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.state(id)
	if now().Sub(s.lastSweep) < r.sweepEvery() {
		return false
	}
	s.lastSweep = now()
	return true
}

func (r *Runner) state(id int64) *poolState {
	if r.pools == nil {
		r.pools = map[int64]*poolState{}
	}
	s, ok := r.pools[id]
	if !ok {
		b := backoff.NewExponentialBackOff()
		b.InitialInterval = r.interval
		b.MaxInterval = r.maxBackoff
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

func (r *Runner) logger() *slog.Logger {
	if r.log != nil {
		return r.log
	}
	return slog.Default()
}
