package storage_test

import (
	"errors"
	"testing"
	"time"

	"github.com/bufferd/bufferd/storage"
)

func TestBalances(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		add := func(addr, asset string, amount int64) {
			t.Helper()
			if err := s.AddBalance(ctx, storage.Balance{Address: addr, Asset: asset, Amount: amount, TxID: "tx"}); err != nil {
				t.Fatalf("AddBalance: %v", err)
			}
		}
		add("alice", assetA, 10)
		add("alice", assetB, 20)
		add("bob", assetA, 30)
		add("alice", assetA, -5)
		add("alice", assetA, 7)

		for _, in := range [][2]string{{"", ""}, {"alice", ""}, {"", assetA}, {"  ", " "}} {
			if _, err := s.ListBalances(ctx, in[0], in[1]); !errors.Is(err, storage.ErrAddressAssetRequired) {
				t.Errorf("ListBalances(%q, %q): err = %v, want ErrAddressAssetRequired", in[0], in[1], err)
			}
		}
		if err := s.AddBalance(ctx, storage.Balance{Asset: assetA}); !errors.Is(err, storage.ErrAddressAssetRequired) {
			t.Errorf("AddBalance without address: err = %v", err)
		}
		if bs, err := s.ListBalances(ctx, "' OR '1'='1", assetA); err != nil || len(bs) != 0 {
			t.Errorf("injection-looking address lists %d rows, %v", len(bs), err)
		}

		pending, err := s.PendingBalances(ctx, 0)
		if err != nil || len(pending) != 5 {
			t.Fatalf("PendingBalances = %d, %v", len(pending), err)
		}
		for _, b := range pending {
			if b.State != storage.BalancePending || b.StatusFail {
				t.Fatalf("new row not pending: %+v", b)
			}
		}
		if two, _ := s.PendingBalances(ctx, 2); len(two) != 2 || two[0].ID >= two[1].ID {
			t.Errorf("PendingBalances(2) = %+v", two)
		}
		// Reject the -5 row, confirm the 10 row as failed.
		var minus, ten int64
		for _, b := range pending {
			switch {
			case b.Address == "alice" && b.Asset == assetA && b.Amount == -5:
				minus = b.ID
			case b.Address == "alice" && b.Asset == assetA && b.Amount == 10:
				ten = b.ID
			}
		}
		if err := s.SetBalanceState(ctx, []int64{minus}, storage.BalanceRejected, false); err != nil {
			t.Fatal(err)
		}
		if err := s.SetBalanceState(ctx, []int64{ten}, storage.BalanceConfirmed, true); err != nil {
			t.Fatal(err)
		}
		if err := s.SetBalanceState(ctx, []int64{ten}, "bogus", true); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("SetBalanceState(bogus): err = %v", err)
		}

		bs, err := s.ListBalances(ctx, "alice", assetA)
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) != 2 || bs[0].Amount != 7 || bs[1].Amount != 10 {
			t.Fatalf("ListBalances(alice, A) = %+v, want the 7 then the 10 row", bs)
		}
		if bs[1].State != storage.BalanceConfirmed || !bs[1].StatusFail {
			t.Errorf("confirmed row: %+v", bs[1])
		}
		for _, b := range bs {
			if b.Address != "alice" || b.Asset != assetA {
				t.Errorf("row of another address or asset listed: %+v", b)
			}
		}
		if p, _ := s.PendingBalances(ctx, 0); len(p) != 3 {
			t.Errorf("%d pending rows left, want 3", len(p))
		}
	})
}

func TestCursors(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		ok := time.Now()
		save := func(c storage.SyncCursor) error { return s.SaveCursor(ctx, c) }
		if err := save(storage.SyncCursor{PoolID: p.ID, Job: "utxo", Height: 10, Epoch: 1, LastSuccess: &ok}); err != nil {
			t.Fatal(err)
		}
		if err := save(storage.SyncCursor{PoolID: 0, Job: "chain", Height: 5, Epoch: 1}); err != nil {
			t.Fatal(err)
		}
		if err := save(storage.SyncCursor{PoolID: p.ID, Job: "utxo", Height: 11, Epoch: 2, LastError: "boom"}); err != nil {
			t.Fatalf("newer epoch: %v", err)
		}
		err := save(storage.SyncCursor{PoolID: p.ID, Job: "utxo", Height: 99, Epoch: 1})
		if !errors.Is(err, storage.ErrStaleFence) {
			t.Fatalf("older epoch: err = %v, want ErrStaleFence", err)
		}
		if err := save(storage.SyncCursor{PoolID: p.ID, Job: ""}); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("empty job: err = %v", err)
		}
		cs, err := s.Cursors(ctx)
		if err != nil || len(cs) != 2 {
			t.Fatalf("Cursors = %+v, %v", cs, err)
		}
		if cs[0].Job != "chain" || cs[1].Height != 11 || cs[1].Epoch != 2 || cs[1].LastError != "boom" || cs[1].LastSuccess != nil {
			t.Fatalf("Cursors = %+v", cs)
		}
	})
}
