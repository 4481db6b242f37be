package syncer_test

import (
	"context"
	"errors"
	"testing"

	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

func TestSubmittedReservationSettlesWhenTheChainSpendsIt(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	prog := program("settle")
	if _, err := f.chain.AddUTXOs(asset, prog, amounts(3)); err != nil {
		t.Fatal(err)
	}
	p := f.pool(t, prog)
	job := f.job()
	if _, err := job.SyncPool(ctx, p); err != nil {
		t.Fatal(err)
	}
	r, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Amount: 1001, Owner: "dapp"})
	if err != nil {
		t.Fatal(err)
	}
	// The DApp builds and sends the spend, with its change back to the pool.
	tx, outs, err := f.chain.Spend(r.Hashes(), []sim.Output{{Asset: asset, Program: prog, Amount: 400}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.locks.Submit(ctx, p.ID, r.ID, tx); err != nil {
		t.Fatal(err)
	}
	if _, err := job.SyncPool(ctx, p); err != nil {
		t.Fatal(err)
	}
	row, err := f.store.GetReservation(ctx, r.ID)
	if err != nil || row.State != storage.ResSpent || row.TxID != tx {
		t.Fatalf("journal after the spend: %+v %v", row, err)
	}
	if _, err := f.locks.Get(ctx, p.ID, r.ID); !errors.Is(err, lockmgr.ErrNotFound) {
		t.Fatalf("settled reservation still live in redis: %v", err)
	}
	// The change output is reservable at once.
	if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: outs}); err != nil {
		t.Fatalf("change output: %v", err)
	}
}

func TestSubmittedReservationIsReleasedWhenItsTransactionFails(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	prog := program("failing")
	if _, err := f.chain.AddUTXOs(asset, prog, amounts(1)); err != nil {
		t.Fatal(err)
	}
	p := f.pool(t, prog)
	job := f.job()
	if _, err := job.SyncPool(ctx, p); err != nil {
		t.Fatal(err)
	}
	r, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	// A transaction that fails on chain but never touched our UTXO: only the
	// transaction status can tell the reservation is over.
	other, err := f.chain.AddUTXOs(asset, program("elsewhere"), []int64{5})
	if err != nil {
		t.Fatal(err)
	}
	tx, _, err := f.chain.Spend(other, []sim.Output{{Asset: asset, Program: prog, Amount: 5}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.locks.Submit(ctx, p.ID, r.ID, tx); err != nil {
		t.Fatal(err)
	}
	check := &syncer.SubmittedCheck{Store: f.store, Locks: f.locks, Chain: f.client}
	if n, err := check.Run(ctx); err != nil || n != 0 {
		t.Fatalf("pending tx released %d: %v", n, err)
	}
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	if n, err := check.Run(ctx); err != nil || n != 1 {
		t.Fatalf("failed tx released %d: %v", n, err)
	}
	row, err := f.store.GetReservation(ctx, r.ID)
	if err != nil || row.State != storage.ResReleased {
		t.Fatalf("journal: %+v %v", row, err)
	}
	if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: r.Hashes()}); err != nil {
		t.Fatalf("the UTXO did not come back: %v", err)
	}
}
