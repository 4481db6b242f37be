package syncer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

func balanceStates(t *testing.T, f *fixture) map[int64]storage.Balance {
	t.Helper()
	var rows []storage.Balance
	if err := f.store.DB().Order("id").Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	out := map[int64]storage.Balance{}
	for _, r := range rows {
		out[r.ID] = r
	}
	return out
}

// The original stored whatever update-balance was sent (flaw 6) and left rows of
// unknown transactions unconfirmed forever (flaw 8).
func TestBalanceRowsCountOnlyWhenTheChainAgrees(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	user, pool, other := program("alice"), program("pool"), program("mallory")
	alice, mallory := sim.Address(user), sim.Address(other)
	funds, err := f.chain.AddUTXOs(asset, user, []int64{1000})
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
	job := &syncer.BalanceVerify{Store: f.store, Chain: f.client, UnknownTxTTL: time.Hour}

	// Pending on chain: nothing is decided yet.
	out, err := job.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out.Pending != 4 {
		t.Fatalf("before mining: %+v", out)
	}
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	out, err = job.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out.Confirmed != 1 || out.Rejected != 2 || out.Pending != 1 {
		t.Fatalf("after mining: %+v", out)
	}
	st := balanceStates(t, f)
	want := map[int64]string{1: storage.BalanceConfirmed, 2: storage.BalanceRejected, 3: storage.BalanceRejected, 4: storage.BalancePending}
	for id, s := range want {
		if st[id].State != s {
			t.Errorf("row %d is %s, want %s", id, st[id].State, s)
		}
	}
	// A forged row added later for the same tx is rejected too.
	add(alice, -600, tx)
	job.UnknownTxTTL = time.Nanosecond
	out, err = job.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out.Rejected != 1 || out.Expired != 1 {
		t.Fatalf("third pass: %+v", out)
	}
	listed, err := f.store.ListBalances(ctx, alice, asset)
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].ID != 1 {
		t.Fatalf("listed %+v, want only row 1", listed)
	}
	if got, _ := f.store.ListBalances(ctx, mallory, asset); len(got) != 0 {
		t.Fatalf("forged row listed: %+v", got)
	}
}
