package syncer_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/metrics"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

// The metrics tests compare global counters before and after: none of them
// runs in parallel with other tests.

func outcome(o string) float64 {
	return testutil.ToFloat64(metrics.ReservationOutcomes.WithLabelValues(o))
}

// histogramCount is how many observations a histogram has.
func histogramCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h)
	families, err := reg.Gather()
	if err != nil || len(families) != 1 || len(families[0].GetMetric()) != 1 {
		t.Fatalf("gather the histogram: %v %v", families, err)
	}
	return families[0].GetMetric()[0].GetHistogram().GetSampleCount()
}

// Readiness depends on Rebuilding: it must be true for exactly as long as a
// rebuild runs. The snapshot is held up by a table lock, so the rebuild is
// caught in the middle.
func TestRebuildingWhileARebuildRuns(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	prog := program("rebuilding")
	if _, err := f.chain.AddUTXOs(asset, prog, amounts(5)); err != nil {
		t.Fatal(err)
	}
	p := f.pool(t, prog)
	job := f.job()
	if _, err := job.SyncPool(ctx, p); err != nil {
		t.Fatal(err)
	}
	iter := f.rdb.Scan(ctx, 0, f.prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		f.rdb.Del(ctx, iter.Val())
	}
	rb := job.Rebuild
	if rb.Rebuilding() {
		t.Fatal("rebuilding before any rebuild")
	}
	lock := f.store.DB().WithContext(ctx).Begin()
	if err := lock.Exec("LOCK TABLE utxos IN ACCESS EXCLUSIVE MODE").Error; err != nil {
		t.Fatal(err)
	}
	rebuildsBefore := testutil.ToFloat64(metrics.RedisRebuilds)
	done := make(chan error, 1)
	go func() {
		_, err := rb.RebuildIfLost(ctx, p.ID)
		done <- err
	}()
	waitFor(t, 10*time.Second, "Rebuilding() during the rebuild", rb.Rebuilding)
	time.Sleep(50 * time.Millisecond) // a window for the flag to go wrongly false: no event to wait on
	if !rb.Rebuilding() {
		t.Fatal("Rebuilding() went false while the snapshot is blocked")
	}
	if got := testutil.ToFloat64(metrics.RedisRebuildsRunning); got < 1 {
		t.Fatalf("bufferd_redis_rebuilds_running %v during the rebuild", got)
	}
	if err := lock.Rollback().Error; err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if rb.Rebuilding() {
		t.Fatal("still rebuilding after the rebuild returned")
	}
	if got := testutil.ToFloat64(metrics.RedisRebuildsRunning); got != 0 {
		t.Fatalf("bufferd_redis_rebuilds_running %v after the rebuild", got)
	}
	if got := testutil.ToFloat64(metrics.RedisRebuilds); got != rebuildsBefore+1 {
		t.Fatalf("bufferd_redis_rebuilds_total %v, want %v", got, rebuildsBefore+1)
	}
	if free, _, _ := f.locks.PoolCounts(ctx, p.ID); free != 5 {
		t.Fatalf("rebuilt pool has %d free, want 5", free)
	}
}

// The sync lag of a listed pool: last success time and blocks behind per
// pool, a failing pool falling behind as the chain grows, and its cursor
// keeping the last success.
func TestSyncLagMetrics(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	prog := program("lag")
	if _, err := f.chain.AddUTXOs(asset, prog, amounts(2)); err != nil {
		t.Fatal(err)
	}
	p := f.pool(t, prog)
	pool := strconv.FormatInt(p.ID, 10)
	job := f.job()
	r := syncer.NewUTXORunner(job, f.store, time.Millisecond, time.Millisecond)
	start := time.Now()
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	last := testutil.ToFloat64(metrics.SyncLastSuccess.WithLabelValues(pool, syncer.JobUTXO))
	if last < float64(start.Unix())-1 || last > float64(time.Now().Unix())+1 {
		t.Fatalf("last success %v, want about %d", last, start.Unix())
	}
	if got := testutil.ToFloat64(metrics.SyncBlocksBehind.WithLabelValues(pool)); got != 0 {
		t.Fatalf("blocks behind after a success: %v", got)
	}
	if got := testutil.ToFloat64(metrics.ChainTipHeight); got != float64(f.chain.Tip().Height) {
		t.Fatalf("bufferd_chain_tip_height %v, want %d", got, f.chain.Tip().Height)
	}
	tip := f.chain.Tip()

	errorsBefore := testutil.ToFloat64(metrics.SyncRuns.WithLabelValues(syncer.JobUTXO, "error"))
	job.Lister = failingSource{Blockcenter: f.client, program: prog}
	if _, err := f.chain.Mine(3); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // past the 1 ms backoff, a timer with no event to wait on
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if r.Failures(p.ID) != 1 {
		t.Fatalf("failures %d, want 1", r.Failures(p.ID))
	}
	if got := testutil.ToFloat64(metrics.SyncRuns.WithLabelValues(syncer.JobUTXO, "error")); got != errorsBefore+1 {
		t.Fatalf("sync errors %v, want %v", got, errorsBefore+1)
	}
	if got := testutil.ToFloat64(metrics.SyncBlocksBehind.WithLabelValues(pool)); got != 3 {
		t.Fatalf("blocks behind after 3 blocks of failing: %v, want 3", got)
	}
	if got := testutil.ToFloat64(metrics.SyncLastSuccess.WithLabelValues(pool, syncer.JobUTXO)); got != last {
		t.Fatalf("a failure moved the last success: %v -> %v", last, got)
	}
	if got := testutil.ToFloat64(metrics.ChainTipHeight); got != float64(tip.Height+3) {
		t.Fatalf("bufferd_chain_tip_height %v, want %d", got, tip.Height+3)
	}
	cursors, err := f.store.Cursors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, c := range cursors {
		if c.PoolID == p.ID && c.Job == syncer.JobUTXO {
			found = true
			if c.LastError == "" || c.LastSuccess == nil || c.Height != int64(tip.Height) || c.BlockHash != tip.BlockHash {
				t.Fatalf("cursor of the failing pool: %+v, want the error and the last success at height %d", c, tip.Height)
			}
		}
	}
	if !found {
		t.Fatal("no cursor")
	}

	// Recovered: caught up again.
	job.Lister = f.client
	time.Sleep(5 * time.Millisecond) // past the backoff again
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(metrics.SyncBlocksBehind.WithLabelValues(pool)); got != 0 {
		t.Fatalf("blocks behind after recovering: %v", got)
	}
}

// The chain index counts the blocks it applies and the reorganisations it
// rolls back, times its batches, shows the tip and each pool's lag.
func TestIndexMetrics(t *testing.T) {
	f := newFixture(t)
	s := newSource(t, f, "bytomd")
	prog := program("index metrics")
	if _, err := f.chain.AddUTXOs(asset, prog, amounts(2)); err != nil {
		t.Fatal(err)
	}
	p := s.pool(t, asset, prog)
	pool := strconv.FormatInt(p.ID, 10)
	if _, err := f.chain.Mine(30); err != nil {
		t.Fatal(err)
	}
	blocks, reorgs := testutil.ToFloat64(metrics.IndexBlocks), testutil.ToFloat64(metrics.IndexReorgs)
	batches := histogramCount(t, metrics.IndexBatchDuration)
	metrics.SyncBlocksBehind.WithLabelValues(pool).Set(99)
	res := s.pass(t)
	if res.Blocks != 30 {
		t.Fatalf("pass over 30 blocks: %+v", res)
	}
	if got := testutil.ToFloat64(metrics.IndexBlocks); got != blocks+30 {
		t.Errorf("bufferd_index_blocks_total grew by %v, want 30", got-blocks)
	}
	if got := histogramCount(t, metrics.IndexBatchDuration); got <= batches {
		t.Errorf("bufferd_index_batch_duration_seconds has %d observations, had %d", got, batches)
	}
	if got := testutil.ToFloat64(metrics.ChainTipHeight); got != float64(f.chain.Tip().Height) {
		t.Errorf("bufferd_chain_tip_height %v, want %d", got, f.chain.Tip().Height)
	}
	if got := testutil.ToFloat64(metrics.SyncBlocksBehind.WithLabelValues(pool)); got != 0 {
		t.Errorf("blocks behind at the tip: %v", got)
	}
	if _, err := f.chain.Reorg(2, false); err != nil {
		t.Fatal(err)
	}
	blocks = testutil.ToFloat64(metrics.IndexBlocks)
	res = s.pass(t)
	if got := testutil.ToFloat64(metrics.IndexReorgs); got != reorgs+1 || res.Reorgs != 1 {
		t.Errorf("bufferd_index_reorgs_total grew by %v (pass %+v), want 1", got-reorgs, res)
	}
	if got := testutil.ToFloat64(metrics.IndexBlocks); got != blocks+3 || res.Blocks != 3 {
		t.Errorf("bufferd_index_blocks_total grew by %v (pass %+v), want the 3 blocks of the new branch", got-blocks, res)
	}
	if got := testutil.ToFloat64(metrics.ChainTipHeight); got != float64(f.chain.Tip().Height) {
		t.Errorf("bufferd_chain_tip_height %v after the reorg, want %d", got, f.chain.Tip().Height)
	}
}

// bufferd_chain_errors_total counts the failed passes of the index by
// reason: a node nobody listens for is unreachable, one that answers with
// errors an api_error, one of another chain other_chain; the runner keeps
// running and ChainError says why.
func TestChainErrorMetrics(t *testing.T) {
	f := newFixture(t)
	s := newSource(t, f, "bytomd")
	s.pool(t, asset, program("chain errors")) // the index records the chain's genesis
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	_ = ln.Close()
	other := sim.NewNetwork("elsewhere")
	oln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := other.Handler()
	go func() { _ = app.Listener(oln) }()
	t.Cleanup(func() { _ = app.Shutdown() })
	t.Cleanup(http.DefaultTransport.(*http.Transport).CloseIdleConnections) // before the shutdown
	for reason, url := range map[string]string{"unreachable": closed, "api_error": f.url + "/nowhere",
		"other_chain": "http://" + oln.Addr().String()} {
		before := testutil.ToFloat64(metrics.ChainErrors.WithLabelValues(reason))
		r := syncer.Jobs{Store: f.store, Locks: f.locks, Chain: chain.NewBytomd(url),
			Rebuild:  syncer.NewRebuilder(f.store, f.locks, f.rdb, f.prefix, nil),
			Interval: time.Hour, MaxBackoff: 20 * time.Millisecond, IndexPoll: 10 * time.Millisecond}.ForTerm(0)
		stop, done := run(t, r)
		waitFor(t, 5*time.Second, reason+" errors", func() bool {
			return testutil.ToFloat64(metrics.ChainErrors.WithLabelValues(reason)) >= before+2 && r.ChainError() != ""
		})
		select {
		case <-done:
			t.Fatalf("%s: Run returned", reason)
		default:
		}
		if err := stop(); err != nil {
			t.Fatalf("%s: Run: %v", reason, err)
		}
		t.Logf("%s: %s", reason, r.ChainError())
	}
	// Other reasons were not counted for these: the index against the
	// right node counts none.
	counts := map[string]float64{}
	for _, reason := range []string{"unreachable", "api_error", "other_chain", "bad_response"} {
		counts[reason] = testutil.ToFloat64(metrics.ChainErrors.WithLabelValues(reason))
	}
	r := runnerFor(f, "bytomd")
	r.SetIndexPoll(10 * time.Millisecond)
	stop, _ := run(t, r)
	passes := indexPasses()
	waitFor(t, 5*time.Second, "passes", func() bool { return indexPasses() >= passes+3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if r.ChainError() != "" {
		t.Fatalf("chain error against the right node: %s", r.ChainError())
	}
	for reason, n := range counts {
		if got := testutil.ToFloat64(metrics.ChainErrors.WithLabelValues(reason)); got != n {
			t.Errorf("bufferd_chain_errors_total{reason=%q} grew by %v against the right node", reason, got-n)
		}
	}
}

func TestLeaderGauge(t *testing.T) {
	for _, kind := range []string{"blockcenter", "bytomd"} {
		f := newFixture(t)
		r := runnerFor(f, kind)
		changes := testutil.ToFloat64(metrics.SyncLeaderChanges)
		stop, _ := run(t, r)
		waitFor(t, 10*time.Second, "the leader gauge", func() bool { return testutil.ToFloat64(metrics.SyncLeader) == 1 })
		if got := testutil.ToFloat64(metrics.SyncLeaderChanges); got != changes+1 {
			t.Fatalf("%s: leader changes %v, want %v", kind, got, changes+1)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if got := testutil.ToFloat64(metrics.SyncLeader); got != 0 {
			t.Fatalf("%s: leader gauge %v after the runner stopped", kind, got)
		}
	}
}

// Outcomes the syncer decides: expired (the journal's expiry, ExpiryMargin
// after the reservation ran out), spent (the chain spent a submitted
// reservation; also one whose spend later failed: it was seen spent while
// pending), released (its spend failed: the UTXO is back); and, for a
// listed pool, a cursor write refused for a stale epoch is a fencing
// rejection.
func TestSyncerOutcomeCounters(t *testing.T) {
	for _, kind := range []string{"blockcenter", "bytomd"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t)
			s := newSource(t, f, kind)
			prog := contract + "5252"
			if _, err := f.chain.AddUTXOs(gold, prog, amounts(4)); err != nil {
				t.Fatal(err)
			}
			p := s.pool(t, gold, prog)
			expired, spent, released := outcome(metrics.OutcomeExpired), outcome(metrics.OutcomeSpent), outcome(metrics.OutcomeReleased)
			fencing := testutil.ToFloat64(metrics.FencingRejections)

			// Two reservations run out.
			var ending []string
			for range 2 {
				r, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Count: 1, TTL: time.Second})
				if err != nil {
					t.Fatal(err)
				}
				ending = append(ending, r.ID)
			}
			// One is spent on chain, one's transaction fails (gold: its UTXO comes back).
			toSpend, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Count: 1})
			if err != nil {
				t.Fatal(err)
			}
			toFail, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Count: 1})
			if err != nil {
				t.Fatal(err)
			}
			tx1, _, err := f.chain.Spend(toSpend.Hashes(), []sim.Output{{Asset: gold, Program: contract, Amount: 1}}, false)
			if err != nil {
				t.Fatal(err)
			}
			tx2, _, err := f.chain.Spend(toFail.Hashes(), []sim.Output{{Asset: gold, Program: contract, Amount: 1}}, true)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []struct{ id, tx string }{{toSpend.ID, tx1}, {toFail.ID, tx2}} {
				if _, err := f.locks.Submit(ctx, p.ID, s.id, s.tx); err != nil {
					t.Fatal(err)
				}
			}
			s.sync(t)
			if _, err := f.chain.Mine(1); err != nil {
				t.Fatal(err)
			}
			s.sync(t)
			// The two ran out more than ExpiryMargin ago, as the journal sees it.
			waitFor(t, 5*time.Second, "the short reservations to run out", func() bool {
				return time.Now().After(f.journal(t, ending[1]).ExpiresAt)
			})
			err = f.store.DB().Exec(`UPDATE reservations SET expires_at = expires_at - make_interval(secs => ?) WHERE id IN ?`,
				(syncer.ExpiryMargin + time.Second).Seconds(), ending).Error
			if err != nil {
				t.Fatal(err)
			}
			if kind == "blockcenter" {
				// A newer leader's cursor: this runner's write is refused.
				if err := f.store.SaveCursor(ctx, storage.SyncCursor{PoolID: p.ID, Job: syncer.JobUTXO, Epoch: 5}); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.runner.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			for id, want := range map[string]string{ending[0]: storage.ResExpired, ending[1]: storage.ResExpired,
				toSpend.ID: storage.ResSpent, toFail.ID: storage.ResReleased} {
				if got := f.journal(t, id).State; got != want {
					t.Errorf("reservation %s is %s, want %s", id[:8], got, want)
				}
			}
			if got := outcome(metrics.OutcomeExpired); got != expired+2 {
				t.Errorf("expired %v, want %v", got, expired+2)
			}
			if got := outcome(metrics.OutcomeSpent); got != spent+2 {
				t.Errorf("spent %v, want %v", got, spent+2)
			}
			if got := outcome(metrics.OutcomeReleased); got != released+1 {
				t.Errorf("released %v, want %v", got, released+1)
			}
			wantFencing := fencing
			if kind == "blockcenter" {
				wantFencing++
			}
			if got := testutil.ToFloat64(metrics.FencingRejections); got != wantFencing {
				t.Errorf("fencing rejections %v, want %v", got, wantFencing)
			}
		})
	}
}

// repairs reads bufferd_sweep_repairs_total by kind.
func repairs() map[string]float64 {
	out := map[string]float64{}
	for _, k := range []string{"unsettled", "offered", "unoffered", "orphan_hold"} {
		out[k] = testutil.ToFloat64(metrics.SweepRepairs.WithLabelValues(k))
	}
	return out
}

// bufferd_sweep_repairs_total counts what the sweep repaired, by kind: one
// of each here (see sweep_test.go for each repair).
func TestSweepRepairMetrics(t *testing.T) {
	ctx := context.Background()
	sp := newSweepPool(t, "metrics")
	f, p, hs := sp.f, sp.pool, sp.hashes
	// offered: Redis lost hs[0].
	if err := f.rdb.HDel(ctx, f.poolKey(p.ID, "utxo"), hs[0]).Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.rdb.ZRem(ctx, f.poolKey(p.ID, "free"), fmt.Sprintf("%020d:%s", 1000, hs[0])).Err(); err != nil {
		t.Fatal(err)
	}
	// unoffered: the database says hs[1] is spent.
	spender := strings.Repeat("6", 64)
	if err := f.store.DB().Exec(`UPDATE utxos SET state = ?, spent_tx = ? WHERE hash = ?`, storage.StateSpent, spender, hs[1]).Error; err != nil {
		t.Fatal(err)
	}
	// orphan_hold: the journal ended the reservation on hs[2].
	ended, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: hs[2:3]})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.DB().Exec(`UPDATE reservations SET state = ? WHERE id = ?`, storage.ResReleased, ended.ID).Error; err != nil {
		t.Fatal(err)
	}
	// unsettled: the chain spent hs[3] under a live reservation, Settle missed it.
	held, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: hs[3:4]})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.DB().Exec(`UPDATE utxos SET state = ?, spent_tx = ? WHERE hash = ?`, storage.StateSpent, spender, hs[3]).Error; err != nil {
		t.Fatal(err)
	}
	if err := f.locks.ApplyChain(ctx, p.ID, nil, hs[3:4]); err != nil {
		t.Fatal(err)
	}
	before := repairs()
	res, err := sp.sweep.Pool(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := (syncer.SweepResult{Unsettled: 1, Offered: 1, Unoffered: 1, OrphanHolds: 1}); res != want {
		t.Fatalf("sweep repaired %+v, want %+v", res, want)
	}
	after := repairs()
	for kind := range before {
		if got := after[kind] - before[kind]; got != 1 {
			t.Errorf("bufferd_sweep_repairs_total{kind=%q} grew by %v, want 1", kind, got)
		}
	}
	if got := f.journal(t, held.ID).State; got != storage.ResSpent {
		t.Errorf("the unsettled reservation is %s, want spent", got)
	}
	// Nothing left: nothing counted.
	if _, err := sp.sweep.Pool(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	for kind, n := range repairs() {
		if n != after[kind] {
			t.Errorf("a sweep with nothing to repair counted %v %s", n-after[kind], kind)
		}
	}
}

// The leader sets each pool's UTXOs by state and the age of its oldest live
// reservation at most once a sweep interval, and a Runner that stops leading
// drops them.
func TestPoolGauges(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	prog := program("gauges")
	if _, err := f.chain.AddUTXOs(asset, prog, amounts(3)); err != nil {
		t.Fatal(err)
	}
	p := f.pool(t, prog)
	pool := strconv.FormatInt(p.ID, 10)
	// A sweep interval no test outlasts, shortened below once the gauges
	// must be set again.
	r := syncer.NewUTXORunner(f.job(), f.store, time.Millisecond, time.Millisecond)
	r.SetSweepInterval(time.Hour)
	utxos := func(state string) float64 { return testutil.ToFloat64(metrics.PoolUTXOs.WithLabelValues(pool, state)) }
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if utxos("available") != 3 || utxos("reserved") != 0 {
		t.Fatalf("after the sync: available %v reserved %v, want 3 and 0", utxos("available"), utxos("reserved"))
	}
	if age := testutil.ToFloat64(metrics.PoolOldestReservationAge.WithLabelValues(pool)); age != 0 {
		t.Fatalf("oldest reservation age %v without a reservation", age)
	}
	reserveWhenLoaded(t, f, lockmgr.Request{PoolID: p.ID, Count: 1, TTL: time.Minute})
	if err := r.Tick(ctx); err != nil { // within the interval: unchanged
		t.Fatal(err)
	}
	if utxos("reserved") != 0 {
		t.Fatal("pool gauges set again within the sweep interval")
	}
	r.SetSweepInterval(50 * time.Millisecond)
	time.Sleep(100 * time.Millisecond) // past the sweep interval, the reservation ageing meanwhile
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if utxos("available") != 2 || utxos("reserved") != 1 {
		t.Fatalf("after a reservation: available %v reserved %v, want 2 and 1", utxos("available"), utxos("reserved"))
	}
	if age := testutil.ToFloat64(metrics.PoolOldestReservationAge.WithLabelValues(pool)); age < 0.05 || age > 60 {
		t.Fatalf("oldest reservation age %v, want about 0.1 s", age)
	}
	// Run drops the gauges when the term ends.
	rctx, cancel := context.WithCancel(ctx)
	cancel()
	_ = r.Run(rctx)
	if n := testutil.CollectAndCount(metrics.PoolUTXOs); n != 0 {
		t.Fatalf("%d pool series after the term ended", n)
	}
}
