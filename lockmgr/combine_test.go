package lockmgr_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
)

// A combine reserve runs in one Redis script, and Redis serves nobody else
// while it runs: its work must not grow with the pool. The search used to
// read the whole free set and walk it once per UTXO it tried first, so one
// reserve of a pool of 3,000 UTXOs held Redis for about a second (two UTXOs
// needed) or for many seconds (three: every client got BUSY). The Redis
// server's own CPU is what is measured, on a private server, with a margin of
// ten or more either way (it is a few milliseconds now).
func TestCombineWorkDoesNotGrowWithThePool(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t)
	rdb := srv.Client()
	m := lockmgr.New(rdb, lockmgr.Options{Prefix: "combine:"})
	ctx := context.Background()
	const n = 3000
	its := items(n) // amounts 1000, 1010, ...: none alone covers what is asked below
	load(t, m, 1, its)
	largest := its[n-1].Amount
	for _, k := range []uint64{2, 3} {
		want := (k-1)*largest + 15
		before := redisCPU(t, rdb)
		callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r, err := m.Reserve(callCtx, lockmgr.Request{PoolID: 1, Amount: want, Combine: true})
		cancel()
		if err != nil {
			t.Fatalf("%d UTXOs needed: %v", k, err)
		}
		used := time.Duration(redisCPU(t, rdb)-before) * time.Microsecond
		if len(r.Items) != int(k) || sum(r.Items) < want {
			t.Fatalf("%d UTXOs needed for %d: got %d summing %d", k, want, len(r.Items), sum(r.Items))
		}
		if used > 100*time.Millisecond {
			t.Errorf("a combine reserve of %d UTXOs in a pool of %d took %v of Redis's CPU; want well under 100ms", k, n, used)
		}
		if _, err := m.Release(ctx, 1, r.ID); err != nil {
			t.Fatal(err)
		}
	}
}

// randomAmounts returns n amounts drawn from 1..1,000,000.
func randomAmounts(rng *rand.Rand, n int) []uint64 {
	amounts := make([]uint64, n)
	for i := range amounts {
		amounts[i] = 1 + rng.Uint64N(1_000_000)
	}
	return amounts
}

// bestPair returns the least sum of two amounts that covers want (every
// amount alone falls short), or false.
func bestPair(amounts []uint64, want uint64) (uint64, bool) {
	var best uint64
	ok := false
	for i := range amounts {
		for j := i + 1; j < len(amounts); j++ {
			if s := amounts[i] + amounts[j]; s >= want && (!ok || s < best) {
				best, ok = s, true
			}
		}
	}
	return best, ok
}

// On a pool of up to 256 free UTXOs the search still finds the least
// excess: every pair is looked at (a property test against brute force on
// pools larger than TestCombineMatchesBruteForce's).
func TestCombineFindsTheBestPairUpTo256UTXOs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newManager(t, lockmgr.Options{})
	rng := rand.New(rand.NewPCG(3, 4))
	for c := 0; c < 40; c++ {
		pool := int64(5000 + c)
		n := 11 + rng.IntN(246)
		amounts := randomAmounts(rng, n)
		sorted := slices.Sorted(slices.Values(amounts))
		largest, second := sorted[n-1], sorted[n-2]
		want := largest + 1 + rng.Uint64N(second) // two UTXOs needed, and enough
		load(t, m, pool, withAmounts(amounts...))
		best, ok := bestPair(amounts, want)
		if !ok {
			t.Fatalf("case %d: no pair covers %d", c, want)
		}
		r, err := m.Reserve(ctx, lockmgr.Request{PoolID: pool, Amount: want, Combine: true})
		if err != nil {
			t.Fatalf("case %d (%d UTXOs) want %d: %v", c, n, want, err)
		}
		if len(r.Items) != 2 || sum(r.Items) != best {
			t.Fatalf("case %d (%d UTXOs) want %d: got %d UTXOs summing %d, brute force 2 summing %d",
				c, n, want, len(r.Items), sum(r.Items), best)
		}
	}
}

// On larger pools the search is bounded, so the excess may not be the least,
// but the count always is (the fewest UTXOs that cover the amount), the sum
// covers it, no UTXO is taken twice, and it is never worse than the largest
// ones. A combination of more than 256 UTXOs is the largest ones.
func TestCombineOnLargePoolsTakesTheFewest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := newManager(t, lockmgr.Options{})
	rng := rand.New(rand.NewPCG(5, 6))
	for c := 0; c < 30; c++ {
		pool := int64(6000 + c)
		n := 300 + rng.IntN(1200)
		amounts := randomAmounts(rng, n)
		desc := slices.Sorted(slices.Values(amounts))
		slices.Reverse(desc)
		k := 2 + rng.IntN(5)
		var below, top uint64 // the k-1 and the k largest
		for i := 0; i < k; i++ {
			if i < k-1 {
				below += desc[i]
			}
			top += desc[i]
		}
		want := below + 1 + rng.Uint64N(top-below)
		load(t, m, pool, withAmounts(amounts...))
		r, err := m.Reserve(ctx, lockmgr.Request{PoolID: pool, Amount: want, Combine: true})
		if err != nil {
			t.Fatalf("case %d (%d UTXOs) want %d: %v", c, n, want, err)
		}
		checkCombination(t, r.Items, k, want, top)
	}

	// 600 UTXOs of 1: 300 of them are needed.
	ones := make([]uint64, 600)
	for i := range ones {
		ones[i] = 1
	}
	load(t, m, 7000, withAmounts(ones...))
	r, err := m.Reserve(ctx, lockmgr.Request{PoolID: 7000, Amount: 300, Combine: true})
	if err != nil {
		t.Fatal(err)
	}
	checkCombination(t, r.Items, 300, 300, 300)
	if _, err := m.Reserve(ctx, lockmgr.Request{PoolID: 7000, Amount: 301, Combine: true}); !errors.Is(err, lockmgr.ErrNoUTXOAvailable) {
		t.Fatalf("301 of the 300 left: %v; want ErrNoUTXOAvailable", err)
	}
}

// checkCombination fails unless items are count distinct UTXOs whose sum
// covers want and is at most most.
func checkCombination(t *testing.T, items []lockmgr.Item, count int, want, most uint64) {
	t.Helper()
	seen := map[string]bool{}
	for _, it := range items {
		if seen[it.Hash] {
			t.Fatalf("%s taken twice", it.Hash)
		}
		seen[it.Hash] = true
	}
	if s := sum(items); len(items) != count || s < want || s > most {
		t.Fatalf("want %d: got %d UTXOs summing %d; want %d summing between %d and %d", want, len(items), s, count, want, most)
	}
}
