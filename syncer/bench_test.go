package syncer_test

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

// bigPool is the size of the pool the sync benchmarks use.
const bigPool = 100_000

// heapPeak samples the bytes of live heap objects every millisecond until
// stopped and returns the highest value seen. The simulated chain lives in the
// same process, so the benchmarks report the peak above a baseline taken
// after setup and a GC: the memory the sync itself needed.
func heapPeak() (stop func() uint64) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	var (
		mu   sync.Mutex
		peak = read()
		done = make(chan struct{})
		over = make(chan struct{})
	)
	go func() {
		defer close(over)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				v := read()
				mu.Lock()
				peak = max(peak, v)
				mu.Unlock()
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-over
		mu.Lock()
		defer mu.Unlock()
		return max(peak, read())
	}
}

func baselineHeap() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// above is peak - base in MiB (0 when the GC brought the heap below the
// baseline).
func above(peak, base uint64) float64 {
	if peak < base {
		return 0
	}
	return float64(peak-base) / (1 << 20)
}

// BenchmarkFullSync100k syncs a new listed pool of 100,000 UTXOs from
// scratch: every page from the simulator (blockcenter) over loopback, the
// reconcile in PostgreSQL and the load into Redis.
//
//	go test -run '^$' -bench Sync100k -benchtime 3x ./syncer
func BenchmarkFullSync100k(b *testing.B) {
	ctx := context.Background()
	f := newFixture(b)
	var peakMB, stmts float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		prog := program(fmt.Sprintf("full-%d", i))
		if _, err := f.chain.AddUTXOs(asset, prog, amounts(bigPool)); err != nil {
			b.Fatal(err)
		}
		p := f.pool(b, prog)
		base := baselineHeap()
		b.StartTimer()
		stop := heapPeak()
		res, err := f.job().SyncPool(ctx, p)
		peak := stop()
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Added) != bigPool {
			b.Fatalf("added %d, want %d", len(res.Added), bigPool)
		}
		if free, _, err := f.locks.PoolCounts(ctx, p.ID); err != nil || free != bigPool {
			b.Fatalf("redis offers %d, %v; want %d", free, err, bigPool)
		}
		peakMB = max(peakMB, above(peak, base))
		stmts = float64(res.Statements)
	}
	b.ReportMetric(peakMB, "peak-heap-MB")
	b.ReportMetric(stmts, "statements")
	b.ReportMetric(float64(bigPool)*float64(b.N)/b.Elapsed().Seconds(), "utxos/s")
}

// BenchmarkIncrementalSync100k syncs a listed pool of 100,000 UTXOs after
// 100 changes on chain (50 spent with 50 new outputs back into the pool),
// and fails unless that takes as many statements as a single change.
func BenchmarkIncrementalSync100k(b *testing.B) {
	ctx := context.Background()
	f := newFixture(b)
	prog := program("incremental")
	hashes, err := f.chain.AddUTXOs(asset, prog, amounts(bigPool))
	if err != nil {
		b.Fatal(err)
	}
	p := f.pool(b, prog)
	job := f.job()
	if _, err := job.SyncPool(ctx, p); err != nil {
		b.Fatal(err)
	}
	next := 0
	spend := func(n int) {
		var outs []sim.Output
		for j := 0; j < n; j++ {
			outs = append(outs, sim.Output{Asset: asset, Program: prog, Amount: uint64(500 + j)})
		}
		if _, _, err := f.chain.Spend(hashes[next:next+n], outs, false); err != nil {
			b.Fatal(err)
		}
		next += n
	}
	spend(1)
	one, err := job.SyncPool(ctx, p)
	if err != nil {
		b.Fatal(err)
	}
	var peakMB float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		spend(50)
		base := baselineHeap()
		b.StartTimer()
		stop := heapPeak()
		res, err := job.SyncPool(ctx, p)
		peak := stop()
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Spent) != 50 || len(res.Added) != 50 {
			b.Fatalf("100 changes: spent %d added %d", len(res.Spent), len(res.Added))
		}
		if res.Statements != one.Statements {
			b.Fatalf("statements: 1 change -> %d, 100 changes -> %d", one.Statements, res.Statements)
		}
		peakMB = max(peakMB, above(peak, base))
	}
	b.ReportMetric(float64(one.Statements), "statements")
	b.ReportMetric(peakMB, "peak-heap-MB")
}

// BenchmarkUnchangedSync100k syncs a listed pool of 100,000 UTXOs that
// nothing changed: "remembered" by the job that synced it last (which skips
// reading the pool back), "fresh" by a new job each time (which reads it back
// and compares, as every sync did before the skip).
//
//	go test -run '^$' -bench UnchangedSync100k -benchtime 5x ./syncer
func BenchmarkUnchangedSync100k(b *testing.B) {
	ctx := context.Background()
	f := newFixture(b)
	prog := program("unchanged")
	if _, err := f.chain.AddUTXOs(asset, prog, amounts(bigPool)); err != nil {
		b.Fatal(err)
	}
	p := f.pool(b, prog)
	job := f.job()
	for range 2 { // the second finds nothing to change and marks the pool quiet
		if _, err := job.SyncPool(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
	p, err := f.store.GetPool(ctx, p.ID)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		job     func() *syncer.UTXOSync
		skipped bool
	}{{"remembered", func() *syncer.UTXOSync { return job }, true}, {"fresh", f.job, false}} {
		b.Run(c.name, func(b *testing.B) {
			var peakMB float64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				j := c.job()
				base := baselineHeap()
				b.StartTimer()
				stop := heapPeak()
				res, err := j.SyncPool(ctx, p)
				peak := stop()
				if err != nil {
					b.Fatal(err)
				}
				if res.Unchanged != c.skipped || res.Changes() != 0 {
					b.Fatalf("%+v, want skipped=%v and no change", res, c.skipped)
				}
				peakMB = max(peakMB, above(peak, base))
			}
			b.ReportMetric(peakMB, "peak-heap-MB")
		})
	}
}

// indexBlocks is how many blocks the 100,000 UTXOs of the index benchmark
// are spread over.
const indexBlocks = 100

// BenchmarkIndex100k indexes a new pool of 100,000 UTXOs created over 100
// blocks, from its from_height to the tip: every block read from the
// simulated node (bytomd) over loopback, applied in PostgreSQL in batches,
// and the pool loaded into Redis once it reached the tip.
//
//	go test -run '^$' -bench Index100k -benchtime 3x ./syncer
func BenchmarkIndex100k(b *testing.B) {
	ctx := context.Background()
	f := newFixture(b)
	var peakMB float64
	var passes int
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		prog := program(fmt.Sprintf("index-%d", i))
		from := int64(f.chain.Tip().Height) + 1
		per := bigPool / indexBlocks
		for range indexBlocks {
			if _, err := f.chain.AddUTXOs(asset, prog, amounts(per)); err != nil {
				b.Fatal(err)
			}
		}
		p, _, err := f.store.EnsurePool(ctx, asset, prog, storage.PoolOptions{FromHeight: from})
		if err != nil {
			b.Fatal(err)
		}
		x := runnerFor(f, "bytomd").ChainIndex()
		base := baselineHeap()
		b.StartTimer()
		stop := heapPeak()
		for passes = 1; ; passes++ {
			if _, err := x.Pass(ctx); err != nil {
				b.Fatal(err)
			}
			got, err := f.store.GetPool(ctx, p.ID)
			if err != nil {
				b.Fatal(err)
			}
			if got.SyncedAt != nil {
				break
			}
		}
		peak := stop()
		b.StopTimer()
		if c, err := f.store.PoolCounts(ctx); err != nil || c[p.ID].Available != bigPool {
			b.Fatalf("indexed %+v, %v; want %d available", c[p.ID], err, bigPool)
		}
		if free, _, err := f.locks.PoolCounts(ctx, p.ID); err != nil || free != bigPool {
			b.Fatalf("redis offers %d, %v; want %d", free, err, bigPool)
		}
		peakMB = max(peakMB, above(peak, base))
		b.StartTimer()
	}
	b.ReportMetric(peakMB, "peak-heap-MB")
	b.ReportMetric(float64(passes), "passes")
	b.ReportMetric(float64(bigPool)*float64(b.N)/b.Elapsed().Seconds(), "utxos/s")
	b.ReportMetric(float64(indexBlocks)*float64(b.N)/b.Elapsed().Seconds(), "blocks/s")
}
