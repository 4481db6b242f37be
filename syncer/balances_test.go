package syncer_test

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

// balanceRows are every legacy balance row, by id, and the ids in order.
func balanceRows(t *testing.T, f *fixture) (map[int64]storage.Balance, []int64) {
	t.Helper()
	var rows []storage.Balance
	if err := f.store.DB().Order("id").Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	out := map[int64]storage.Balance{}
	var ids []int64
	for _, r := range rows {
		out[r.ID] = r
		ids = append(ids, r.ID)
	}
	return out, ids
}

// The original stored whatever update-balance was sent (flaw 6) and left rows of
// unknown transactions unconfirmed forever (flaw 8). Both sources answer
// the transaction look-ups.
func TestBalanceRowsCountOnlyWhenTheChainAgrees(t *testing.T) {
	t.Parallel()
	eachSource(t, func(t *testing.T, s *source) {
		ctx := context.Background()
		f := s.f
		user, pool, other := program("alice"), program("pool"), program("mallory")
		alice, mallory := sim.Address(user), sim.Address(other)
		funds, err := f.chain.AddUTXOs(asset, user, []uint64{1000})
		if err != nil {
			t.Fatal(err)
		}
		// Alice deposits 600 into the pool and gets 400 back.
		tx, _, err := f.chain.Spend(funds, []sim.Output{{Asset: asset, Program: pool, Amount: 600}, {Asset: asset, Program: user, Amount: 400}}, false)
		if err != nil {
			t.Fatal(err)
		}
		unknown := strings.Repeat("ab", 32)
		add := func(address string, amount int64, txID string) {
			t.Helper()
			if err := f.store.AddBalance(ctx, storage.Balance{Address: address, Asset: asset, Amount: amount, TxID: txID}); err != nil {
				t.Fatal(err)
			}
		}
		add(alice, -600, tx)      // 1: true
		add(alice, -600, tx)      // 2: the same tx id backing a second row
		add(mallory, 5000, tx)    // 3: an address the tx does not touch
		add(alice, -600, unknown) // 4: a tx the chain never saw
		_, ids := balanceRows(t, f)
		job := s.runner.Balances()
		job.UnknownTxTTL = time.Hour

		// Pending on chain: nothing is decided yet.
		out, err := job.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if out.Pending != 4 || out.Confirmed+out.Rejected+out.Expired != 0 {
			t.Fatalf("before mining: %+v", out)
		}
		if _, err := f.chain.Mine(1); err != nil {
			t.Fatal(err)
		}
		out, err = job.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if out.Confirmed != 1 || out.Rejected != 2 || out.Pending != 1 || out.Expired != 0 {
			t.Fatalf("after mining: %+v", out)
		}
		st, _ := balanceRows(t, f)
		want := []string{storage.BalanceConfirmed, storage.BalanceRejected, storage.BalanceRejected, storage.BalancePending}
		for i, id := range ids {
			if st[id].State != want[i] {
				t.Errorf("row %d is %s, want %s", i+1, st[id].State, want[i])
			}
			if st[id].StatusFail {
				t.Errorf("row %d is marked status_fail", i+1)
			}
		}
		// A forged row added later for the same tx is rejected too.
		add(alice, -600, tx)
		job.UnknownTxTTL = time.Nanosecond
		out, err = job.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if out.Rejected != 1 || out.Expired != 1 || out.Confirmed != 0 || out.Pending != 0 {
			t.Fatalf("third pass: %+v", out)
		}
		st, _ = balanceRows(t, f)
		if st[ids[3]].State != storage.BalanceExpired {
			t.Errorf("the row of an unknown tx is %s after its TTL, want expired", st[ids[3]].State)
		}
		listed, err := f.store.ListBalances(ctx, alice, asset)
		if err != nil {
			t.Fatal(err)
		}
		if len(listed) != 1 || listed[0].ID != ids[0] {
			t.Fatalf("listed %+v, want only row 1", listed)
		}
		if got, _ := f.store.ListBalances(ctx, mallory, asset); len(got) != 0 {
			t.Fatalf("forged row listed: %+v", got)
		}
		// Nothing is left to decide.
		if out, err := job.Run(ctx); err != nil || out != (syncer.BalanceOutcome{}) {
			t.Fatalf("fourth pass: %+v %v", out, err)
		}
	})
}

// Chain amounts are uint64 and a row's int64: the net amount a transaction
// moves for an address is computed exactly (big.Int), so a sum of outputs
// beyond 2^64 does not wrap around to a small amount, an amount of 2^63 is
// not the row's -2^63, and amounts up to the int64 limit match exactly.
func TestBalanceAmountsAreCheckedExactly(t *testing.T) {
	t.Parallel()
	eachSource(t, func(t *testing.T, s *source) {
		ctx := context.Background()
		f := s.f
		user, bank := program("big alice"), program("bank")
		alice := sim.Address(user)
		funds, err := f.chain.AddUTXOs(asset, bank, []uint64{10, 20, 30})
		if err != nil {
			t.Fatal(err)
		}
		pay := func(in string, amounts ...uint64) string {
			t.Helper()
			var outs []sim.Output
			for _, a := range amounts {
				outs = append(outs, sim.Output{Asset: asset, Program: user, Amount: a})
			}
			tx, _, err := f.chain.Spend([]string{in}, outs, false)
			if err != nil {
				t.Fatal(err)
			}
			return tx
		}
		wraps := pay(funds[0], math.MaxUint64, 6) // 2^64 + 5
		half := pay(funds[1], 1<<63)              // one above the int64 limit
		exact := pay(funds[2], math.MaxInt64)
		if _, err := f.chain.Mine(1); err != nil {
			t.Fatal(err)
		}
		rows := []storage.Balance{
			{TxID: wraps, Amount: 5},             // what a uint64 sum would say
			{TxID: half, Amount: math.MinInt64},  // what an int64 conversion would say
			{TxID: exact, Amount: math.MaxInt64}, // true
		}
		for _, r := range rows {
			r.Address, r.Asset = alice, asset
			if err := f.store.AddBalance(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		_, ids := balanceRows(t, f)
		job := s.runner.Balances()
		job.UnknownTxTTL = time.Hour
		out, err := job.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if out.Confirmed != 1 || out.Rejected != 2 {
			t.Fatalf("decided %+v, want 1 confirmed and 2 rejected", out)
		}
		st, _ := balanceRows(t, f)
		for i, want := range []string{storage.BalanceRejected, storage.BalanceRejected, storage.BalanceConfirmed} {
			if got := st[ids[i]].State; got != want {
				t.Errorf("row %d (amount %d) is %s, want %s", i+1, st[ids[i]].Amount, got, want)
			}
		}
	})
}
