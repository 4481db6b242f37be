package storage_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
)

// recorder is the part of lockmgr.Journal the benchmark drives.
type recorder interface {
	Record(ctx context.Context, r *lockmgr.Reservation) error
}

// naiveJournal records each reservation in its own transaction, as the
// journal did before group commit.
type naiveJournal struct{ s *storage.Store }

func (n naiveJournal) Record(ctx context.Context, r *lockmgr.Reservation) error {
	return n.s.RecordReservation(ctx, storage.JournalRow(r))
}

// BenchmarkJournalRecord measures reservations journalled per second on the
// real PostgreSQL, one goroutine or 64 at once, with group commit (Journal)
// and without (one transaction per reservation).
func BenchmarkJournalRecord(b *testing.B) {
	ctx := context.Background()
	url := testenv.Postgres(b)
	if err := storage.MigrateUp(ctx, url); err != nil {
		b.Fatal(err)
	}
	s, err := storage.Open(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })

	var pools atomic.Int64
	for _, bc := range []struct {
		name    string
		group   bool
		workers int
	}{
		{"sequential", true, 1},
		{"concurrent-64", true, 64},
		{"naive-sequential", false, 1},
		{"naive-concurrent-64", false, 64},
	} {
		b.Run(bc.name, func(b *testing.B) {
			res := benchReservations(b, s, pools.Add(1), b.N)
			var (
				rec recorder = naiveJournal{s}
				j   *storage.Journal
			)
			if bc.group {
				j = storage.NewJournal(s, storage.JournalOptions{})
				defer j.Close()
				rec = j
			}
			b.ResetTimer()
			if bc.workers == 1 {
				for _, r := range res {
					if err := rec.Record(ctx, r); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.SetParallelism((bc.workers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
				var next atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := rec.Record(ctx, res[next.Add(1)-1]); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reservations/s")
			commits := float64(b.N)
			if j != nil {
				commits = float64(j.Batches())
			}
			b.ReportMetric(float64(b.N)/commits, "res/commit")
		})
	}
}

// benchReservations makes a pool with n available UTXOs and n held
// reservations of one UTXO each.
func benchReservations(b *testing.B, s *storage.Store, tag int64, n int) []*lockmgr.Reservation {
	b.Helper()
	ctx := context.Background()
	p, _, err := s.EnsurePool(ctx, assetA, fmt.Sprintf("0014bench%08d", tag))
	if err != nil {
		b.Fatal(err)
	}
	seen := make([]chain.UTXO, n)
	res := make([]*lockmgr.Reservation, n)
	for i := range seen {
		h := fmt.Sprintf("%016x%048x", tag, i)
		seen[i] = chain.UTXO{Hash: h, Amount: 1000, Confirmed: true}
		res[i] = lockRes(p.ID, int64(i+1), h)
	}
	if _, err := s.ReconcilePool(ctx, p, seen); err != nil {
		b.Fatal(err)
	}
	return res
}
