package lockmgr

import (
	"encoding/hex"
	"math"
	"testing"
)

func TestIDsNameTheirPool(t *testing.T) {
	seen := map[string]bool{}
	for _, pool := range []int64{1, 2, 127, 128, 300, 1 << 20, 1<<49 - 1} {
		for i := 0; i < 100; i++ {
			id, err := newID(pool)
			if err != nil {
				t.Fatalf("newID(%d): %v", pool, err)
			}
			if len(id) != 32 || seen[id] {
				t.Fatalf("newID(%d) = %q: want 32 hex characters, never twice", pool, id)
			}
			seen[id] = true
			if _, err := hex.DecodeString(id); err != nil {
				t.Fatalf("newID(%d) = %q: %v", pool, id, err)
			}
			if got, ok := PoolOfID(id); !ok || got != pool {
				t.Fatalf("PoolOfID(newID(%d)) = %d, %v", pool, got, ok)
			}
		}
	}
	for _, pool := range []int64{0, -1, 1 << 49, math.MaxInt64} {
		if id, err := newID(pool); err == nil {
			t.Errorf("newID(%d) = %q, want an error", pool, id)
		}
	}
	for _, id := range []string{"", "b101", "00000000000000000000000000000000", "b1000000000000000000000000000000",
		"B1010000000000000000000000000000", "b10100000000000000000000000000zz", "b101000000000000000000000000000000",
		"b1ffffffffffffffffffffffffffffff"} {
		if pool, ok := PoolOfID(id); ok {
			t.Errorf("PoolOfID(%q) = %d, want none", id, pool)
		}
	}
}

// FuzzPoolOfID: any string either names no pool or names a positive one that
// leaves the id at least 8 random bytes.
func FuzzPoolOfID(f *testing.F) {
	id, _ := newID(7)
	for _, s := range []string{id, "", "b1ffffffffffffffffffffffffffffff", "b1808080808080800100000000000000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		pool, ok := PoolOfID(id)
		if !ok {
			return
		}
		if pool <= 0 || pool >= 1<<49 {
			t.Fatalf("PoolOfID(%q) = %d", id, pool)
		}
		again, err := newID(pool)
		if err != nil {
			t.Fatalf("newID(%d): %v", pool, err)
		}
		if again[:4] != id[:4] && pool < 128 {
			t.Fatalf("PoolOfID(%q) = %d, whose ids start %q", id, pool, again[:4])
		}
	})
}
