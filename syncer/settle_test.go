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
	t.Parallel()
	eachSource(t, func(t *testing.T, s *source) {
		ctx := context.Background()
		f := s.f
		prog := program("settle " + s.name)
		if _, err := f.chain.AddUTXOs(asset, prog, amounts(3)); err != nil {
			t.Fatal(err)
		}
		p := s.pool(t, asset, prog)
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
		s.sync(t)
		row := f.journal(t, r.ID)
		if row.State != storage.ResSpent || row.TxID != tx {
			t.Fatalf("journal after the spend: %+v", row)
		}
		if _, err := f.locks.Get(ctx, p.ID, r.ID); !errors.Is(err, lockmgr.ErrNotFound) {
			t.Fatalf("settled reservation still live in redis: %v", err)
		}
		// The change output is reservable at once.
		next, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: outs})
		if err != nil {
			t.Fatalf("change output: %v", err)
		}
		// Mined: nothing moves.
		if _, err := f.chain.Mine(1); err != nil {
			t.Fatal(err)
		}
		s.sync(t)
		if row := f.journal(t, r.ID); row.State != storage.ResSpent || row.TxID != tx {
			t.Fatalf("journal after the block: %+v", row)
		}
		if got := f.journal(t, next.ID).State; got != storage.ResHeld {
			t.Fatalf("the reservation on the mined change is %s, want held", got)
		}
		f.checkNoneLost(t, p, f.liveHolds(t, p.ID))
	})
}

// A submitted transaction that fails on chain gives the reservation's UTXO
// back: its reservation ends released. The pool holds an issued asset, which
// a failed transaction does not move.
func TestSubmittedReservationIsReleasedWhenItsTransactionFails(t *testing.T) {
	t.Parallel()
	eachSource(t, func(t *testing.T, s *source) {
		ctx := context.Background()
		f := s.f
		prog := contract + "515151"
		if _, err := f.chain.AddUTXOs(gold, prog, amounts(2)); err != nil {
			t.Fatal(err)
		}
		p := s.pool(t, gold, prog)
		r, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		tx, _, err := f.chain.Spend(r.Hashes(), []sim.Output{{Asset: gold, Program: program("payee"), Amount: 5}}, true)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.locks.Submit(ctx, p.ID, r.ID, tx); err != nil {
			t.Fatal(err)
		}
		s.sync(t)
		if got := f.journal(t, r.ID).State; got != storage.ResSpent {
			t.Fatalf("while its transaction is pending the reservation is %s, want spent", got)
		}
		if _, err := f.chain.Mine(1); err != nil {
			t.Fatal(err)
		}
		s.sync(t)
		if got := f.journal(t, r.ID).State; got != storage.ResReleased {
			t.Fatalf("journal: %s, want released", got)
		}
		if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: r.Hashes()}); err != nil {
			t.Fatalf("the UTXO did not come back: %v", err)
		}
		f.checkNoneLost(t, p, f.liveHolds(t, p.ID))
	})
}

// A submitted transaction that fails on chain without touching the
// reservation's UTXO (a source that lists UTXOs): only the transaction's
// status can tell the reservation is over, and the submitted check reads it.
// (The chain index learns a transaction's fate from the pool's UTXOs only.)
func TestSubmittedCheckReleasesAReservationWhoseTransactionFailed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	prog := contract + "51515151"
	p, _, err := f.store.EnsurePool(ctx, gold, prog)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.chain.AddUTXOs(gold, prog, amounts(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.job().SyncPool(ctx, p); err != nil {
		t.Fatal(err)
	}
	r, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	other, err := f.chain.AddUTXOs(gold, contract+"52", []uint64{5})
	if err != nil {
		t.Fatal(err)
	}
	tx, _, err := f.chain.Spend(other, []sim.Output{{Asset: gold, Program: prog, Amount: 5}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.locks.Submit(ctx, p.ID, r.ID, tx); err != nil {
		t.Fatal(err)
	}
	check := &syncer.SubmittedCheck{Store: f.store, Locks: f.locks, Chain: f.client,
		Apply: &syncer.Applier{Store: f.store, Locks: f.locks}}
	if n, err := check.Run(ctx); err != nil || n != 0 {
		t.Fatalf("pending tx released %d: %v", n, err)
	}
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	if n, err := check.Run(ctx); err != nil || n != 1 {
		t.Fatalf("failed tx released %d: %v", n, err)
	}
	if got := f.journal(t, r.ID).State; got != storage.ResReleased {
		t.Fatalf("journal: %s, want released", got)
	}
	if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: r.Hashes()}); err != nil {
		t.Fatalf("the UTXO did not come back: %v", err)
	}
}
