package lockmgr_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
)

func load(t *testing.T, m *lockmgr.Manager, pool int64, its []lockmgr.Item) {
	t.Helper()
	if err := m.LoadAvailable(context.Background(), pool, its); err != nil {
		t.Fatal(err)
	}
}

func withAmounts(amounts ...uint64) []lockmgr.Item {
	out := make([]lockmgr.Item, len(amounts))
	for i, a := range amounts {
		out[i] = lockmgr.Item{Hash: hashOf(i), Amount: a}
	}
	return out
}

func sum(its []lockmgr.Item) uint64 {
	var s uint64
	for _, it := range its {
		s += it.Amount
	}
	return s
}

func TestReserveByAmountIsBestFit(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, lockmgr.Options{})
	load(t, m, 1, withAmounts(50, 120, 100, 300, 99))
	for _, c := range []struct {
		want, got uint64
	}{{100, 100}, {101, 120}, {1, 50}, {121, 300}} {
		r, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Amount: c.want})
		if err != nil {
			t.Fatalf("amount %d: %v", c.want, err)
		}
		if len(r.Items) != 1 || r.Items[0].Amount != c.got {
			t.Fatalf("amount %d: got %v, want one UTXO of %d", c.want, r.Items, c.got)
		}
	}
	if _, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Amount: 100}); !errors.Is(err, lockmgr.ErrNoUTXOAvailable) {
		t.Fatalf("only 99 left, amount 100: %v", err)
	}
}

// bruteCombine returns the fewest items whose sum covers want and, among
// those, the least sum; ok is false when nothing covers it.
func bruteCombine(amounts []uint64, want uint64) (count int, total uint64, ok bool) {
	n := len(amounts)
	for mask := 1; mask < 1<<n; mask++ {
		c, s := 0, uint64(0)
		for i := 0; i < n; i++ {
			if mask&(1<<i) != 0 {
				c++
				s += amounts[i]
			}
		}
		if s < want {
			continue
		}
		if !ok || c < count || (c == count && s < total) {
			count, total, ok = c, s, true
		}
	}
	return count, total, ok
}

func TestCombineMatchesBruteForce(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, lockmgr.Options{})
	rng := rand.New(rand.NewPCG(1, 2))
	for c := 0; c < 300; c++ {
		pool := int64(1000 + c)
		n := 1 + rng.IntN(10)
		amounts := make([]uint64, n)
		var total uint64
		for i := range amounts {
			amounts[i] = 1 + rng.Uint64N(100)
			total += amounts[i]
		}
		want := 1 + rng.Uint64N(total+20)
		load(t, m, pool, withAmounts(amounts...))
		count, best, ok := bruteCombine(amounts, want)
		r, err := m.Reserve(ctx, lockmgr.Request{PoolID: pool, Amount: want, Combine: true})
		if !ok {
			if !errors.Is(err, lockmgr.ErrNoUTXOAvailable) {
				t.Fatalf("case %d %v want %d: got %v, %v; want ErrNoUTXOAvailable", c, amounts, want, r, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("case %d %v want %d: %v", c, amounts, want, err)
		}
		if len(r.Items) != count || sum(r.Items) != best {
			t.Fatalf("case %d %v want %d: got %d utxos summing %d, brute force %d summing %d",
				c, amounts, want, len(r.Items), sum(r.Items), count, best)
		}
	}
}

func TestExtendSubmitRelease(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, lockmgr.Options{SubmitGrace: time.Hour, MaxLifetime: 3 * time.Second})
	load(t, m, 1, items(3))
	r, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Hashes: []string{hashOf(0)}, TTL: time.Second, Owner: "o"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := m.Extend(ctx, 1, r.ID, 2*time.Second)
	if err != nil || !e.ExpiresAt.After(r.ExpiresAt) || e.Fence != r.Fence {
		t.Fatalf("extend: %+v %v", e, err)
	}
	if _, err := m.Extend(ctx, 1, r.ID, 4*time.Second); !errors.Is(err, lockmgr.ErrLifetime) {
		t.Fatalf("extend past the lifetime cap: %v", err)
	}
	tx := strings.Repeat("a", 64)
	s, err := m.Submit(ctx, 1, r.ID, tx)
	if err != nil || s.State != lockmgr.StateSubmitted || s.TxID != tx || time.Until(s.ExpiresAt) < 59*time.Minute {
		t.Fatalf("submit: %+v %v", s, err)
	}
	if _, err := m.Submit(ctx, 1, r.ID, tx); err != nil {
		t.Fatalf("same submit again: %v", err)
	}
	if _, err := m.Submit(ctx, 1, r.ID, strings.Repeat("b", 64)); !errors.Is(err, lockmgr.ErrTxMismatch) {
		t.Fatalf("submit of another tx: %v", err)
	}
	if _, err := m.Extend(ctx, 1, r.ID, time.Second); !errors.Is(err, lockmgr.ErrNotHeld) {
		t.Fatalf("extend after submit: %v", err)
	}
	g, err := m.Get(ctx, 1, r.ID)
	if err != nil || g.State != lockmgr.StateSubmitted || g.Items[0] != r.Items[0] {
		t.Fatalf("get: %+v %v", g, err)
	}
	// A submitted reservation is not released: its transaction may be mined.
	if _, err := m.Release(ctx, 1, r.ID); !errors.Is(err, lockmgr.ErrNotHeld) {
		t.Fatalf("release after submit: %v", err)
	}
	if _, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Hashes: []string{hashOf(0)}}); !errors.Is(err, lockmgr.ErrLocked) {
		t.Fatalf("reserve of a submitted reservation's UTXO: %v", err)
	}
	if got, err := m.Peek(ctx, 1, r.ID); err != nil || got.State != lockmgr.StateSubmitted {
		t.Fatalf("peek of a submitted reservation: %+v, %v", got, err)
	}
	// The chain settles it; Redis follows.
	if err := m.EndReservations(ctx, 1, []string{r.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Release(ctx, 1, r.ID); !errors.Is(err, lockmgr.ErrNotFound) {
		t.Fatalf("release of an ended reservation: %v", err)
	}
	if _, err := m.Get(ctx, 1, r.ID); !errors.Is(err, lockmgr.ErrNotFound) {
		t.Fatalf("get after it ended: %v", err)
	}
	if _, err := m.Peek(ctx, 1, r.ID); !errors.Is(err, lockmgr.ErrNotFound) {
		t.Fatalf("peek after it ended: %v", err)
	}
	// Its UTXOs are free again (the chain still offers them).
	if _, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Hashes: []string{hashOf(0)}}); err != nil {
		t.Fatalf("reserve after it ended: %v", err)
	}
	h, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Hashes: []string{hashOf(2)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Release(ctx, 1, h.ID); err != nil {
		t.Fatal(err)
	}
	// Releasing again answers the same release (Redis remembers it).
	if again, err := m.Release(ctx, 1, h.ID); err != nil || !again.Replayed || again.State != lockmgr.StateReleased {
		t.Fatalf("second release: %+v, %v", again, err)
	}
	if got, err := m.Peek(ctx, 1, h.ID); err != nil || got.Fence != h.Fence || got.State != lockmgr.StateReleased {
		t.Fatalf("released reservation: %+v, %v", got, err)
	}
	// Released UTXOs are free at once.
	if _, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Hashes: []string{hashOf(2)}}); err != nil {
		t.Fatalf("reserve after release: %v", err)
	}
	// An expired reservation cannot be extended, submitted or released.
	x, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Hashes: []string{hashOf(1)}, TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if _, err := m.Peek(ctx, 1, x.ID); !errors.Is(err, lockmgr.ErrNotFound) {
			return fmt.Errorf("peek: %v, want it expired", err)
		}
		return nil
	})
	if _, err := m.Extend(ctx, 1, x.ID, time.Second); !errors.Is(err, lockmgr.ErrNotFound) {
		t.Fatalf("extend after expiry: %v", err)
	}
	if _, err := m.Submit(ctx, 1, x.ID, tx); !errors.Is(err, lockmgr.ErrNotFound) {
		t.Fatalf("submit after expiry: %v", err)
	}
	if _, err := m.Release(ctx, 1, x.ID); !errors.Is(err, lockmgr.ErrNotFound) {
		t.Fatalf("release after expiry: %v", err)
	}
}

func TestIdempotencyKeyReturnsTheSameReservation(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	// Two managers stand for two API replicas.
	a := lockmgr.New(rdb, lockmgr.Options{Prefix: prefix})
	b := lockmgr.New(rdb, lockmgr.Options{Prefix: prefix})
	load(t, a, 1, items(5))
	first, err := a.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 2, IdempotencyKey: "k1", Fingerprint: "f1"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := b.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 2, IdempotencyKey: "k1", Fingerprint: "f1"})
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != first.ID || !again.Replayed || first.Replayed || again.Fence != first.Fence {
		t.Fatalf("retry: %+v, first %+v", again, first)
	}
	// The same key with another request is refused, whatever it asks.
	if r, err := b.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 1, IdempotencyKey: "k1", Fingerprint: "f2"}); !errors.Is(err, lockmgr.ErrKeyReused) {
		t.Fatalf("same key, another request: %+v %v", r, err)
	}
	other, err := b.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 2, IdempotencyKey: "k2", Fingerprint: "f1"})
	if err != nil || other.ID == first.ID {
		t.Fatalf("another key: %+v %v", other, err)
	}
	free, _, _ := a.PoolCounts(ctx, 1)
	if free != 1 {
		t.Fatalf("free = %d, want 1", free)
	}
	if _, err := a.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 1, IdempotencyKey: "k3"}); !errors.Is(err, lockmgr.ErrBadRequest) {
		t.Fatalf("a key without a fingerprint: %v", err)
	}
}

// Case 1 of issue 13 at the Redis level: when one UTXO of a reservation
// leaves the chain and the reservation ends, its other UTXOs are offered
// again at once, the gone one never.
func TestEndingOffersOnlyWhatTheChainStillOffers(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, lockmgr.Options{})
	load(t, m, 1, items(5))
	r, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	gone := r.Items[1].Hash
	if err := m.ApplyChain(ctx, 1, nil, []string{gone}); err != nil {
		t.Fatal(err)
	}
	if err := m.EndReservations(ctx, 1, []string{r.ID}); err != nil {
		t.Fatal(err)
	}
	free, err := m.ListAvailable(ctx, 1, false, 0, 10)
	if err != nil || len(free) != 4 {
		t.Fatalf("after ending: %v %v; want the 4 UTXOs the chain still has", free, err)
	}
	for _, it := range free {
		if it.Hash == gone {
			t.Fatalf("the UTXO that left the chain is offered again: %v", free)
		}
	}
	if _, err := m.Get(ctx, 1, r.ID); !errors.Is(err, lockmgr.ErrNotFound) {
		t.Fatalf("ended reservation still live: %v", err)
	}
	// And the same when the hold runs out instead.
	x, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 4, TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.ApplyChain(ctx, 1, nil, []string{x.Items[0].Hash}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if free, err := m.ListAvailable(ctx, 1, false, 0, 10); err != nil || len(free) != 3 {
			return fmt.Errorf("after expiry: %v %v; want 3", free, err)
		}
		return nil
	})
}

func TestLostRedisStateIsRebuiltBeforeServing(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	m := lockmgr.New(rdb, lockmgr.Options{Prefix: prefix})
	load(t, m, 1, items(4))
	live, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Hashes: []string{hashOf(2)}, Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	// Redis loses everything of this test.
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		rdb.Del(ctx, iter.Val())
	}
	if _, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 1}); !errors.Is(err, lockmgr.ErrRebuilding) {
		t.Fatalf("reserve before rebuild: %v", err)
	}
	if _, err := m.ListAvailable(ctx, 1, false, 0, 10); !errors.Is(err, lockmgr.ErrRebuilding) {
		t.Fatalf("list before rebuild: %v", err)
	}
	err = m.Rebuild(ctx, 1, lockmgr.Snapshot{Available: items(4), Live: []*lockmgr.Reservation{live}, FenceFloor: live.Fence})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for i := 0; i < 3; i++ {
		r, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		if r.Fence <= live.Fence {
			t.Fatalf("fence went back: %d after %d", r.Fence, live.Fence)
		}
		got[r.Items[0].Hash] = true
	}
	if got[hashOf(2)] {
		t.Fatal("the UTXO of a live reservation was granted again after the rebuild")
	}
	if _, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 1}); !errors.Is(err, lockmgr.ErrNoUTXOAvailable) {
		t.Fatalf("pool should be exhausted: %v", err)
	}
	g, err := m.Get(ctx, 1, live.ID)
	if err != nil || g.Owner != "alice" || g.Fence != live.Fence {
		t.Fatalf("restored reservation: %+v %v", g, err)
	}
	if _, err := m.Release(ctx, 1, live.ID); err != nil {
		t.Fatalf("release of a restored reservation: %v", err)
	}
}

func TestReserveWaitIsWokenByARelease(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	m := lockmgr.New(rdb, lockmgr.Options{Prefix: prefix})
	t.Cleanup(func() { _ = m.Close() })
	load(t, m, 1, items(1))
	holder, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	keysBefore := countKeys(t, rdb, prefix)
	if _, err := m.ReserveWait(ctx, lockmgr.Request{PoolID: 1, Count: 1}, 300*time.Millisecond); !errors.Is(err, lockmgr.ErrNoUTXOAvailable) {
		t.Fatalf("wait on an empty pool: %v", err)
	}
	type result struct {
		r   *lockmgr.Reservation
		err error
	}
	// The waiter polls only hourly here: the release's notification is what
	// must wake it, long before its 20 s wait ends.
	restore := lockmgr.SetWaitPoll(time.Hour)
	defer restore()
	done := make(chan result, 1)
	go func() {
		r, err := m.ReserveWait(ctx, lockmgr.Request{PoolID: 1, Count: 1}, 20*time.Second)
		done <- result{r, err}
	}()
	// The waiter listens, and Redis has the subscription (a message on
	// another pool's channel reaches the Manager).
	testenv.Eventually(t, 10*time.Second, testenv.Is(func() bool { return lockmgr.Waiters(m, 1) == 1 }))
	testenv.Eventually(t, 10*time.Second, func() error {
		if n, err := rdb.Publish(ctx, lockmgr.FreedChannel(m, 2), "").Result(); err != nil || n == 0 {
			return fmt.Errorf("publish reached %d subscribers: %v", n, err)
		}
		return nil
	})
	if _, err := m.Release(ctx, 1, holder.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-done:
		if res.err != nil || res.r.Items[0] != holder.Items[0] {
			t.Fatalf("waiter got %+v, %v", res.r, res.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the release did not wake the waiter")
	}
	if got := countKeys(t, rdb, prefix); got != keysBefore {
		t.Fatalf("waiting left keys behind: %d before, %d after", keysBefore, got)
	}
}

// countKeys counts the keys under prefix, leaving out what Redis remembers
// of releases (the released reservations for ReleasedMemory, the pool's
// list of releases for the sweep).
func countKeys(t *testing.T, rdb *redis.Client, prefix string) int {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, k := range keys {
		if strings.Contains(k, ":res:") && rdb.HGet(ctx, k, "state").Val() == lockmgr.StateReleased ||
			strings.HasSuffix(k, ":releases") {
			continue
		}
		n++
	}
	return n
}

func TestBestFitMatchesBruteForce(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, lockmgr.Options{})
	rng := rand.New(rand.NewPCG(3, 4))
	for c := 0; c < 300; c++ {
		pool := int64(5000 + c)
		amounts := make([]uint64, 1+rng.IntN(12))
		for i := range amounts {
			amounts[i] = 1 + rng.Uint64N(50)
		}
		want := 1 + rng.Uint64N(60)
		load(t, m, pool, withAmounts(amounts...))
		// The frontend's rule: an exact match, else the smallest amount >= want.
		best, found := uint64(0), false
		for _, a := range amounts {
			if a >= want && (!found || a < best) {
				best, found = a, true
			}
		}
		r, err := m.Reserve(ctx, lockmgr.Request{PoolID: pool, Amount: want})
		if !found {
			if !errors.Is(err, lockmgr.ErrNoUTXOAvailable) {
				t.Fatalf("case %d %v want %d: got %v, %v; want ErrNoUTXOAvailable", c, amounts, want, r, err)
			}
			continue
		}
		if err != nil || len(r.Items) != 1 || r.Items[0].Amount != best {
			t.Fatalf("case %d %v want %d: got %v, %v; want one UTXO of %d", c, amounts, want, r, err, best)
		}
	}
}

// A rebuild whose snapshot predates a sync must not overwrite what the sync
// applied (an API replica rebuilding while the syncer adds new UTXOs).
func TestRebuildRefusesASnapshotOlderThanASync(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, lockmgr.Options{})
	gen, err := m.SyncGeneration(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	// The syncer applies new UTXOs after the rebuilder read its snapshot (empty).
	if err := m.ApplyChain(ctx, 1, items(2), nil); err != nil {
		t.Fatal(err)
	}
	if err := m.Rebuild(ctx, 1, lockmgr.Snapshot{SyncGen: gen}); !errors.Is(err, lockmgr.ErrStaleSnapshot) {
		t.Fatalf("stale rebuild: %v", err)
	}
	if loaded, _ := m.Loaded(ctx, 1); loaded {
		t.Fatal("a refused rebuild marked the pool loaded")
	}
	// A fresh snapshot (it now holds the sync's UTXOs) goes through.
	if err := m.LoadAvailable(ctx, 1, items(2)); err != nil {
		t.Fatal(err)
	}
	free, err := m.ListAvailable(ctx, 1, false, 0, 10)
	if err != nil || len(free) != 2 {
		t.Fatalf("after the fresh rebuild: %v %v", free, err)
	}
}
