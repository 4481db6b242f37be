package syncer_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
)

// A DApp spends a pool UTXO with change back to the pool and submits; a second
// user reserves the change. The spend then fails (mined with status_fail, or
// dropped from the mempool): within two sync intervals the change is
// invalidated, the reservation on it ends invalidated, the submitter's
// reservation is released and the UTXO it spent is reservable again. The
// pool holds an issued asset: status_fail moves only BTM, so only there do
// the inputs of a failed transaction come back.
func TestReservationOnTheChangeOfAFailedTransactionIsInvalidated(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"status_fail", "dropped"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			eachSource(t, func(t *testing.T, s *source) {
				ctx := context.Background()
				f := s.f
				prog := contract + "5151"
				if _, err := f.chain.AddUTXOs(gold, prog, amounts(2)); err != nil {
					t.Fatal(err)
				}
				p := s.pool(t, gold, prog)
				spender, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Amount: 1000, Owner: "dapp"})
				if err != nil {
					t.Fatal(err)
				}
				txID, change, err := f.chain.Spend(spender.Hashes(),
					[]sim.Output{{Asset: gold, Program: prog, Amount: 600}}, how == "status_fail")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.locks.Submit(ctx, p.ID, spender.ID, txID); err != nil {
					t.Fatal(err)
				}
				// The spend is seen pending: settled spent, its change offered.
				s.sync(t)
				if got := f.journal(t, spender.ID).State; got != storage.ResSpent {
					t.Fatalf("the submitted spend seen pending: %s, want spent", got)
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
					if f.journal(t, onChange.ID).State == storage.ResInvalidated {
						break
					}
					s.sync(t)
				}
				t.Logf("invalidated after %d sync interval(s)", intervals)
				if got := f.journal(t, onChange.ID).State; got != storage.ResInvalidated {
					t.Fatalf("reservation on the change after the failure: %s; want invalidated", got)
				}
				if _, err := f.locks.Get(ctx, p.ID, onChange.ID); !errors.Is(err, lockmgr.ErrNotFound) {
					t.Fatalf("invalidated reservation still live in redis: %v", err)
				}
				if st := utxoState(t, f, change[0]); st != storage.StateInvalidated {
					t.Fatalf("change output is %s, want invalidated", st)
				}
				if got := f.journal(t, spender.ID).State; got != storage.ResReleased {
					t.Fatalf("the failed spend's reservation is %s, want released", got)
				}
				// What the failed spend consumed is unspent on chain: offered again.
				if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: spender.Hashes()}); err != nil {
					t.Fatalf("input of the failed spend: %v", err)
				}
				if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: change}); !errors.Is(err, lockmgr.ErrUnknownUTXO) {
					t.Fatalf("invalidated change reservable: %v", err)
				}
				f.checkNoneLost(t, p, f.liveHolds(t, p.ID))
			})
		})
	}
}

// status_fail moves BTM: a BTM transaction that fails still spends its
// inputs and creates its outputs. Its lineage is not failed: the submitter's
// reservation stays spent, the change stays (confirmed by the block) and
// the reservation on it stays held, whatever the source.
func TestFailedBTMTransactionStillSpendsAndCreates(t *testing.T) {
	t.Parallel()
	eachSource(t, func(t *testing.T, s *source) {
		ctx := context.Background()
		f := s.f
		prog := program("failed btm " + s.name)
		hashes, err := f.chain.AddUTXOs(asset, prog, []uint64{1000, 2000})
		if err != nil {
			t.Fatal(err)
		}
		p := s.pool(t, asset, prog)
		spender, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: hashes[:1], Owner: "dapp"})
		if err != nil {
			t.Fatal(err)
		}
		txID, change, err := f.chain.Spend(hashes[:1], []sim.Output{{Asset: asset, Program: prog, Amount: 600}}, true)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.locks.Submit(ctx, p.ID, spender.ID, txID); err != nil {
			t.Fatal(err)
		}
		s.sync(t)
		onChange, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: change, Owner: "next", TTL: time.Minute})
		if err != nil {
			t.Fatalf("change not reservable: %v", err)
		}
		if _, err := f.chain.Mine(1); err != nil {
			t.Fatal(err)
		}
		s.sync(t)
		s.sync(t)
		if tx, err := f.chain.Tx(txID); err != nil || !tx.StatusFail {
			t.Fatalf("the spend did not fail: %+v %v", tx, err)
		}
		if row := f.journal(t, spender.ID); row.State != storage.ResSpent || row.TxID != txID {
			t.Errorf("the submitter's reservation is %s with %q, want spent by %s", row.State, row.TxID, txID[:8])
		}
		if got := f.journal(t, onChange.ID).State; got != storage.ResHeld {
			t.Errorf("the reservation on the change is %s, want held", got)
		}
		if _, err := f.locks.Get(ctx, p.ID, onChange.ID); err != nil {
			t.Errorf("the reservation on the change is not live in redis: %v", err)
		}
		if st := utxoState(t, f, change[0]); st != storage.StateAvailable {
			t.Errorf("the change of a failed BTM transaction is %s, want available", st)
		}
		if st := utxoState(t, f, hashes[0]); st != storage.StateSpent {
			t.Errorf("the input of a failed BTM transaction is %s, want spent", st)
		}
		if slices.Contains(f.reservable(t, p.ID), hashes[0]) {
			t.Error("the input of a failed BTM transaction is reservable")
		}
		f.checkNoneLost(t, p, f.liveHolds(t, p.ID))
	})
}
