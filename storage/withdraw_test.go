package storage_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
)

// A grant whose journal write timed out while PostgreSQL was paused is undone
// in Redis and answered as failed, but the paused server still holds the
// statement and carries it out when it resumes. The journal must not keep
// that grant live: once the UTXO is granted again it would show it held by
// two reservations (found by e2e's TestPostgresDownFailsClosed).
func TestGrantTimedOutOnAPausedServerIsNotLeftLive(t *testing.T) {
	t.Parallel()
	srv, s := openPrivatePostgres(t)
	p := mustPool(t, s, assetA, programA)
	rdb, prefix := testenv.Redis(t)
	m := lockmgr.New(rdb, lockmgr.Options{Prefix: prefix,
		Journal: newJournal(t, s, storage.JournalOptions{Timeout: 500 * time.Millisecond})})
	t.Cleanup(func() { _ = m.Close() })
	ctx := testCtx(t)
	hash := hashOf(1, 1)
	if err := m.Rebuild(ctx, p.ID, lockmgr.Snapshot{Available: []lockmgr.Item{{Hash: hash, Amount: 5}}}); err != nil {
		t.Fatal(err)
	}
	req := lockmgr.Request{PoolID: p.ID, Hashes: []string{hash}, Owner: "o", TTL: 10 * time.Minute}

	// One grant and its release first, so that the journal's connection has
	// its statements prepared: the next grant goes to the server in one write.
	first, err := m.Reserve(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Release(ctx, p.ID, first.ID); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	lost, err := m.Reserve(ctx, req)
	srv.Cont()
	if err == nil {
		t.Fatalf("a grant journalled on a paused server was acknowledged: %+v", lost)
	}
	if errors.Is(err, lockmgr.ErrRebuilding) {
		t.Fatalf("reserve on a paused server: %v, want the journal's timeout", err)
	}

	// Granted again, to someone else.
	again, err := m.Reserve(ctx, req)
	if err != nil {
		t.Fatalf("the UTXO is not free again after the failed grant: %v", err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		var live []string
		err := s.DB().WithContext(ctx).Model(&storage.Reservation{}).
			Where("pool_id = ? AND state IN ?", p.ID, []string{storage.ResHeld, storage.ResSubmitted}).Pluck("id", &live).Error
		if err != nil {
			return err
		}
		if len(live) != 1 || live[0] != again.ID {
			return fmt.Errorf("live journal rows of the pool: %v; want only the second grant, %s", live, again.ID)
		}
		return nil
	})
}

// Withdrawn leaves the grant released whether its write committed before
// (the row is released and its idempotency key freed), never (a released row
// is written) or after (the late write finds the row and changes nothing).
func TestWithdrawnGrantIsReleasedWhenEverItsWriteLands(t *testing.T) {
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		j := newJournal(t, s, storage.JournalOptions{})
		check := func(what string, r *lockmgr.Reservation) {
			t.Helper()
			if err := j.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			got := mustReservation(t, s, r.ID)
			if got.State != storage.ResReleased || got.IdempotencyKey != "" {
				t.Errorf("%s: row %+v, want it released without its idempotency key", what, got)
			}
		}

		before := lockRes(p.ID, 1, hashOf(1, 1))
		before.Key = lockmgr.KeyDigest("key-1")
		if err := j.Record(ctx, before); err != nil {
			t.Fatal(err)
		}
		j.Withdrawn(before)
		check("written before", before)

		never := lockRes(p.ID, 2, hashOf(1, 2))
		never.Key = lockmgr.KeyDigest("key-2")
		j.Withdrawn(never)
		check("never written", never)
		late := *never
		if err := j.Record(ctx, &late); err != nil {
			t.Fatalf("the late write: %v", err)
		}
		check("written after", never)

		// The freed key serves the request's retry.
		retry := lockRes(p.ID, 3, hashOf(1, 1))
		retry.Key = before.Key
		if err := j.Record(ctx, retry); err != nil {
			t.Fatalf("a retry with the failed request's key: %v", err)
		}
	})
}

// The journal passes on the deferred endings (releases, withdrawn grants) it
// wrote after their pool was reloaded into Redis since they were decided, and
// only those: a rebuild's snapshot may have restored them live.
func TestDeferredEndingsAfterAReloadAreFollowed(t *testing.T) {
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		j := newJournal(t, s, storage.JournalOptions{})
		followed := make(chan []string, 10)
		j.FollowReloads(func(pool int64, ids []string) {
			if pool != p.ID {
				t.Errorf("followed pool %d, want %d", pool, p.ID)
			}
			followed <- ids
		})
		next := func(want string) {
			t.Helper()
			select {
			case ids := <-followed:
				if len(ids) != 1 || ids[0] != want {
					t.Fatalf("followed %v, want [%s]", ids, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s was not followed", want)
			}
		}
		if err := s.BeginLoad(ctx, p.ID, "load-1"); err != nil {
			t.Fatal(err)
		}
		grant := func(fence int64, load string) *lockmgr.Reservation {
			t.Helper()
			r := lockRes(p.ID, fence, hashOf(2, int(fence)))
			r.Load = load
			if err := j.Record(ctx, r); err != nil {
				t.Fatal(err)
			}
			return r
		}
		same, reloaded, withdrawn, newer := grant(1, "load-1"), grant(2, "load-1"), grant(3, "load-1"), grant(4, "load-1")

		j.Released(same, time.Now()) // released in the pool's current load
		if err := j.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.BeginLoad(ctx, p.ID, "load-2"); err != nil {
			t.Fatal(err)
		}
		j.Released(reloaded, time.Now())
		next(reloaded.ID) // and not same first
		j.Withdrawn(withdrawn)
		next(withdrawn.ID)
		newer.Load = "load-2" // released after the reload
		j.Released(newer, time.Now())
		j.Withdrawn(lockRes(p.ID, 5, hashOf(2, 5))) // a grant with no load: nothing to follow
		never := lockRes(p.ID, 6, hashOf(2, 6))
		never.Load = "load-1"
		j.Withdrawn(never)
		next(never.ID)
	})
}

// A grant undone in Redis after its journal write timed out may still land
// in the journal, live and with its request's idempotency key, until its
// withdrawal's write frees the key. A retry of that request in between must
// not be answered that grant as its replay: Redis let its UTXOs go, so
// another client may hold them. It is told to retry, and the retry after the
// withdrawal is granted anew.
func TestRetryBeforeAWithdrawalLandsIsNotAnsweredTheUndoneGrant(t *testing.T) {
	t.Parallel()
	s := openPostgres(t)
	p := mustPool(t, s, assetA, programA)
	rdb, prefix := testenv.Redis(t)
	j := newJournal(t, s, storage.JournalOptions{})
	m := lockmgr.New(rdb, lockmgr.Options{Prefix: prefix, Journal: j})
	t.Cleanup(func() { _ = m.Close() })
	ctx := testCtx(t)
	hash := hashOf(3, 1)
	if err := m.Rebuild(ctx, p.ID, lockmgr.Snapshot{Available: []lockmgr.Item{{Hash: hash, Amount: 5}}}); err != nil {
		t.Fatal(err)
	}
	req := lockmgr.Request{PoolID: p.ID, Hashes: []string{hash}, Owner: "o", TTL: 10 * time.Minute,
		IdempotencyKey: "retry-me", Fingerprint: "f"}

	// The late write of the undone grant: in the journal, not in Redis.
	undone := lockRes(p.ID, 1, hash)
	undone.Key, undone.Fingerprint = lockmgr.KeyDigest(req.IdempotencyKey), req.Fingerprint
	if err := j.Record(ctx, undone); err != nil {
		t.Fatal(err)
	}
	got, err := m.Reserve(ctx, req)
	if err == nil {
		t.Fatalf("the retry was answered %+v (the undone grant is %s), want ErrKeyInFlight", got, undone.ID)
	}
	if !errors.Is(err, lockmgr.ErrKeyInFlight) {
		t.Fatalf("the retry: %v, want ErrKeyInFlight", err)
	}

	j.Withdrawn(undone)
	if err := j.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got, err = m.Reserve(ctx, req)
	if err != nil || got.ID == undone.ID || got.Replayed {
		t.Fatalf("the retry after the withdrawal: %+v, %v; want a new grant", got, err)
	}
}
