package syncer_test

import (
	"context"
	"testing"

	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
)

// A sync that finds the listing and the pool's stored UTXOs as they were at
// its last sync that changed nothing skips the reconciliation; a change on
// either side, by whoever, is reconciled; and a skipped sync still reloads a
// pool Redis lost.
func TestSyncSkipsOnlyAnUnchangedPool(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	prog := program("quiet")
	hashes, err := f.chain.AddUTXOs(asset, prog, amounts(20))
	if err != nil {
		t.Fatal(err)
	}
	p := f.pool(t, prog)
	job := f.job() // one job: it remembers its last quiet syncs
	sync := func(what string) storage.SyncResult {
		t.Helper()
		p, err := f.store.GetPool(ctx, p.ID) // as the runner lists it at each tick
		if err != nil {
			t.Fatal(err)
		}
		res, err := job.SyncPool(ctx, p)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return res
	}
	quiet := func(what string) {
		t.Helper()
		if res := sync(what + ", first"); res.Unchanged || res.Changes() != 0 {
			t.Fatalf("%s, first: %+v, want a reconciliation that changes nothing", what, res)
		}
		if res := sync(what + ", second"); !res.Unchanged || res.Statements != 0 {
			t.Fatalf("%s, second: %+v, want the reconciliation skipped", what, res)
		}
	}

	if res := sync("first sync"); len(res.Added) != 20 {
		t.Fatalf("first sync added %d, want 20", len(res.Added))
	}
	quiet("nothing changed")

	// Another writer marks a listed UTXO spent: the same listing revives it.
	if err := f.store.DB().WithContext(ctx).Exec(`UPDATE utxos SET state = 'spent' WHERE hash = ?`, hashes[3]).Error; err != nil {
		t.Fatal(err)
	}
	if res := sync("after a write to the pool's rows"); res.Unchanged || len(res.Revived) != 1 {
		t.Fatalf("after a write to the pool's rows: %+v, want %s revived", res, hashes[3])
	}
	quiet("after the revival")

	// The chain spends one: the listing differs.
	if _, _, err := f.chain.Spend([]string{hashes[5]}, []sim.Output{{Asset: asset, Program: prog, Amount: 700}}, false); err != nil {
		t.Fatal(err)
	}
	if res := sync("after a spend"); res.Unchanged || len(res.Spent) != 1 || len(res.Added) != 1 {
		t.Fatalf("after a spend: %+v, want 1 spent and 1 added", res)
	}
	quiet("after the spend")

	// Redis loses the pool while nothing changes.
	iter := f.rdb.Scan(ctx, 0, f.prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		f.rdb.Del(ctx, iter.Val())
	}
	if res := sync("after Redis lost the pool"); !res.Unchanged {
		t.Fatalf("after Redis lost the pool: %+v, want the reconciliation skipped", res)
	}
	if free, _, err := f.locks.PoolCounts(ctx, p.ID); err != nil || free != 20 {
		t.Fatalf("Redis after the skipped sync: %d free (%v), want 20", free, err)
	}
	if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: []string{hashes[3]}}); err != nil {
		t.Fatalf("the revived UTXO is not reservable: %v", err)
	}
}
