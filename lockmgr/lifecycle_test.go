package lockmgr_test

import (
	"context"
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
)

// The lifecycle table of the package doc, row by row.
func TestNextStateFollowsTheLifecycle(t *testing.T) {
	now := time.Now()
	later, earlier := now.Add(time.Minute), now.Add(-time.Second)
	avail := lockmgr.UTXOState{State: lockmgr.UTXOAvailable}
	immature := lockmgr.UTXOState{State: lockmgr.UTXOImmature}
	spentBy := func(tx string) lockmgr.UTXOState { return lockmgr.UTXOState{State: lockmgr.UTXOSpent, SpentTx: tx} }
	invalid := lockmgr.UTXOState{State: lockmgr.UTXOInvalidated}
	const T, X = "tx-t", "tx-x"
	for _, c := range []struct {
		name         string
		state, tx    string
		expires      time.Time
		utxos        []lockmgr.UTXOState
		next, nextTx string
	}{
		{"held, nothing moved", lockmgr.StateHeld, "", later, []lockmgr.UTXOState{avail, avail}, lockmgr.StateHeld, ""},
		{"held, immature again after a reorg", lockmgr.StateHeld, "", later, []lockmgr.UTXOState{immature}, lockmgr.StateHeld, ""},
		{"held, one spent by X", lockmgr.StateHeld, "", later, []lockmgr.UTXOState{avail, spentBy(X)}, lockmgr.StateSpent, X},
		{"held, one spent by an unknown tx", lockmgr.StateHeld, "", later, []lockmgr.UTXOState{spentBy("")}, lockmgr.StateSpent, ""},
		{"held, ran out before the spend was seen", lockmgr.StateHeld, "", earlier, []lockmgr.UTXOState{spentBy(X)}, lockmgr.StateExpired, ""},
		{"held, one invalidated", lockmgr.StateHeld, "", later, []lockmgr.UTXOState{avail, invalid}, lockmgr.StateInvalidated, ""},
		{"submitted T, spent by T", lockmgr.StateSubmitted, T, later, []lockmgr.UTXOState{spentBy(T), avail}, lockmgr.StateSpent, T},
		{"submitted T, spent by unknown", lockmgr.StateSubmitted, T, later, []lockmgr.UTXOState{spentBy("")}, lockmgr.StateSpent, T},
		{"submitted T, spent by X", lockmgr.StateSubmitted, T, later, []lockmgr.UTXOState{spentBy(T), spentBy(X)}, lockmgr.StateInvalidated, T},
		{"submitted T, not yet seen", lockmgr.StateSubmitted, T, later, []lockmgr.UTXOState{avail}, lockmgr.StateSubmitted, T},
		{"submitted T, ran out", lockmgr.StateSubmitted, T, earlier, []lockmgr.UTXOState{avail}, lockmgr.StateExpired, T},
		{"spent, its spend vanished", lockmgr.StateSpent, T, earlier, []lockmgr.UTXOState{avail, avail}, lockmgr.StateReleased, T},
		{"spent, still spent", lockmgr.StateSpent, T, earlier, []lockmgr.UTXOState{spentBy(T), avail}, lockmgr.StateSpent, T},
		{"spent, its parent failed", lockmgr.StateSpent, T, earlier, []lockmgr.UTXOState{invalid}, lockmgr.StateInvalidated, T},
		{"released stays released", lockmgr.StateReleased, "", later, []lockmgr.UTXOState{spentBy(X)}, lockmgr.StateReleased, ""},
		{"expired stays expired", lockmgr.StateExpired, "", earlier, []lockmgr.UTXOState{spentBy(X)}, lockmgr.StateExpired, ""},
		{"invalidated stays invalidated", lockmgr.StateInvalidated, "", earlier, []lockmgr.UTXOState{avail}, lockmgr.StateInvalidated, ""},
	} {
		next, tx := lockmgr.NextState(c.state, c.tx, c.expires, now, c.utxos)
		if next != c.next || tx != c.nextTx {
			t.Errorf("%s: got %s (tx %q), want %s (tx %q)", c.name, next, tx, c.next, c.nextTx)
		}
	}
}

// Amounts are exact up to 2^64-1: best fit, combine and the listing order
// distinguish amounts a float64 would merge.
func TestAmountsAreExactAbove2p53(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, lockmgr.Options{})
	const p53 = uint64(1) << 53
	amounts := []uint64{p53 + 1, p53 + 2, p53 + 3, 1<<63 - 1, 1 << 63, 1<<63 + 1, math.MaxUint64 - 1, math.MaxUint64}
	load(t, m, 1, withAmounts(amounts...))
	// Listing order: ascending, exactly.
	free, err := m.ListAvailable(ctx, 1, false, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]uint64, len(free))
	for i, it := range free {
		got[i] = it.Amount
	}
	if !slices.Equal(got, amounts) {
		t.Fatalf("listing %v, want %v", got, amounts)
	}
	// Best fit: 2^53+2 is not 2^53+1 or 2^53+3 (float64 rounds all three alike).
	for _, c := range []struct{ want, got uint64 }{
		{p53 + 2, p53 + 2}, {p53 + 1, p53 + 1}, {1 << 63, 1 << 63}, {1<<63 + 1, 1<<63 + 1}, {math.MaxUint64, math.MaxUint64},
	} {
		r, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Amount: c.want})
		if err != nil || r.Items[0].Amount != c.got {
			t.Fatalf("amount %d: %+v %v, want %d", c.want, r, err, c.got)
		}
		if _, err := m.Release(ctx, 1, r.ID); err != nil {
			t.Fatal(err)
		}
	}
}

// Combine is exact too: property test against a brute force in big.Int,
// amounts drawn around 2^53 and near 2^63 and 2^64.
func TestCombineIsExactForHugeAmounts(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, lockmgr.Options{})
	rng := rand.New(rand.NewPCG(7, 8))
	bases := []uint64{1 << 53, 1 << 62, 1<<63 - 50, math.MaxUint64/4 - 100}
	for c := 0; c < 200; c++ {
		pool := int64(100 + c)
		base := bases[c%len(bases)]
		n := 1 + rng.IntN(8)
		amounts := make([]uint64, n)
		total := new(big.Int)
		for i := range amounts {
			amounts[i] = base + rng.Uint64N(64)
			total.Add(total, new(big.Int).SetUint64(amounts[i]))
		}
		// A target between a sum of k and k+1 items, often at an exact sum.
		k := 1 + rng.IntN(n)
		want := new(big.Int).Mul(new(big.Int).SetUint64(base), big.NewInt(int64(k)))
		want.Add(want, big.NewInt(int64(rng.IntN(64*k+1))))
		if !want.IsUint64() {
			continue
		}
		load(t, m, pool, withAmounts(amounts...))
		count, best, ok := bruteCombineBig(amounts, want)
		r, err := m.Reserve(ctx, lockmgr.Request{PoolID: pool, Amount: want.Uint64(), Combine: true})
		if !ok {
			if !errors.Is(err, lockmgr.ErrNoUTXOAvailable) {
				t.Fatalf("case %d %v want %s: got %v, %v; want ErrNoUTXOAvailable", c, amounts, want, r, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("case %d %v want %s: %v", c, amounts, want, err)
		}
		sum := new(big.Int)
		for _, it := range r.Items {
			sum.Add(sum, new(big.Int).SetUint64(it.Amount))
		}
		if len(r.Items) != count || sum.Cmp(best) != 0 {
			t.Fatalf("case %d %v want %s: got %d utxos summing %s, brute force %d summing %s",
				c, amounts, want, len(r.Items), sum, count, best)
		}
	}
}

// bruteCombineBig is bruteCombine with exact sums.
func bruteCombineBig(amounts []uint64, want *big.Int) (count int, total *big.Int, ok bool) {
	n := len(amounts)
	for mask := 1; mask < 1<<n; mask++ {
		c, s := 0, new(big.Int)
		for i := 0; i < n; i++ {
			if mask&(1<<i) != 0 {
				c++
				s.Add(s, new(big.Int).SetUint64(amounts[i]))
			}
		}
		if s.Cmp(want) < 0 {
			continue
		}
		if !ok || c < count || (c == count && s.Cmp(total) < 0) {
			count, total, ok = c, s, true
		}
	}
	return count, total, ok
}

// Case 6 of issue 13: go-redis sends a script again after a lost connection;
// the reserve script that ran twice holds the UTXOs once and answers the
// first reservation.
func TestReserveScriptRunTwiceHoldsOnce(t *testing.T) {
	ctx := context.Background()
	proxy := testenv.StartProxy(t, redisAddr(t))
	rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr(), MaxRetries: 3, MinRetryBackoff: time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	_, prefix := testenv.Redis(t)
	m := lockmgr.New(rdb, lockmgr.Options{Prefix: prefix})
	load(t, m, 1, items(4))
	// The script is loaded (EVALSHA finds it) and the connection open before the fault.
	warm, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Release(ctx, 1, warm.ID); err != nil {
		t.Fatal(err)
	}
	proxy.LoseReplies(1)
	r, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 2, Owner: lockmgr.LegacyOwner})
	if err != nil {
		t.Fatal(err)
	}
	free, held, err := m.PoolCounts(ctx, 1)
	if err != nil || free != 2 || held != 2 {
		t.Fatalf("free %d held %d (%v): the script ran twice and held more", free, held, err)
	}
	keys, err := rdb.Keys(ctx, prefix+"{p1}:res:*").Result()
	keys = slices.DeleteFunc(keys, func(k string) bool { return k == prefix+"{p1}:res:"+warm.ID }) // released
	if err != nil || len(keys) != 1 || keys[0] != prefix+"{p1}:res:"+r.ID {
		t.Fatalf("reservation keys %v (%v), want only %s", keys, err, r.ID)
	}
	legacy, err := rdb.ZCard(ctx, prefix+"{p1}:legacy").Result()
	if err != nil || legacy != 1 {
		t.Fatalf("legacy index has %d entries (%v), want 1", legacy, err)
	}
}

// redisAddr is the host:port of the shared test Redis.
func redisAddr(t *testing.T) string {
	t.Helper()
	opt, err := redis.ParseURL(testenv.RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	return opt.Addr
}

// releaseRecorder is a journal that accepts everything and notes the
// releases it is told of.
type releaseRecorder struct {
	mu       sync.Mutex
	released []string
}

func (j *releaseRecorder) Record(context.Context, *lockmgr.Reservation) error { return nil }
func (j *releaseRecorder) Update(context.Context, *lockmgr.Reservation, ...string) error {
	return nil
}
func (j *releaseRecorder) Lookup(context.Context, string) (*lockmgr.Reservation, error) {
	return nil, lockmgr.ErrNotFound
}
func (j *releaseRecorder) LookupKey(context.Context, string) (*lockmgr.Reservation, error) {
	return nil, lockmgr.ErrNotFound
}
func (j *releaseRecorder) UpdateLater(*lockmgr.Reservation, ...string) {}
func (j *releaseRecorder) Withdrawn(*lockmgr.Reservation)              {}
func (j *releaseRecorder) FollowReloads(func(int64, []string))         {}
func (j *releaseRecorder) Released(r *lockmgr.Reservation, _ time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.released = append(j.released, r.ID)
}

// A release script that ran twice (its first reply lost, go-redis sent it
// again) answers "released before" the second time: the journal must still
// learn the release.
func TestReleaseScriptRunTwiceStillReachesTheJournal(t *testing.T) {
	ctx := context.Background()
	proxy := testenv.StartProxy(t, redisAddr(t))
	rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr(), MaxRetries: 3, MinRetryBackoff: time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	_, prefix := testenv.Redis(t)
	j := &releaseRecorder{}
	m := lockmgr.New(rdb, lockmgr.Options{Prefix: prefix, Journal: j})
	load(t, m, 1, items(2))
	warm, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 1}) // loads the scripts
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Release(ctx, 1, warm.ID); err != nil {
		t.Fatal(err)
	}
	r, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	proxy.LoseReplies(1)
	got, err := m.Release(ctx, 1, r.ID)
	if err != nil || got.State != lockmgr.StateReleased {
		t.Fatalf("release: %+v, %v", got, err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if !slices.Contains(j.released, r.ID) {
		t.Fatalf("the journal was told of releases %v, not of %s", j.released, r.ID)
	}
}
