package syncer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

// racingJournal loses the pool's Redis state and rebuilds it from the
// journal while a grant is on its way to the journal: the grant the
// rebuild's snapshot lacked must not be acknowledged.
type racingJournal struct {
	*storage.Journal
	before func()
}

func (j *racingJournal) Record(ctx context.Context, r *lockmgr.Reservation) error {
	if j.before != nil {
		j.before()
	}
	return j.Journal.Record(ctx, r)
}

// flushAndRebuild deletes every key of f's Redis prefix and rebuilds pool.
func (f *fixture) flushAndRebuild(t testing.TB, pool int64) {
	t.Helper()
	f.flushKeys(t)
	rebuilt, err := syncer.NewRebuilder(f.store, f.locks, f.rdb, f.prefix, nil).RebuildIfLost(context.Background(), pool)
	if err != nil || !rebuilt {
		t.Fatalf("rebuild: %v, rebuilt %v", err, rebuilt)
	}
}

func TestGrantRedisLostBeforeTheRebuildIsNotAcknowledged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	p := f.syncedPool(t, "load-fence", 3)
	j := &racingJournal{Journal: f.newJournal(t)}
	locks := f.lockerWith(t, j)

	// The grant is journalled before Redis is lost: it is restored.
	kept, err := locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	f.flushAndRebuild(t, p.ID)
	if got, err := locks.Get(ctx, p.ID, kept.ID); err != nil || got.Fence != kept.Fence {
		t.Fatalf("journalled grant after the rebuild: %+v, %v", got, err)
	}

	// Redis loses the grant and is rebuilt while it is on its way to the
	// journal: the snapshot lacks it, so the journal must refuse it.
	j.before = func() { f.flushAndRebuild(t, p.ID) }
	_, err = locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Count: 1})
	if !errors.Is(err, lockmgr.ErrRebuilding) {
		t.Fatalf("reserve whose grant Redis lost before the rebuild: %v", err)
	}
	j.before = nil
	live, err := f.store.LiveReservationIDs(ctx, p.ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != 1 || !live[kept.ID] {
		t.Fatalf("live reservations in the journal: %v, want only %s", live, kept.ID)
	}
	// The two UTXOs nobody holds can be reserved, once each.
	rest, err := locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range rest.Items {
		if it.Hash == kept.Items[0].Hash {
			t.Fatalf("%s granted twice", it.Hash)
		}
	}
}

// forgetfulJournal never learns releases: the journal write of a release
// that was lost (the API died right after answering).
type forgetfulJournal struct{ *storage.Journal }

func (forgetfulJournal) Released(*lockmgr.Reservation, time.Time) {}

// newJournal returns a journal on the fixture's store, closed with the test.
func (f *fixture) newJournal(t *testing.T) *storage.Journal {
	j := storage.NewJournal(f.store, storage.JournalOptions{})
	t.Cleanup(j.Close)
	return j
}

// forgetful returns a lock manager on the fixture's Redis keys whose
// journal never learns releases.
func (f *fixture) forgetful(t *testing.T) *lockmgr.Manager {
	return f.lockerWith(t, forgetfulJournal{f.newJournal(t)})
}

// lockerWith returns a lock manager on the fixture's Redis keys that writes
// through j, closed with the test.
func (f *fixture) lockerWith(t *testing.T, j lockmgr.Journal) *lockmgr.Manager {
	m := lockmgr.New(f.rdb, lockmgr.Options{Prefix: f.prefix, Journal: j})
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// syncedPool registers a pool of n UTXOs on the program named name and
// syncs it.
func (f *fixture) syncedPool(t *testing.T, name string, n int) storage.Pool {
	t.Helper()
	prog := program(name)
	if _, err := f.chain.AddUTXOs(asset, prog, amounts(n)); err != nil {
		t.Fatal(err)
	}
	p := f.pool(t, prog)
	if _, err := f.job().SyncPool(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

// A release the journal never learnt leaves two live reservations of one
// UTXO in the journal; after a loss of Redis the newer one, whose client was
// told it holds the UTXO, must be the one restored.
func TestRebuildRestoresTheNewerOfTwoLiveReservationsOfAUTXO(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	p := f.syncedPool(t, "lost-release", 1)
	locks := f.forgetful(t)
	var held []*lockmgr.Reservation
	for range 3 { // the last one is not released
		r, err := locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, r)
		if len(held) < 3 {
			if _, err := locks.Release(ctx, p.ID, r.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	live, err := f.store.LiveReservationIDs(ctx, p.ID, time.Now())
	if err != nil || len(live) != 3 {
		t.Fatalf("journal live reservations: %v (%v), want all 3", live, err)
	}
	f.flushAndRebuild(t, p.ID)
	newest := held[2]
	if got, err := locks.Get(ctx, p.ID, newest.ID); err != nil || got.Fence != newest.Fence {
		t.Fatalf("the newest reservation after the rebuild: %+v, %v", got, err)
	}
	for _, r := range held[:2] {
		if _, err := locks.Get(ctx, p.ID, r.ID); !errors.Is(err, lockmgr.ErrNotFound) {
			t.Fatalf("released reservation %d restored: %v", r.Fence, err)
		}
	}
	if _, err := locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Count: 1}); !errors.Is(err, lockmgr.ErrNoUTXOAvailable) {
		t.Fatalf("the held UTXO was granted again: %v", err)
	}
}

// A release Redis answered comes before the chain's settlement of the
// reservation, even when its journal write was lost with its API (or is
// still on its way) and the chain spent the UTXO just after: the journal
// must say released, as its client was told, not spent. And a release
// answered after the syncer took the UTXO out of Redis (while it is
// settling the reservation) goes through the journal, which orders it
// against the settlement.
func TestReleaseIsNotOvertakenByTheChain(t *testing.T) {
	t.Parallel()
	eachSource(t, func(t *testing.T, s *source) {
		ctx := context.Background()
		f := s.f
		prog := program(s.name + " release before spend")
		hashes, err := f.chain.AddUTXOs(asset, prog, []uint64{10, 20, 30})
		if err != nil {
			t.Fatal(err)
		}
		p := s.pool(t, asset, prog)
		forgetful := f.forgetful(t)

		// Released in Redis only, then spent by another party and settled.
		r, err := forgetful.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: hashes[:1], TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := forgetful.Release(ctx, p.ID, r.ID); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.chain.Spend(hashes[:1], []sim.Output{{Asset: asset, Program: program("elsewhere"), Amount: 10}}, false); err != nil {
			t.Fatal(err)
		}
		if _, err := f.chain.Mine(1); err != nil {
			t.Fatal(err)
		}
		s.sync(t)
		if got := f.journal(t, r.ID); got.State != lockmgr.StateReleased {
			t.Errorf("a release answered before the spend: the journal has it %s, want released", got.State)
		}

		// Released while the syncer settles: Redis no longer offers the
		// UTXO, the journal has not settled the reservation yet.
		r2, err := forgetful.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: hashes[1:2], TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.locks.ApplyChain(ctx, p.ID, nil, hashes[1:2]); err != nil {
			t.Fatal(err)
		}
		if res, err := forgetful.Release(ctx, p.ID, r2.ID); err != nil || res.State != lockmgr.StateReleased {
			t.Fatalf("release while the chain takes its UTXO: %+v, %v", res, err)
		}
		if _, err := f.store.Settle(ctx, p.ID, hashes[1:2]); err != nil {
			t.Fatal(err)
		}
		if got := f.journal(t, r2.ID); got.State != lockmgr.StateReleased {
			t.Errorf("a release answered while the syncer settles: the journal has it %s, want released", got.State)
		}
		// The chain did not take it after all (this test took it from Redis).
		if err := f.locks.ApplyChain(ctx, p.ID, []lockmgr.Item{{Hash: hashes[1], Amount: 20}}, nil); err != nil {
			t.Fatal(err)
		}
		f.checkNoneLost(t, p, f.liveHolds(t, p.ID))
	})
}

// A submit takes effect in Redis first; when its journal write fails (the
// database is down or slow and the client is answered 503), the journal
// still learns it once the database answers, instead of holding the
// reservation as held until it runs out while Redis keeps its UTXOs for the
// submit grace (a UTXO lost to the chaos checker's quiet point).
func TestSubmitWhoseJournalWriteFailedReachesTheJournal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	p := f.syncedPool(t, "late submit", 1)
	r, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Count: 1, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	// The row is locked: the submit's journal write waits past its caller.
	tx := f.store.DB().WithContext(ctx).Begin()
	if err := tx.Exec(`SELECT 1 FROM reservations WHERE id = ? FOR UPDATE`, r.ID).Error; err != nil {
		tx.Rollback()
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	txID := strings.Repeat("ab", 32)
	_, err = f.locks.Submit(short, p.ID, r.ID, txID)
	cancel()
	if err == nil {
		tx.Rollback()
		t.Fatal("submit succeeded while its journal row was locked")
	}
	tx.Rollback()
	if got, err := f.locks.Get(ctx, p.ID, r.ID); err != nil || got.State != lockmgr.StateSubmitted {
		t.Fatalf("redis after the failed submit: %+v, %v; want it submitted", got, err)
	}
	waitFor(t, 10*time.Second, "the journal to learn the submit", func() bool {
		row := f.journal(t, r.ID)
		return row.State == storage.ResSubmitted && row.TxID == txID
	})
}

// flushKeys deletes every key of f's Redis prefix: Redis lost the pools.
func (f *fixture) flushKeys(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	iter := f.rdb.Scan(ctx, 0, f.prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		if err := f.rdb.Del(ctx, iter.Val()).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
}

// waitReleasedEverywhere waits until Redis no longer has reservation id
// live and the journal has it released, then checks that its UTXOs can be
// reserved again.
func (f *fixture) waitReleasedEverywhere(t *testing.T, pool int64, res *lockmgr.Reservation) {
	t.Helper()
	ctx := context.Background()
	testenv.Eventually(t, 10*time.Second, func() error {
		got, err := f.locks.Peek(ctx, pool, res.ID)
		if errors.Is(err, lockmgr.ErrNotFound) || (err == nil && got.State == lockmgr.StateReleased) {
			return nil
		}
		return fmt.Errorf("reservation %s answered released, but Redis still has it: %+v, %v", res.ID, got, err)
	})
	if got := f.journal(t, res.ID); got.State != lockmgr.StateReleased {
		t.Fatalf("the journal has reservation %s %s, want released", res.ID, got.State)
	}
	again, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: pool, Hashes: res.Hashes(), TTL: time.Minute})
	if err != nil {
		t.Fatalf("reserve the released UTXOs again: %v", err)
	}
	if again.ID == res.ID {
		t.Fatalf("reserve again answered the released reservation %s", res.ID)
	}
}

// heldReleases keeps the releases a Manager tells the journal until land:
// a release's deferred write still on its way.
type heldReleases struct {
	*storage.Journal
	mu   sync.Mutex
	held []func()
}

func (j *heldReleases) Released(r *lockmgr.Reservation, at time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.held = append(j.held, func() { j.Journal.Released(r, at) })
}

// land passes the held releases on to the journal.
func (j *heldReleases) land() {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, release := range j.held {
		release()
	}
	j.held = nil
}

// A release is answered while its journal write is on its way; Redis loses
// the pool, and a rebuild restores the reservation from the journal, where it
// is still held; then the write lands. The client was told the reservation is
// released: Redis must end the restored hold, not keep it until it runs out.
func TestReleaseLandingAfterARebuildEndsTheRestoredHold(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	p := f.syncedPool(t, "late release", 3)
	j := &heldReleases{Journal: f.newJournal(t)}
	locks := f.lockerWith(t, j)
	res, err := locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Count: 2, TTL: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := locks.Release(ctx, p.ID, res.ID); err != nil || got.State != lockmgr.StateReleased {
		t.Fatalf("release: %+v, %v", got, err)
	}
	f.flushAndRebuild(t, p.ID)
	if got, err := f.locks.Peek(ctx, p.ID, res.ID); err != nil || got.State != lockmgr.StateHeld {
		t.Fatalf("the rebuild did not restore the reservation whose release is on its way (%+v, %v): the test proves nothing", got, err)
	}
	j.land()
	f.waitReleasedEverywhere(t, p.ID, res)
}

// A release of a reservation in a pool Redis lost is decided by the journal;
// a rebuild that took its snapshot before that and commits it after restores
// the reservation: Redis must end it again once the pool is loaded.
func TestReleaseWhileThePoolIsLostEndsTheRestoredHold(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	p := f.syncedPool(t, "release while lost", 3)
	res, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Count: 1, TTL: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	f.flushKeys(t)
	// A rebuild's first half: a new load, and the snapshot.
	load, err := lockmgr.NewLoadID()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.BeginLoad(ctx, p.ID, load); err != nil {
		t.Fatal(err)
	}
	snap, err := f.store.LockSnapshot(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	snap.Load = load
	if got, err := f.locks.Release(ctx, p.ID, res.ID); err != nil || got.State != lockmgr.StateReleased {
		t.Fatalf("release while Redis lost the pool: %+v, %v", got, err)
	}
	// Its second half restores the reservation the snapshot has live.
	if err := f.locks.Rebuild(ctx, p.ID, snap); err != nil {
		t.Fatal(err)
	}
	f.waitReleasedEverywhere(t, p.ID, res)
}
