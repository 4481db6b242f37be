package lockmgr_test

import (
	"context"
	"slices"
	"testing"

	"github.com/bufferd/bufferd/lockmgr"
)

// sampled checks that a sample is sorted and returns its hashes.
func sampled(t *testing.T, got []lockmgr.Item, desc bool) []string {
	t.Helper()
	hs := make([]string, len(got))
	for i, it := range got {
		hs[i] = it.Hash
		if i > 0 && (desc && got[i-1].Amount < it.Amount || !desc && got[i-1].Amount > it.Amount) {
			t.Fatalf("sample not sorted (desc %v): %v", desc, got)
		}
	}
	return hs
}

// Consecutive callers of the legacy listing get different UTXOs, each list
// still sorted by amount and still offering the largest UTXO.
func TestSampleAvailableSpreadsCallers(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, lockmgr.Options{})
	all := items(200) // amounts 1000, 1010, ... 2990: hashOf(199) is the largest
	load(t, m, 1, all)
	const size = 16
	step := len(all) / size // 12 disjoint samples
	for _, desc := range []bool{true, false} {
		seen := map[string]int{}
		for range step {
			got, err := m.SampleAvailable(ctx, 1, desc, 100, size)
			if err != nil {
				t.Fatal(err)
			}
			hs := sampled(t, got, desc)
			if len(hs) < size || len(hs) > size+2 {
				t.Fatalf("sample of %d UTXOs, want about %d", len(hs), size)
			}
			if !slices.Contains(hs, hashOf(199)) {
				t.Fatalf("sample lacks the largest UTXO: %v", hs)
			}
			for _, h := range hs {
				seen[h]++
			}
		}
		// One turn of samples covers the pool, each UTXO once (the largest in all).
		if len(seen) != len(all) {
			t.Fatalf("desc %v: %d samples covered %d of %d UTXOs", desc, step, len(seen), len(all))
		}
		for h, n := range seen {
			if n != 1 && h != hashOf(199) {
				t.Fatalf("desc %v: %s in %d samples of one turn", desc, h, n)
			}
		}
		// The limit caps a sample.
		got, err := m.SampleAvailable(ctx, 1, desc, 5, size)
		if err != nil || len(got) != 5 || !slices.Contains(sampled(t, got, desc), hashOf(199)) {
			t.Fatalf("sample limited to 5: %v, %v", got, err)
		}
	}
	// With fewer than twice the size free it is the plain first page.
	taken, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 170})
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.SampleAvailable(ctx, 1, true, 100, size)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := m.ListAvailable(ctx, 1, true, 0, 100)
	if err != nil || len(plain) != 30 || !slices.Equal(got, plain) {
		t.Fatalf("with 30 free: sample %v, list %v (%v)", got, plain, err)
	}
	for _, it := range taken.Items {
		if slices.ContainsFunc(got, func(x lockmgr.Item) bool { return x.Hash == it.Hash }) {
			t.Fatalf("held UTXO %s listed", it.Hash)
		}
	}
}
