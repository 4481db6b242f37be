package lockmgr_test

import (
	"context"
	"testing"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
)

// Redis serves nobody else while it runs one command, so the syncer's work
// on a large pool (its chain changes, a rebuild's staging, the sweep's reads
// of what Redis offers and holds) goes in calls of at most 500 UTXOs, each
// about a millisecond of Redis, whatever the pool's size. They were calls of
// up to 5,000 UTXOs, and whole-hash reads: 40-90 ms of Redis on a pool of
// 100,000 (BENCHMARKS.md).
func TestBulkWorkGoesInShortCalls(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	hook := &testenv.CallSizes{}
	rdb.AddHook(hook)
	m := lockmgr.New(rdb, lockmgr.Options{Prefix: prefix})
	const n, most = 3000, 2500
	its := items(n)
	check := func(what string, f func()) {
		t.Helper()
		if size, name := hook.Measure(f); size > most {
			t.Errorf("%s: a call (%s) of %d elements; want at most %d", what, name, size, most)
		}
	}
	check("the chain's changes", func() {
		if err := m.ApplyChain(ctx, 1, its, nil); err != nil {
			t.Fatal(err)
		}
	})
	check("a load", func() {
		if err := m.LoadAvailable(ctx, 1, its); err != nil {
			t.Fatal(err)
		}
	})
	r, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 1500})
	if err != nil {
		t.Fatal(err)
	}
	check("what Redis offers", func() {
		offered, err := m.Offered(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(offered) != n {
			t.Errorf("offered %d UTXOs; want %d", len(offered), n)
		}
	})
	check("what Redis holds", func() {
		holds, err := m.Holds(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := holds[r.ID]; len(holds) != 1 || !ok {
			t.Errorf("holds %v; want %s alone", holds, r.ID)
		}
	})
	check("the chain's removals", func() {
		hashes := make([]string, n)
		for i, it := range its {
			hashes[i] = it.Hash
		}
		if err := m.ApplyChain(ctx, 1, nil, hashes); err != nil {
			t.Fatal(err)
		}
	})
}
