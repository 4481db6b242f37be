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

// The legacy flow never submits: a frontend spends a pool UTXO it holds,
// with change back into the pool, and another user reserves the change.
// With a node the index's mempool overlay gives such a spend its lineage
// (this used to be the mempool watch's job): the hold whose UTXO the pending
// transaction spends ends spent; when the transaction then fails (dropped
// from the mempool, or mined with status_fail, which moves no issued asset)
// the UTXO comes back, the change is invalidated and the reservation on it
// ends invalidated.
func TestIndexOverlayGivesUnsubmittedSpendsALineage(t *testing.T) {
	for _, how := range []string{"dropped", "status_fail"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := newFixture(t)
			s := newSource(t, f, "bytomd")
			// An issued asset: a failed transaction leaves its inputs unspent.
			pAsset, prog := gold, contract+"51"
			if how == "dropped" {
				pAsset, prog = asset, program("legacy mempool")
			}
			hashes, err := f.chain.AddUTXOs(pAsset, prog, amounts(2))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.chain.Mine(1); err != nil {
				t.Fatal(err)
			}
			p := s.pool(t, pAsset, prog)
			legacy := lockmgr.Request{PoolID: p.ID, Owner: lockmgr.LegacyOwner, TTL: time.Minute}
			req := legacy
			req.Hashes = hashes[:1]
			hold, err := f.locks.Reserve(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			txID, change, err := f.chain.Spend(hashes[:1], []sim.Output{{Asset: pAsset, Program: prog, Amount: 600}}, how == "status_fail")
			if err != nil {
				t.Fatal(err)
			}
			s.sync(t)
			row := f.journal(t, hold.ID)
			if row.State != storage.ResSpent || row.TxID != txID {
				t.Fatalf("legacy hold whose UTXO a pending transaction spends: %s with tx %q, want spent by %s", row.State, row.TxID, txID)
			}
			if _, err := f.locks.Get(ctx, p.ID, hold.ID); !errors.Is(err, lockmgr.ErrNotFound) {
				t.Fatalf("the spent hold is still live in redis: %v", err)
			}
			if slices.Contains(f.reservable(t, p.ID), hashes[0]) {
				t.Fatal("a UTXO a pending transaction spends is reservable")
			}
			req = legacy
			req.Hashes = change
			onChange, err := f.locks.Reserve(ctx, req)
			if err != nil {
				t.Fatalf("the pending change is not reservable: %v", err)
			}
			f.checkNoneLost(t, p, f.liveHolds(t, p.ID))

			if how == "dropped" {
				if err := f.chain.Drop(txID); err != nil {
					t.Fatal(err)
				}
			} else if _, err := f.chain.Mine(1); err != nil {
				t.Fatal(err)
			}
			s.sync(t)
			if got := f.journal(t, onChange.ID).State; got != storage.ResInvalidated {
				t.Fatalf("reservation on the change of the failed spend is %s, want invalidated", got)
			}
			if _, err := f.locks.Get(ctx, p.ID, onChange.ID); !errors.Is(err, lockmgr.ErrNotFound) {
				t.Fatalf("invalidated reservation still live in redis: %v", err)
			}
			if st := utxoState(t, f, change[0]); st != storage.StateInvalidated {
				t.Fatalf("change output is %s, want invalidated", st)
			}
			// Its spend vanished or failed: the first hold did not spend.
			if got := f.journal(t, hold.ID).State; got != storage.ResReleased {
				t.Fatalf("the hold whose spend failed is %s, want released", got)
			}
			if st := utxoState(t, f, hashes[0]); st != storage.StateAvailable {
				t.Fatalf("input of the failed spend is %s, want available", st)
			}
			if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: hashes[:1]}); err != nil {
				t.Fatalf("input of the failed spend not back: %v", err)
			}
			if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: change}); !errors.Is(err, lockmgr.ErrUnknownUTXO) {
				t.Fatalf("output of the failed spend reservable: %v", err)
			}
			f.checkNoneLost(t, p, f.liveHolds(t, p.ID))
		})
	}
}

// A spend that succeeds: the hold ends spent and stays so once mined, and
// the reservation on its change (confirmed with the block) stays held.
func TestIndexOverlaySpendThatIsMinedStaysSpent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	s := newSource(t, f, "bytomd")
	prog := program("legacy mined")
	hashes, err := f.chain.AddUTXOs(asset, prog, amounts(2))
	if err != nil {
		t.Fatal(err)
	}
	p := s.pool(t, asset, prog)
	hold, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: hashes[:1], Owner: lockmgr.LegacyOwner})
	if err != nil {
		t.Fatal(err)
	}
	txID, change, err := f.chain.Spend(hashes[:1], []sim.Output{{Asset: asset, Program: prog, Amount: 600}}, false)
	if err != nil {
		t.Fatal(err)
	}
	s.sync(t)
	onChange, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: change, Owner: lockmgr.LegacyOwner})
	if err != nil {
		t.Fatalf("the pending change is not reservable: %v", err)
	}
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	s.sync(t)
	if row := f.journal(t, hold.ID); row.State != storage.ResSpent || row.TxID != txID {
		t.Fatalf("hold after its spend was mined: %s %q", row.State, row.TxID)
	}
	if got := f.journal(t, onChange.ID).State; got != storage.ResHeld {
		t.Fatalf("reservation on the mined change is %s, want held", got)
	}
	us, err := f.store.GetUTXOs(ctx, append([]string{hashes[0]}, change...))
	if err != nil || len(us) != 2 {
		t.Fatal(us, err)
	}
	tip := int64(f.chain.Tip().Height)
	if us[0].State != storage.StateSpent || us[0].SpentHeight != tip || us[1].State != storage.StateAvailable ||
		!us[1].Confirmed || us[1].Height != tip {
		t.Fatalf("after the block: %+v", us)
	}
	f.checkNoneLost(t, p, f.liveHolds(t, p.ID))
}
