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
	t.Parallel()
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
		blk := block(1, 7)
		blk.Outputs = []storage.IndexedOutput{output(p, hashOf(1, 8), 8, txOf(1, 8), 7)}
		blk.Outputs[0].State, blk.Outputs[0].ValidHeight = storage.StateImmature, 50
		blk.Spends = []storage.IndexedSpend{{PoolID: p.ID, Hash: hashOf(1, 1), TxID: txOf(1, 7), Height: 7}}
		blk.Txs = map[int64][]storage.CrawledTx{p.ID: {{TxID: txOf(1, 7)}}}
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
			{"Settle", func(st *storage.Store) error {
				_, err := st.Settle(ctx, p.ID, []string{hashOf(1, 0)})
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
			{"ChangeUTXOs", func(st *storage.Store) error {
				return st.ChangeUTXOs(ctx, []storage.IndexedOutput{output(p, hashOf(1, 9), 9, "", 0)},
					[]storage.UTXOChange{{PoolID: p.ID, Hash: hashOf(1, 3), State: storage.StateSpent, SpentTx: txOf(1, 3)}})
			}},
			{"ApplyBlocks", func(st *storage.Store) error {
				_, err := st.ApplyBlocks(ctx, []int64{p.ID}, []storage.IndexedBlock{blk})
				return err
			}},
			{"MatureUTXOs", func(st *storage.Store) error {
				_, err := st.MatureUTXOs(ctx, 100)
				return err
			}},
			{"RollbackIndex", func(st *storage.Store) error {
				_, err := st.RollbackIndex(ctx, 6, blockHash(1, 6))
				return err
			}},
			{"NoteCreatedTx", func(st *storage.Store) error {
				return st.NoteCreatedTx(ctx, p.ID, txOf(1, 9), []string{hashOf(1, 9)})
			}},
			{"FailLineage", func(st *storage.Store) error {
				_, err := st.FailLineage(ctx, p.ID, txOf(1, 9), nil)
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
		// What the current term's writes did, in order.
		if got := mustReservation(t, s, res.ID); got.State != storage.ResSpent {
			t.Errorf("reservation on the spent utxo is %s, want spent (it was extended first)", got.State)
		}
		if got := mustReservation(t, s, res2.ID); got.State != storage.ResExpired {
			t.Errorf("reservation past its expiry is %s, want expired", got.State)
		}
		wantStates(t, "after the current term's writes", statesOf(t, s, hashOf(1, 8), hashOf(1, 9)),
			map[string]string{hashOf(1, 8): storage.StateAvailable, hashOf(1, 9): storage.StateInvalidated})
	})
}

// snapshotRows renders the rows sync jobs write, timestamps left out.
func snapshotRows(t *testing.T, s *storage.Store) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{
		`SELECT hash || ':' || state || ':' || confirmed || ':' || height || ':' || valid_height || ':' || spent_height
			|| ':' || created_tx || ':' || spent_tx FROM utxos ORDER BY hash`,
		`SELECT id || ':' || state || ':' || tx_id || ':' || fence FROM reservations ORDER BY id`,
		`SELECT id || ':' || state FROM balances ORDER BY id`,
		`SELECT pool_id || ':' || job || ':' || height || ':' || block_hash || ':' || epoch FROM sync_cursors ORDER BY pool_id, job`,
		`SELECT pool_id || ':' || tx_id || ':' || height FROM transactions ORDER BY pool_id, tx_id`,
		`SELECT height || ':' || hash FROM chain_blocks ORDER BY height`,
	} {
		var rows []string
		if err := s.DB().Raw(q).Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		b.WriteString(strings.Join(rows, ",") + ";")
	}
	return b.String()
}
