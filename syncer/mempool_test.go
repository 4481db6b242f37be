package syncer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

// The legacy flow never submits: a frontend spends a pool UTXO with change
// back to the pool and another user reserves the change. With a node source,
// the mempool watch learns which transaction created the change, so when that
// transaction fails the reservation on the change ends invalidated.
func TestMempoolWatchGivesUnsubmittedSpendsALineage(t *testing.T) {
	for _, watch := range []bool{true, false} {
		name := map[bool]string{true: "watched", false: "unwatched"}[watch]
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t)
			node := chain.NewBytomd(f.url)
			prog := program("mempool-" + name)
			hashes, err := f.chain.AddUTXOs(asset, prog, amounts(2))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.chain.Mine(1); err != nil {
				t.Fatal(err)
			}
			p := f.pool(t, prog)
			jobs := syncer.Jobs{Store: f.store, Locks: f.locks, Chain: node, Interval: time.Hour, MaxBackoff: time.Hour,
				Rebuild: syncer.NewRebuilder(f.store, f.locks, f.rdb, f.prefix, nil)}
			runner := jobs.ForTerm(0)
			if !watch {
				runner.Mempool = nil
			} else if runner.Mempool == nil {
				t.Fatal("a node source gets no mempool watch")
			}
			if err := runner.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			_, change, err := f.chain.Spend(hashes[:1], []sim.Output{{Asset: asset, Program: prog, Amount: 600}}, true)
			if err != nil {
				t.Fatal(err)
			}
			if err := runner.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			onChange, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: change})
			if err != nil {
				t.Fatalf("change not reservable: %v", err)
			}
			if _, err := f.chain.Mine(1); err != nil {
				t.Fatal(err)
			}
			if err := runner.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			row, err := f.store.GetReservation(ctx, onChange.ID)
			if err != nil {
				t.Fatal(err)
			}
			want := map[bool]string{true: storage.ResInvalidated, false: storage.ResSpent}[watch]
			if row.State != want {
				t.Fatalf("reservation on the change of the failed spend is %s, want %s", row.State, want)
			}
			if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: hashes[:1]}); err != nil {
				t.Fatalf("input of the failed spend not back: %v", err)
			}
			if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: change}); !errors.Is(err, lockmgr.ErrUnknownUTXO) {
				t.Fatalf("output of the failed spend reservable: %v", err)
			}
		})
	}
}
