package lockmgr_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
)

// redisCPU returns the CPU time the Redis server has used so far, in
// microseconds (INFO's used_cpu_sys and used_cpu_user, main thread and all).
func redisCPU(b testing.TB, rdb redis.UniversalClient) float64 {
	b.Helper()
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatal(err)
			}
			total += f
		}
	}
	return total * 1e6
}

// BenchmarkReserveRelease runs reserve (one UTXO by count) and release one
// after the other on a pool of 20,000 UTXOs, without a journal: what the two
// scripts cost. redis-µs/cycle is the Redis server's CPU per cycle.
func BenchmarkReserveRelease(b *testing.B) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(b)
	m := lockmgr.New(rdb, lockmgr.Options{Prefix: prefix})
	if err := m.LoadAvailable(ctx, 1, items(20000)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	before := redisCPU(b, rdb)
	for i := 0; i < b.N; i++ {
		r, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 1})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.Release(ctx, 1, r.ID); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric((redisCPU(b, rdb)-before)/float64(b.N), "redis-µs/cycle")
}

// BenchmarkCombineReserve runs combine reserves (then releases) of k UTXOs on
// pools of n UTXOs whose amounts are all distinct and none covers the amount
// alone. redis-µs/reserve is the Redis server's CPU per cycle; worst-ms the
// slowest cycle: how long one script can hold Redis for every other client.
func BenchmarkCombineReserve(b *testing.B) {
	for _, c := range []struct{ n, k int }{{300, 3}, {300, 6}, {2000, 2}, {2000, 3}, {20000, 2}, {20000, 3}, {20000, 5}, {100000, 2}} {
		b.Run(fmt.Sprintf("utxos=%d/needed=%d", c.n, c.k), func(b *testing.B) {
			ctx := context.Background()
			rdb, prefix := testenv.Redis(b)
			m := lockmgr.New(rdb, lockmgr.Options{Prefix: prefix})
			its := items(c.n)
			if err := m.LoadAvailable(ctx, 1, its); err != nil {
				b.Fatal(err)
			}
			want := uint64(c.k-1)*its[c.n-1].Amount + 15
			var worst time.Duration
			b.ResetTimer()
			before := redisCPU(b, rdb)
			for i := 0; i < b.N; i++ {
				start := time.Now()
				r, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Amount: want, Combine: true})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := m.Release(ctx, 1, r.ID); err != nil {
					b.Fatal(err)
				}
				worst = max(worst, time.Since(start))
			}
			b.StopTimer()
			b.ReportMetric((redisCPU(b, rdb)-before)/float64(b.N), "redis-µs/reserve")
			b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
		})
	}
}

// BenchmarkLargePoolStall applies a 100,000-UTXO pool's chain changes, loads
// it and reads what Redis offers, while another client sends PING after PING:
// *-ms is the slowest PING during each, how long the bulk work kept Redis
// from everyone else.
func BenchmarkLargePoolStall(b *testing.B) {
	const n = 100000
	ctx := context.Background()
	rdb, prefix := testenv.Redis(b)
	m := lockmgr.New(rdb, lockmgr.Options{Prefix: prefix})
	its := items(n)
	var apply, load, offered time.Duration
	for i := 0; i < b.N; i++ {
		apply = max(apply, slowestPing(b, func() error { return m.ApplyChain(ctx, 1, its, nil) }))
		load = max(load, slowestPing(b, func() error { return m.LoadAvailable(ctx, 1, its) }))
		offered = max(offered, slowestPing(b, func() error { _, err := m.Offered(ctx, 1); return err }))
	}
	b.ReportMetric(float64(apply.Microseconds())/1000, "apply-ms")
	b.ReportMetric(float64(load.Microseconds())/1000, "load-ms")
	b.ReportMetric(float64(offered.Microseconds())/1000, "offered-ms")
}

// slowestPing runs f while a client of its own sends PING after PING, and
// returns the slowest.
func slowestPing(b *testing.B, f func() error) time.Duration {
	b.Helper()
	rdb, _ := testenv.Redis(b)
	ctx, stop := context.WithCancel(context.Background())
	slowest := make(chan time.Duration)
	go func() {
		var s time.Duration
		for ctx.Err() == nil {
			start := time.Now()
			_ = rdb.Ping(context.Background()).Err()
			s = max(s, time.Since(start))
		}
		slowest <- s
	}()
	err := f()
	stop()
	if err != nil {
		b.Fatal(err)
	}
	return <-slowest
}
