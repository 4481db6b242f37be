package syncer_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/metrics"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

func outcome(t *testing.T, o string) float64 {
	t.Helper()
	return testutil.ToFloat64(metrics.ReservationOutcomes.WithLabelValues(o))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
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
	waitFor(t, "Rebuilding() during the rebuild", rb.Rebuilding)
	time.Sleep(50 * time.Millisecond)
	if !rb.Rebuilding() {
		t.Fatal("Rebuilding() went false while the snapshot is blocked")
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
	if got := testutil.ToFloat64(metrics.RedisRebuilds); got != rebuildsBefore+1 {
		t.Fatalf("bufferd_redis_rebuilds_total %v, want %v", got, rebuildsBefore+1)
	}
	if free, _, _ := f.locks.PoolCounts(ctx, p.ID); free != 5 {
		t.Fatalf("rebuilt pool has %d free, want 5", free)
	}
}

// The sync lag: last success time and blocks behind per pool, a failing pool
// falling behind as the chain grows, and its cursor keeping the last success.
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
	r := &syncer.Runner{UTXO: job, Interval: time.Millisecond, MaxBackoff: time.Millisecond}
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
	tip := f.chain.Tip()

	errorsBefore := testutil.ToFloat64(metrics.SyncRuns.WithLabelValues(syncer.JobUTXO, "error"))
	job.Chain = failingSource{Source: f.client, program: prog}
	if _, err := f.chain.Mine(3); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // past the backoff
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
	job.Chain = f.client
	time.Sleep(5 * time.Millisecond)
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(metrics.SyncBlocksBehind.WithLabelValues(pool)); got != 0 {
		t.Fatalf("blocks behind after recovering: %v", got)
	}
}

func TestLeaderGauge(t *testing.T) {
	f := newFixture(t)
	r := &syncer.Runner{UTXO: f.job(), Interval: time.Hour, MaxBackoff: time.Hour}
	changes := testutil.ToFloat64(metrics.SyncLeaderChanges)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	waitFor(t, "the leader gauge", func() bool { return testutil.ToFloat64(metrics.SyncLeader) == 1 })
	if got := testutil.ToFloat64(metrics.SyncLeaderChanges); got != changes+1 {
		t.Fatalf("leader changes %v, want %v", got, changes+1)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(metrics.SyncLeader); got != 0 {
		t.Fatalf("leader gauge %v after the runner stopped", got)
	}
}

// Outcomes the syncer decides: expired (journal sweep), spent (the chain spent
// a submitted reservation), released (its transaction failed); and a cursor
// write refused for a stale epoch is a fencing rejection.
func TestSyncerOutcomeCounters(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	prog := program("outcomes")
	if _, err := f.chain.AddUTXOs(asset, prog, amounts(4)); err != nil {
		t.Fatal(err)
	}
	p := f.pool(t, prog)
	job := f.job()
	r := &syncer.Runner{UTXO: job, Interval: time.Millisecond, MaxBackoff: time.Millisecond,
		Submitted: &syncer.SubmittedCheck{Store: f.store, Locks: f.locks, Chain: f.client}}
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	expired, spent, released := outcome(t, metrics.OutcomeExpired), outcome(t, metrics.OutcomeSpent), outcome(t, metrics.OutcomeReleased)
	fencing := testutil.ToFloat64(metrics.FencingRejections)

	// Two reservations run out.
	for range 2 {
		if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Count: 1, TTL: time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	// One is spent on chain, one's transaction fails.
	toSpend, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	toFail, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	tx1, _, err := f.chain.Spend(toSpend.Hashes(), []sim.Output{{Asset: asset, Program: program("payee"), Amount: 1}}, false)
	if err != nil {
		t.Fatal(err)
	}
	other, err := f.chain.AddUTXOs(asset, program("elsewhere"), []int64{5})
	if err != nil {
		t.Fatal(err)
	}
	tx2, _, err := f.chain.Spend(other, []sim.Output{{Asset: asset, Program: prog, Amount: 5}}, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct{ id, tx string }{{toSpend.ID, tx1}, {toFail.ID, tx2}} {
		if _, err := f.locks.Submit(ctx, p.ID, s.id, s.tx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	// A newer leader's cursor: this runner's write is refused.
	if err := f.store.SaveCursor(ctx, storage.SyncCursor{PoolID: p.ID, Job: syncer.JobUTXO, Epoch: 5}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the 1 s reservations end
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if got := outcome(t, metrics.OutcomeExpired); got != expired+2 {
		t.Errorf("expired %v, want %v", got, expired+2)
	}
	if got := outcome(t, metrics.OutcomeSpent); got != spent+1 {
		t.Errorf("spent %v, want %v", got, spent+1)
	}
	if got := outcome(t, metrics.OutcomeReleased); got != released+1 {
		t.Errorf("released %v, want %v", got, released+1)
	}
	if got := testutil.ToFloat64(metrics.FencingRejections); got != fencing+1 {
		t.Errorf("fencing rejections %v, want %v", got, fencing+1)
	}
}
