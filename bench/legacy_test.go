package bench

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestFrontendPick(t *testing.T) {
	list := []legacyEntry{{"a", 90}, {"b", 50}, {"c", 50}, {"d", 20}}
	for _, c := range []struct {
		want uint64
		pick string
	}{
		{50, "b"}, // exact, the first of two
		{30, "b"}, // the smallest worth at least 30
		{21, "b"}, // 20 is too small
		{20, "d"}, // exact
		{1, "d"},  // the smallest of all
		{95, "a"}, // none is large enough: the largest
		{90, "a"}, // exact, the largest
		{60, "a"}, // the only one large enough
	} {
		if i := frontendPick(list, c.want); list[i].Hash != c.pick {
			t.Errorf("want %d: picked %s, expected %s", c.want, list[i].Hash, c.pick)
		}
	}
	if frontendPick(nil, 1) != -1 {
		t.Error("picked from an empty list")
	}
}

// The pick is the one UTXO the rule describes, on random descending lists.
func TestFrontendPickProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		list := make([]legacyEntry, 1+rng.IntN(20))
		for i := range list {
			list[i] = legacyEntry{Hash: string(rune('a' + i)), Amount: 1 + rng.Uint64N(30)}
		}
		slices.SortStableFunc(list, func(a, b legacyEntry) int { return int(b.Amount) - int(a.Amount) })
		want := 1 + rng.Uint64N(35)
		got := list[frontendPick(list, want)]
		var ge []uint64
		for _, e := range list {
			if e.Amount >= want {
				ge = append(ge, e.Amount)
			}
		}
		switch {
		case len(ge) == 0 && got.Amount != list[0].Amount:
			t.Fatalf("want %d of %v: picked %d, not the largest", want, list, got.Amount)
		case len(ge) > 0 && got.Amount != slices.Min(ge):
			t.Fatalf("want %d of %v: picked %d, not the smallest large enough", want, list, got.Amount)
		}
	}
}
