package syncer_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/metrics"
	"github.com/bufferd/bufferd/storage"
)

// indexPasses counts the index passes that succeeded in this process.
func indexPasses() float64 {
	return testutil.ToFloat64(metrics.SyncRuns.WithLabelValues(storage.JobIndex, "success"))
}

// dappCycle runs the DApp flow n times on a pool of one UTXO while the
// runner of kind runs: reserve it, spend it with the change back into the
// pool, submit; and measures how long the change takes to become reservable
// after the submit. With blockcenter the runner ticks once an hour: only the
// submit's wake-up can sync the pool in time. With bytomd the index polls
// the node: the change must be reservable as soon as one pass ran after the
// spend reached the mempool (so nothing else may index in this process
// meanwhile: passes are counted process-wide).
func dappCycle(t testing.TB, kind string, n int, give time.Duration) []time.Duration {
	t.Helper()
	ctx := context.Background()
	f := newFixture(t)
	prog := program("fast path " + kind)
	if _, err := f.chain.AddUTXOs(asset, prog, []uint64{1_000_000}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.store.EnsurePool(ctx, asset, prog, storage.PoolOptions{FromHeight: 1}); err != nil {
		t.Fatal(err)
	}
	p, err := f.store.FindPool(ctx, asset, prog)
	if err != nil {
		t.Fatal(err)
	}
	r := runnerFor(f, kind)
	wctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	if kind == "blockcenter" {
		r.Wake = f.locks.WatchSubmits(wctx)
	}
	stop, _ := run(t, r)
	// The runner's first pass loads the pool.
	res := reserveWhenLoaded(t, f, lockmgr.Request{PoolID: p.ID, Count: 1})
	var lat []time.Duration
	for i := 0; i < n; i++ {
		in := res.Items[0]
		passes := indexPasses() // read before the spend reaches the mempool
		tx, outs, err := f.chain.Spend([]string{in.Hash}, []sim.Output{{Asset: asset, Program: prog, Amount: in.Amount - 1}}, false)
		if err != nil {
			t.Fatal(err)
		}
		submitted := time.Now()
		if _, err := f.locks.Submit(ctx, p.ID, res.ID, tx); err != nil {
			// The syncer may settle the reservation spent by the
			// transaction before the submit reaches the journal: the index
			// sees the spend in the mempool on its own, and the submit
			// wakes the UTXO sync before the journal write. The
			// reservation ended as it should; the submit came late.
			if !errors.Is(err, lockmgr.ErrNotFound) && !errors.Is(err, lockmgr.ErrEnded) {
				t.Fatal(err)
			}
			t.Logf("cycle %d: submit: %v", i, err)
			var row storage.Reservation
			if row, err = f.store.GetReservation(ctx, res.ID); err != nil || row.State != storage.ResSpent || row.TxID != tx {
				t.Fatalf("submit refused: the journal has %+v, %v; want spent by %s", row, err, tx[:8])
			}
		}
		for {
			// A pass that ended before this read began after the spend
			// when it is the second to end since.
			after := indexPasses() >= passes+2
			res, err = f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: outs})
			if err == nil {
				break
			}
			if !errors.Is(err, lockmgr.ErrUnknownUTXO) {
				t.Fatal(err)
			}
			if kind == "bytomd" && after {
				t.Fatalf("cycle %d: a whole index pass ran after the spend reached the mempool and the change is not reservable", i)
			}
			if time.Since(submitted) > give {
				t.Fatalf("cycle %d: the change output was not reservable %s after the submit", i, give)
			}
			time.Sleep(2 * time.Millisecond) // a poll at the resolution of the latency measured (also by the benchmark)
		}
		lat = append(lat, time.Since(submitted))
	}
	if err := stop(); err != nil {
		t.Fatalf("runner: %v", err)
	}
	slices.Sort(lat)
	return lat
}

func TestSubmitMakesTheChangeReservableWithoutWaitingForATick(t *testing.T) {
	for _, kind := range []string{"blockcenter", "bytomd"} {
		t.Run(kind, func(t *testing.T) {
			lat := dappCycle(t, kind, 5, 10*time.Second)
			t.Logf("submit -> change reservable: min %s, max %s", lat[0], lat[len(lat)-1])
		})
	}
}

// BenchmarkSubmitToReservable measures the DApp flow's wait between a submit
// and the moment the next client can reserve the change output: with
// blockcenter the submit wakes the UTXO sync; with bytomd the index polls
// the node every DefaultIndexPoll.
func BenchmarkSubmitToReservable(b *testing.B) {
	for _, kind := range []string{"blockcenter", "bytomd"} {
		b.Run(kind, func(b *testing.B) {
			lat := dappCycle(b, kind, b.N, 10*time.Second)
			pct := func(q float64) float64 {
				return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.5), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
