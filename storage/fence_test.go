package storage_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bufferd/bufferd/storage"
)

// Every write of a sync job made through a store fenced with an ended term's
// epoch is rolled back with ErrStaleEpoch; the current term's store writes.
func TestFencedWritesOfAnEndedTermAreRefused(t *testing.T) {
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		mustReconcile(t, s, p, chainUTXOs(p, 1, 0, 4))
		t0 := time.Now().UTC().Truncate(time.Second)
		res := storage.Reservation{ID: strings.Repeat("f", 32), PoolID: p.ID, Fence: 1,
			Hashes: hashOf(1, 0), CreatedAt: t0, ExpiresAt: t0.Add(-time.Second)}
		res2 := storage.Reservation{ID: strings.Repeat("e", 32), PoolID: p.ID, Fence: 2,
			Hashes: hashOf(1, 2), CreatedAt: t0, ExpiresAt: t0.Add(time.Minute)}
		for _, r := range []storage.Reservation{res, res2} {
			if err := s.RecordReservation(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.AddBalance(ctx, storage.Balance{Address: "bm1q", Asset: assetA, Amount: 5, TxID: strings.Repeat("b", 64)}); err != nil {
			t.Fatal(err)
		}
		old, err := s.NewTerm(ctx, "sync", "a")
		if err != nil {
			t.Fatal(err)
		}
		stale := s.Fenced("sync", old)
		if _, err := s.NewTerm(ctx, "sync", "b"); err != nil {
			t.Fatal(err)
		}
		before := snapshotRows(t, s)

		// In an order in which each write changes something when it lands.
		writes := []struct {
			name  string
			write func(st *storage.Store) error
		}{
			{"UpdateReservation", func(st *storage.Store) error {
				return st.UpdateReservation(ctx, res.ID, storage.ReservationUpdate{Fence: 1, ExpiresAt: t0.Add(time.Hour)})
			}},
			{"ReconcilePool", func(st *storage.Store) error {
				_, err := st.ReconcilePool(ctx, p, chainUTXOs(p, 1, 1, 4))
				return err
			}},
			{"SettleSpent", func(st *storage.Store) error {
				_, err := st.SettleSpent(ctx, p.ID, []string{hashOf(1, 0)})
				return err
			}},
			{"ExpireReservations", func(st *storage.Store) error {
				_, err := st.ExpireReservations(ctx, time.Now().Add(2*time.Hour))
				return err
			}},
			{"SetBalanceState", func(st *storage.Store) error {
				return st.SetBalanceState(ctx, []int64{1}, storage.BalanceConfirmed, false)
			}},
			{"SaveCursor", func(st *storage.Store) error {
				return st.SaveCursor(ctx, storage.SyncCursor{PoolID: p.ID, Job: "utxo", Height: 9})
			}},
			{"ApplyBlock", func(st *storage.Store) error {
				return st.ApplyBlock(ctx, p.ID, storage.BlockHeader{Height: 7, Hash: strings.Repeat("7", 64), Time: t0},
					[]storage.CrawledTx{{TxID: strings.Repeat("c", 64), Spends: []string{hashOf(1, 3)}}})
			}},
			{"RollbackCrawl", func(st *storage.Store) error {
				_, err := st.RollbackCrawl(ctx, p.ID, 6, "")
				return err
			}},
		}
		for _, w := range writes {
			if err := w.write(stale); !errors.Is(err, storage.ErrStaleEpoch) {
				t.Errorf("%s through the ended term: err = %v, want ErrStaleEpoch", w.name, err)
			}
		}
		if after := snapshotRows(t, s); after != before {
			t.Fatalf("refused writes changed the database:\nbefore %s\nafter  %s", before, after)
		}
		// A write in flight is not cut short by its context's cancellation:
		// the fence alone decides.
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := stale.SaveCursor(cctx, storage.SyncCursor{PoolID: p.ID, Job: "utxo"}); !errors.Is(err, storage.ErrStaleEpoch) {
			t.Errorf("cancelled stale write: err = %v, want ErrStaleEpoch", err)
		}
		current := s.Fenced("sync", old+1)
		for _, w := range writes {
			prev := snapshotRows(t, s)
			if err := w.write(current); err != nil {
				t.Errorf("%s through the current term: %v", w.name, err)
			}
			if w.name != "UpdateReservation" && snapshotRows(t, s) == prev {
				t.Errorf("%s through the current term changed nothing", w.name)
			}
		}
	})
}

// snapshotRows renders the rows sync jobs write, timestamps left out.
func snapshotRows(t *testing.T, s *storage.Store) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{
		`SELECT hash || ':' || state || ':' || confirmed FROM utxos ORDER BY hash`,
		`SELECT id || ':' || state FROM reservations ORDER BY id`,
		`SELECT id || ':' || state FROM balances ORDER BY id`,
		`SELECT pool_id || ':' || job || ':' || height || ':' || epoch FROM sync_cursors ORDER BY pool_id, job`,
	} {
		var rows []string
		if err := s.DB().Raw(q).Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		b.WriteString(strings.Join(rows, ",") + ";")
	}
	return b.String()
}
