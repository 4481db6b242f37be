package syncer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

// A DApp spends a pool UTXO with change back to the pool and submits; a second
// user reserves the change. The spend then fails (mined with status_fail, or
// dropped from the mempool): within two sync intervals the change is
// invalidated, the reservation on it ends invalidated, the submitter's
// reservation is released and the UTXO it spent is reservable again.
func TestReservationOnTheChangeOfAFailedTransactionIsInvalidated(t *testing.T) {
	for _, how := range []string{"status_fail", "dropped"} {
		t.Run(how, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t)
			prog := program("lineage-" + how)
			if _, err := f.chain.AddUTXOs(asset, prog, amounts(2)); err != nil {
				t.Fatal(err)
			}
			p := f.pool(t, prog)
			job := f.job()
			runner := &syncer.Runner{UTXO: job, Interval: time.Hour, MaxBackoff: time.Hour,
				Submitted: &syncer.SubmittedCheck{Store: f.store, Locks: f.locks, Chain: f.client}}
			if err := runner.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			spender, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Amount: 1000, Owner: "dapp"})
			if err != nil {
				t.Fatal(err)
			}
			txID, change, err := f.chain.Spend(spender.Hashes(),
				[]sim.Output{{Asset: asset, Program: prog, Amount: 600}}, how == "status_fail")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.locks.Submit(ctx, p.ID, spender.ID, txID); err != nil {
				t.Fatal(err)
			}
			// The fast path syncs at once: the spend is settled from the
			// mempool and its change is offered.
			if _, err := job.SyncPool(ctx, p); err != nil {
				t.Fatal(err)
			}
			onChange, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: change, Owner: "next"})
			if err != nil {
				t.Fatalf("change not reservable: %v", err)
			}

			if how == "status_fail" {
				if _, err := f.chain.Mine(1); err != nil {
					t.Fatal(err)
				}
			} else if err := f.chain.Drop(txID); err != nil {
				t.Fatal(err)
			}
			intervals := 0
			for ; intervals < 2; intervals++ {
				if row, _ := f.store.GetReservation(ctx, onChange.ID); row.State == storage.ResInvalidated {
					break
				}
				if err := runner.Tick(ctx); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("invalidated after %d sync interval(s)", intervals)
			row, err := f.store.GetReservation(ctx, onChange.ID)
			if err != nil || row.State != storage.ResInvalidated {
				t.Fatalf("reservation on the change after the failure: %+v, %v; want invalidated", row, err)
			}
			if _, err := f.locks.Get(ctx, p.ID, onChange.ID); !errors.Is(err, lockmgr.ErrNotFound) {
				t.Fatalf("invalidated reservation still live in redis: %v", err)
			}
			if st := utxoState(t, f, change[0]); st != storage.StateInvalidated {
				t.Fatalf("change output is %s, want invalidated", st)
			}
			if row, _ := f.store.GetReservation(ctx, spender.ID); row.State != storage.ResReleased {
				t.Fatalf("the failed spend's reservation is %s, want released", row.State)
			}
			// What the failed spend consumed is unspent on chain: offered again.
			if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: spender.Hashes()}); err != nil {
				t.Fatalf("input of the failed spend: %v", err)
			}
			if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: change}); !errors.Is(err, lockmgr.ErrUnknownUTXO) {
				t.Fatalf("invalidated change reservable: %v", err)
			}
		})
	}
}

func utxoState(t *testing.T, f *fixture, hash string) string {
	t.Helper()
	us, err := f.store.GetUTXOs(context.Background(), []string{hash})
	if err != nil || len(us) != 1 {
		t.Fatalf("utxo %s: %v %v", hash, us, err)
	}
	return us[0].State
}
