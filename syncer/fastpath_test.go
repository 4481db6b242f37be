package syncer_test

import (
	"context"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/syncer"
)

// dappCycle runs the DApp flow n times on a pool of one UTXO: reserve it, spend
// it with the change back into the pool, submit; and measures how long the
// change takes to become reservable after the submit.
func dappCycle(t testing.TB, f *fixture, n int, give time.Duration) []time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prog := program("fast path")
	if _, err := f.chain.AddUTXOs(asset, prog, []int64{1_000_000}); err != nil {
		t.Fatal(err)
	}
	p := f.pool(t, prog)
	// A tick an hour: only the submit's wake-up can sync the pool in time.
	r := &syncer.Runner{UTXO: f.job(), Interval: time.Hour, MaxBackoff: time.Hour, Wake: f.locks.WatchSubmits(ctx)}
	go func() { _ = r.Run(ctx) }()
	// The runner's first tick loads the pool.
	var res *lockmgr.Reservation
	var err error
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(10 * time.Millisecond) {
		if res, err = f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Count: 1}); !errors.Is(err, lockmgr.ErrRebuilding) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	var lat []time.Duration
	for i := 0; i < n; i++ {
		in := res.Items[0]
		tx, outs, err := f.chain.Spend([]string{in.Hash}, []sim.Output{{Asset: asset, Program: prog, Amount: in.Amount - 1}}, false)
		if err != nil {
			t.Fatal(err)
		}
		submitted := time.Now()
		if _, err := f.locks.Submit(ctx, p.ID, res.ID, tx); err != nil {
			t.Fatal(err)
		}
		for {
			res, err = f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: outs})
			if err == nil {
				break
			}
			if !errors.Is(err, lockmgr.ErrUnknownUTXO) {
				t.Fatal(err)
			}
			if time.Since(submitted) > give {
				t.Fatalf("cycle %d: the change output was not reservable %s after the submit", i, give)
			}
			time.Sleep(2 * time.Millisecond)
		}
		lat = append(lat, time.Since(submitted))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat
}

func TestSubmitMakesTheChangeReservableWithoutWaitingForATick(t *testing.T) {
	lat := dappCycle(t, newFixture(t), 5, 10*time.Second)
	t.Logf("submit -> change reservable: min %s, max %s", lat[0], lat[len(lat)-1])
}

// BenchmarkSubmitToReservable measures the DApp flow's wait between a submit
// and the moment the next client can reserve the change output.
func BenchmarkSubmitToReservable(b *testing.B) {
	lat := dappCycle(b, newFixture(b), b.N, 10*time.Second)
	pct := func(q float64) float64 {
		return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}
