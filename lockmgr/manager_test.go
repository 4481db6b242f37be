package lockmgr_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
)

// hashOf returns a deterministic 64-hex UTXO hash for tests.
func hashOf(i int) string {
	s := sha256.Sum256([]byte(fmt.Sprintf("utxo-%d", i)))
	return hex.EncodeToString(s[:])
}

func items(n int) []lockmgr.Item {
	out := make([]lockmgr.Item, n)
	for i := range out {
		out[i] = lockmgr.Item{Hash: hashOf(i), Amount: uint64(1000 + i*10)}
	}
	return out
}

func newManager(t *testing.T, opts lockmgr.Options) *lockmgr.Manager {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	opts.Prefix = prefix
	return lockmgr.New(rdb, opts)
}

func TestReserveSameHashExactlyOneWins(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, lockmgr.Options{})
	if err := m.LoadAvailable(ctx, 1, items(5)); err != nil {
		t.Fatal(err)
	}
	const n = 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, locked := 0, 0
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Hashes: []string{hashOf(2)}})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, lockmgr.ErrLocked):
				locked++
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || locked != n-1 {
		t.Fatalf("wins=%d locked=%d, want 1 and %d", wins, locked, n-1)
	}
}

func TestReserveCountNeverGrantsTwice(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, lockmgr.Options{})
	if err := m.LoadAvailable(ctx, 1, items(100)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[string]int{}
	var fences []int64
	unavailable := 0
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 1, Owner: "t"})
			mu.Lock()
			defer mu.Unlock()
			if errors.Is(err, lockmgr.ErrNoUTXOAvailable) {
				unavailable++
				return
			}
			if err != nil {
				t.Errorf("reserve: %v", err)
				return
			}
			got[r.Items[0].Hash]++
			fences = append(fences, r.Fence)
		}()
	}
	wg.Wait()
	if len(got) != 100 || unavailable != 100 {
		t.Fatalf("granted %d distinct, %d unavailable; want 100 and 100", len(got), unavailable)
	}
	for h, c := range got {
		if c != 1 {
			t.Fatalf("utxo %s granted %d times", h, c)
		}
	}
	seen := map[int64]bool{}
	for _, f := range fences {
		if seen[f] {
			t.Fatalf("fence %d handed out twice", f)
		}
		seen[f] = true
	}
}

func TestReserveAllOrNothing(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, lockmgr.Options{})
	if err := m.LoadAvailable(ctx, 1, items(3)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Hashes: []string{hashOf(1)}}); err != nil {
		t.Fatal(err)
	}
	_, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Hashes: []string{hashOf(0), hashOf(1)}})
	if !errors.Is(err, lockmgr.ErrLocked) {
		t.Fatalf("err = %v, want ErrLocked", err)
	}
	// hash 0 must still be free: the failed request took nothing.
	free, err := m.ListAvailable(ctx, 1, false, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(free) != 2 || free[0].Hash != hashOf(0) || free[1].Hash != hashOf(2) {
		t.Fatalf("free = %v", free)
	}
	_, err = m.Reserve(ctx, lockmgr.Request{PoolID: 1, Hashes: []string{hashOf(99)}})
	if !errors.Is(err, lockmgr.ErrUnknownUTXO) {
		t.Fatalf("err = %v, want ErrUnknownUTXO", err)
	}
}

func TestReserveRejectsBadRequests(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, lockmgr.Options{})
	for name, r := range map[string]lockmgr.Request{
		"no mode":   {PoolID: 1},
		"both":      {PoolID: 1, Count: 1, Hashes: []string{hashOf(0)}},
		"ttl low":   {PoolID: 1, Count: 1, TTL: time.Millisecond},
		"ttl high":  {PoolID: 1, Count: 1, TTL: 2 * time.Hour},
		"no pool":   {Count: 1},
		"duplicate": {PoolID: 1, Hashes: []string{hashOf(0), hashOf(0)}},
	} {
		if _, err := m.Reserve(ctx, r); !errors.Is(err, lockmgr.ErrBadRequest) {
			t.Errorf("%s: err = %v, want ErrBadRequest", name, err)
		}
	}
}

func TestHoldExpiresAndFenceGrows(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, lockmgr.Options{})
	if err := m.LoadAvailable(ctx, 1, items(1)); err != nil {
		t.Fatal(err)
	}
	first, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 1, TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 1}); !errors.Is(err, lockmgr.ErrNoUTXOAvailable) {
		t.Fatalf("second reserve while held: %v", err)
	}
	var second *lockmgr.Reservation
	testenv.Eventually(t, 10*time.Second, func() (err error) {
		second, err = m.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 1})
		return err
	})
	if second.Fence <= first.Fence {
		t.Fatalf("fence went from %d to %d", first.Fence, second.Fence)
	}
	if second.Items[0] != first.Items[0] {
		t.Fatalf("got %v, want the expired %v", second.Items[0], first.Items[0])
	}
}

func TestListAvailableSortedAndNeverHeld(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, lockmgr.Options{})
	if err := m.LoadAvailable(ctx, 1, items(10)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Hashes: []string{hashOf(9), hashOf(4)}}); err != nil {
		t.Fatal(err)
	}
	desc, err := m.ListAvailable(ctx, 1, true, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(desc) != 8 {
		t.Fatalf("listed %d, want 8", len(desc))
	}
	for i, it := range desc {
		if it.Hash == hashOf(9) || it.Hash == hashOf(4) {
			t.Fatalf("held utxo %s listed", it.Hash)
		}
		if i > 0 && desc[i-1].Amount < it.Amount {
			t.Fatalf("not descending at %d: %v", i, desc)
		}
	}
	page, err := m.ListAvailable(ctx, 1, false, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 3 || page[0].Amount != 1020 || page[2].Amount != 1050 {
		t.Fatalf("page = %v", page)
	}
}

func TestSyncNeverFreesAHeldUTXO(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, lockmgr.Options{})
	all := items(3)
	if err := m.LoadAvailable(ctx, 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := m.ApplyChain(ctx, 1, all, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Hashes: []string{hashOf(0)}}); err != nil {
		t.Fatal(err)
	}
	// The syncer sees hash 0 again (it is still unspent on chain): it stays held.
	if err := m.ApplyChain(ctx, 1, all[:1], nil); err != nil {
		t.Fatal(err)
	}
	if err := m.LoadAvailable(ctx, 1, all); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Hashes: []string{hashOf(0)}}); !errors.Is(err, lockmgr.ErrLocked) {
		t.Fatalf("held utxo reservable after sync: %v", err)
	}
	// Hash 1 is spent on chain: never offered again.
	if err := m.ApplyChain(ctx, 1, nil, []string{hashOf(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Hashes: []string{hashOf(1)}}); !errors.Is(err, lockmgr.ErrUnknownUTXO) {
		t.Fatalf("spent utxo: %v", err)
	}
	free, _, err := m.PoolCounts(ctx, 1)
	if err != nil || free != 1 {
		t.Fatalf("free = %d, %v; want 1", free, err)
	}
	loaded, err := m.Loaded(ctx, 1)
	if err != nil || !loaded {
		t.Fatalf("loaded = %v, %v", loaded, err)
	}
}

func TestShortenOldestLegacyOnlyTouchesLegacyHolds(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	m := lockmgr.New(rdb, lockmgr.Options{Prefix: prefix})
	if err := m.LoadAvailable(ctx, 1, items(3)); err != nil {
		t.Fatal(err)
	}
	v1, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Hashes: []string{hashOf(0)}, Owner: "app", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// Something is free: nothing is shortened.
	if ok, err := m.ShortenOldestLegacy(ctx, 1); err != nil || ok {
		t.Fatalf("shortened while free utxos exist: %v %v", ok, err)
	}
	old, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Hashes: []string{hashOf(1)}, Owner: lockmgr.LegacyOwner})
	if err != nil {
		t.Fatal(err)
	}
	young, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Hashes: []string{hashOf(2)}, Owner: lockmgr.LegacyOwner})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := m.ShortenOldestLegacy(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	ttl := func(id string) time.Duration {
		d, err := rdb.PTTL(ctx, prefix+"{p1}:res:"+id).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := ttl(old.ID); d > lockmgr.LegacyShortTTL || d <= 0 {
		t.Fatalf("oldest legacy hold ttl %s, want <= %s", d, lockmgr.LegacyShortTTL)
	}
	if d := ttl(young.ID); d < 500*time.Second {
		t.Fatalf("younger legacy hold shortened to %s", d)
	}
	if d := ttl(v1.ID); d < 59*time.Minute {
		t.Fatalf("v1 hold shortened to %s", d)
	}
	score, err := rdb.ZScore(ctx, prefix+"{p1}:held", hashOf(1)).Result()
	if err != nil {
		t.Fatal(err)
	}
	if until := time.Until(time.UnixMilli(int64(score))); until > lockmgr.LegacyShortTTL {
		t.Fatalf("held index still says %s", until)
	}
}

type failingJournal struct{}

func (failingJournal) Record(context.Context, *lockmgr.Reservation) error {
	return errors.New("database is down")
}

func (failingJournal) Update(context.Context, *lockmgr.Reservation, ...string) error {
	return errors.New("database is down")
}

func (failingJournal) Released(*lockmgr.Reservation, time.Time) {}

func (failingJournal) UpdateLater(*lockmgr.Reservation, ...string) {}
func (failingJournal) Withdrawn(*lockmgr.Reservation)              {}
func (failingJournal) FollowReloads(func(int64, []string))         {}

func (failingJournal) Lookup(context.Context, string) (*lockmgr.Reservation, error) {
	return nil, errors.New("database is down")
}

func (failingJournal) LookupKey(context.Context, string) (*lockmgr.Reservation, error) {
	return nil, errors.New("database is down")
}

func TestJournalFailureUndoesTheHold(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, lockmgr.Options{Journal: failingJournal{}})
	if err := m.LoadAvailable(ctx, 1, items(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Reserve(ctx, lockmgr.Request{PoolID: 1, Count: 1}); err == nil {
		t.Fatal("reserve succeeded without a journal")
	}
	free, err := m.ListAvailable(ctx, 1, false, 0, 10)
	if err != nil || len(free) != 1 {
		t.Fatalf("after a failed journal write free = %v, %v; want the utxo back", free, err)
	}
}
