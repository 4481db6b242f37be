package storage_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/testenv"
)

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// lockRes is a held lockmgr reservation of pool with fence and hashes.
func lockRes(pool, fence int64, hashes ...string) *lockmgr.Reservation {
	items := make([]lockmgr.Item, len(hashes))
	for i, h := range hashes {
		items[i] = lockmgr.Item{Hash: h, Amount: 1}
	}
	t := time.Now().UTC().Truncate(time.Millisecond)
	return &lockmgr.Reservation{
		ID: newID(), PoolID: pool, Fence: fence, Owner: "o", Items: items, State: lockmgr.StateHeld,
		CreatedAt: t, ExpiresAt: t.Add(10 * time.Minute),
	}
}

func newJournal(t *testing.T, s *storage.Store, opts storage.JournalOptions) *storage.Journal {
	t.Helper()
	j := storage.NewJournal(s, opts)
	t.Cleanup(j.Close)
	return j
}

func mustReservation(t *testing.T, s *storage.Store, id string) storage.Reservation {
	t.Helper()
	r, err := s.GetReservation(testCtx(t), id)
	if err != nil {
		t.Fatalf("GetReservation(%s): %v", id, err)
	}
	return r
}

// blockJournal makes the journal's next transaction wait: it locks the
// reservations table (PostgreSQL) until the returned function is called.
func blockJournal(t *testing.T, s *storage.Store) (unblock func()) {
	t.Helper()
	tx := s.DB().WithContext(testCtx(t)).Begin()
	if tx.Error != nil {
		t.Fatal(tx.Error)
	}
	if err := tx.Exec(`LOCK TABLE reservations IN EXCLUSIVE MODE`).Error; err != nil {
		tx.Rollback()
		t.Fatal(err)
	}
	var once sync.Once
	unblock = func() { once.Do(func() { tx.Rollback() }) }
	t.Cleanup(unblock)
	return unblock
}

// waitFor polls cond every 5 ms for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitLockWaiters waits until n journal INSERTs wait on the table lock.
func waitLockWaiters(t *testing.T, s *storage.Store, n int) {
	t.Helper()
	waitFor(t, "a journal transaction waiting on the table lock", func() bool {
		var got int
		err := s.DB().WithContext(testCtx(t)).Raw(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'
			AND query LIKE 'INSERT INTO reservations %'`).Scan(&got).Error
		return err == nil && got == n
	})
}

func TestJournalGroupCommit(t *testing.T) {
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		mustReconcile(t, s, p, chainUTXOs(p, 1, 0, 400))
		j := newJournal(t, s, storage.JournalOptions{})

		const n = 200
		res := make([]*lockmgr.Reservation, n)
		for i := range res {
			res[i] = lockRes(p.ID, int64(i+1), hashOf(1, 2*i), hashOf(1, 2*i+1))
		}
		stmts0 := s.StatementCount()
		start := make(chan struct{})
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range res {
			wg.Go(func() {
				<-start
				errs[i] = j.Record(ctx, res[i])
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("Record %d: %v", i, err)
			}
		}
		batches, stmts := j.Batches(), s.StatementCount()-stmts0
		t.Logf("%d records in %d transactions, %d statements", n, batches, stmts)
		if batches < 1 || batches > n/4 {
			t.Errorf("Batches = %d, want between 1 and %d", batches, n/4)
		}
		// A record on its own takes two statements; a batch takes two for all.
		if stmts > n/2 {
			t.Errorf("%d statements for %d records, want at most %d", stmts, n, n/2)
		}
		if c := mustCounts(t, s, p.ID); c != (storage.Counts{Reserved: 2 * n}) {
			t.Errorf("counts = %+v, want all %d reserved", c, 2*n)
		}
		for _, r := range res {
			got := mustReservation(t, s, r.ID)
			if got.Fence != r.Fence || got.State != storage.ResHeld || got.Owner != "o" ||
				got.Hashes != r.Items[0].Hash+","+r.Items[1].Hash || !got.ExpiresAt.Equal(r.ExpiresAt) ||
				!got.CreatedAt.Equal(r.CreatedAt) {
				t.Fatalf("row %+v does not match %+v", got, r)
			}
		}
		// Releases as lockmgr writes them (the reservation as it was, state
		// released) are ended in batches too: on PostgreSQL a few statements
		// per batch, where one by one each takes two.
		stmts0, batches0 := s.StatementCount(), j.Batches()
		start = make(chan struct{})
		for i := range res {
			wg.Go(func() {
				<-start
				ended := *res[i]
				ended.State = lockmgr.StateReleased
				errs[i] = j.Update(ctx, &ended)
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("Update %d: %v", i, err)
			}
		}
		batches, stmts = j.Batches()-batches0, s.StatementCount()-stmts0
		t.Logf("%d releases in %d transactions, %d statements", n, batches, stmts)
		if s.Dialect() == storage.DialectPostgres && stmts > n/2 {
			t.Errorf("%d statements for %d releases, want at most %d", stmts, n, n/2)
		}
		if c := mustCounts(t, s, p.ID); c != (storage.Counts{Available: 2 * n}) {
			t.Errorf("counts after the releases = %+v, want all %d available", c, 2*n)
		}
		if got := mustReservation(t, s, res[0].ID); got.State != storage.ResReleased || !got.ExpiresAt.Equal(res[0].ExpiresAt) {
			t.Errorf("released row %+v: want released with its expiry kept", got)
		}
		// Recording the same reservation again is a no-op; a lone write commits.
		if err := j.Record(ctx, res[0]); err != nil {
			t.Errorf("Record again: %v", err)
		}
		if err := j.Record(ctx, &lockmgr.Reservation{ID: newID(), PoolID: p.ID, Fence: 999}); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("Record without hashes: err = %v, want ErrInvalidArgument", err)
		}
	})
}

func TestJournalUpdate(t *testing.T) {
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		mustReconcile(t, s, p, chainUTXOs(p, 1, 0, 200))
		j := newJournal(t, s, storage.JournalOptions{})
		a := lockRes(p.ID, 1, hashOf(1, 0))
		b := lockRes(p.ID, 2, hashOf(1, 1))
		c := lockRes(p.ID, 3, hashOf(1, 2), hashOf(1, 3))
		for _, r := range []*lockmgr.Reservation{a, b, c} {
			if err := j.Record(ctx, r); err != nil {
				t.Fatal(err)
			}
		}

		// Extend a, and store a newer fence with it.
		a.ExpiresAt = a.ExpiresAt.Add(time.Hour)
		a.Fence = 7
		if err := j.Update(ctx, a); err != nil {
			t.Fatalf("extend: %v", err)
		}
		if got := mustReservation(t, s, a.ID); !got.ExpiresAt.Equal(a.ExpiresAt) || got.Fence != 7 || got.State != storage.ResHeld {
			t.Errorf("after extend: %+v", got)
		}
		// Submit b.
		b.State, b.TxID = lockmgr.StateSubmitted, "ab12"
		if err := j.Update(ctx, b); err != nil {
			t.Fatalf("submit: %v", err)
		}
		if got := mustReservation(t, s, b.ID); got.State != storage.ResSubmitted || got.TxID != "ab12" {
			t.Errorf("after submit: %+v", got)
		}
		// Release c: its UTXOs are free again.
		c.State = lockmgr.StateReleased
		if err := j.Update(ctx, c); err != nil {
			t.Fatalf("release: %v", err)
		}
		if got := mustReservation(t, s, c.ID); got.State != storage.ResReleased {
			t.Errorf("after release: %+v", got)
		}
		if st := statesOf(t, s, hashOf(1, 0), hashOf(1, 2), hashOf(1, 3)); st[hashOf(1, 0)] != storage.StateReserved ||
			st[hashOf(1, 2)] != storage.StateAvailable || st[hashOf(1, 3)] != storage.StateAvailable {
			t.Errorf("utxo states after release: %v", st)
		}

		// Refused updates fail their caller and change nothing.
		beforeA, beforeC := mustReservation(t, s, a.ID), mustReservation(t, s, c.ID)
		old := *a
		old.Fence, old.State = 1, lockmgr.StateReleased
		if err := j.Update(ctx, &old); !errors.Is(err, storage.ErrStaleFence) {
			t.Errorf("update with an old fence: err = %v, want ErrStaleFence", err)
		}
		ended := *c
		ended.State, ended.ExpiresAt = lockmgr.StateHeld, c.ExpiresAt.Add(time.Hour)
		if err := j.Update(ctx, &ended); !errors.Is(err, storage.ErrNotLive) {
			t.Errorf("update of a released reservation: err = %v, want ErrNotLive", err)
		}
		unknown := lockRes(p.ID, 50, hashOf(1, 9))
		if err := j.Update(ctx, unknown); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("update of an unknown reservation: err = %v, want ErrNotFound", err)
		}
		if err := j.Update(ctx, &lockmgr.Reservation{ID: a.ID, Fence: 0}); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("update without fence: err = %v, want ErrInvalidArgument", err)
		}
		if got := mustReservation(t, s, a.ID); got != beforeA {
			t.Errorf("a refused update changed a: %+v, was %+v", got, beforeA)
		}
		if got := mustReservation(t, s, c.ID); got != beforeC {
			t.Errorf("a refused update changed c: %+v, was %+v", got, beforeC)
		}
		if st := statesOf(t, s, hashOf(1, 0), hashOf(1, 2)); st[hashOf(1, 0)] != storage.StateReserved || st[hashOf(1, 2)] != storage.StateAvailable {
			t.Errorf("a refused update changed utxo states: %v", st)
		}

		// Many concurrent releases land together.
		const n = 60
		many := make([]*lockmgr.Reservation, n)
		for i := range many {
			many[i] = lockRes(p.ID, int64(100+i), hashOf(1, 10+i))
			if err := j.Record(ctx, many[i]); err != nil {
				t.Fatal(err)
			}
		}
		b0 := j.Batches()
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i, r := range many {
			wg.Go(func() {
				r.State = lockmgr.StateReleased
				errs[i] = j.Update(ctx, r)
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("release %d: %v", i, err)
			}
		}
		t.Logf("%d releases in %d transactions", n, j.Batches()-b0)
		if d := j.Batches() - b0; d > n/3 {
			t.Errorf("%d releases took %d transactions", n, d)
		}
		// Only a's and b's UTXOs are still reserved.
		if c := mustCounts(t, s, p.ID); c != (storage.Counts{Available: 198, Reserved: 2}) {
			t.Errorf("counts after releases: %+v", c)
		}
	})
}

// A batch with a write that fails as a whole is retried write by write, so
// only the bad write's caller gets an error; refused updates do not fail a batch.
func TestJournalBatchIsolatesBadWrites(t *testing.T) {
	s := openPostgres(t)
	ctx := testCtx(t)
	p := mustPool(t, s, assetA, programA)
	mustReconcile(t, s, p, chainUTXOs(p, 1, 0, 100))
	j := newJournal(t, s, storage.JournalOptions{})

	first := lockRes(p.ID, 1, hashOf(1, 0))
	ended := lockRes(p.ID, 2, hashOf(1, 1))
	for _, r := range []*lockmgr.Reservation{first, ended} {
		if err := j.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	ended.State = lockmgr.StateReleased
	if err := j.Update(ctx, ended); err != nil {
		t.Fatal(err)
	}

	// run queues writes behind a blocked transaction, releases it and returns
	// each write's error and the group transactions committed meanwhile.
	run := func(writes []func() error) ([]error, int64) {
		t.Helper()
		unblock := blockJournal(t, s)
		b0 := j.Batches()
		blocker := make(chan error, 1)
		go func() { blocker <- j.Record(ctx, lockRes(p.ID, 1000+b0, hashOf(1, 90+int(b0)))) }()
		waitLockWaiters(t, s, 1)
		errs := make([]error, len(writes))
		var wg sync.WaitGroup
		for i, w := range writes {
			wg.Go(func() { errs[i] = w() })
		}
		waitFor(t, "writes queued", func() bool { return j.Pending() == len(writes) })
		unblock()
		wg.Wait()
		if err := <-blocker; err != nil {
			t.Fatalf("blocked write: %v", err)
		}
		return errs, j.Batches() - b0
	}

	good := make([]*lockmgr.Reservation, 8)
	var writes []func() error
	for i := range good {
		good[i] = lockRes(p.ID, int64(10+i), hashOf(1, 10+i))
		writes = append(writes, func() error { return j.Record(ctx, good[i]) })
	}
	stale := lockRes(p.ID, first.Fence, hashOf(1, 30)) // another reservation with first's fence
	writes = append(writes, func() error { return j.Record(ctx, stale) })
	release := *first
	release.State = lockmgr.StateReleased
	writes = append(writes, func() error { return j.Update(ctx, &release) })
	again := *ended
	again.State = lockmgr.StateSubmitted
	writes = append(writes, func() error { return j.Update(ctx, &again) })

	errs, batches := run(writes)
	for i := range good {
		if errs[i] != nil {
			t.Errorf("good record %d: %v", i, errs[i])
		}
		mustReservation(t, s, good[i].ID)
	}
	if err := errs[len(good)]; !errors.Is(err, storage.ErrStaleFence) {
		t.Errorf("record with a used fence: err = %v, want ErrStaleFence", err)
	}
	if err := errs[len(good)+1]; err != nil {
		t.Errorf("release in the failed batch: %v", err)
	}
	if err := errs[len(good)+2]; !errors.Is(err, storage.ErrNotLive) {
		t.Errorf("update of an ended reservation: err = %v, want ErrNotLive", err)
	}
	if batches != 1 { // the blocked one; the failed batch was retried write by write
		t.Errorf("group transactions = %d, want 1", batches)
	}
	if _, err := s.GetReservation(ctx, stale.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the stale record was written: err = %v", err)
	}
	if st := statesOf(t, s, hashOf(1, 0), hashOf(1, 30), hashOf(1, 10)); st[hashOf(1, 0)] != storage.StateAvailable ||
		st[hashOf(1, 30)] != storage.StateAvailable || st[hashOf(1, 10)] != storage.StateReserved {
		t.Errorf("utxo states: %v", st)
	}
	if got := mustReservation(t, s, ended.ID); got.State != storage.ResReleased {
		t.Errorf("ended reservation changed: %+v", got)
	}

	// Refused updates alone do not fail the group transaction.
	more := make([]*lockmgr.Reservation, 4)
	writes = nil
	for i := range more {
		more[i] = lockRes(p.ID, int64(50+i), hashOf(1, 50+i))
		writes = append(writes, func() error { return j.Record(ctx, more[i]) })
	}
	old := *good[0]
	old.Fence = 3 // good[0] has fence 10
	writes = append(writes, func() error { return j.Update(ctx, &old) })
	writes = append(writes, func() error { return j.Update(ctx, lockRes(p.ID, 60, hashOf(1, 60))) })
	errs, batches = run(writes)
	for i := range more {
		if errs[i] != nil {
			t.Errorf("record %d: %v", i, errs[i])
		}
		mustReservation(t, s, more[i].ID)
	}
	if !errors.Is(errs[4], storage.ErrStaleFence) || !errors.Is(errs[5], storage.ErrNotFound) {
		t.Errorf("refused updates: %v, %v; want ErrStaleFence, ErrNotFound", errs[4], errs[5])
	}
	if batches != 2 {
		t.Errorf("group transactions = %d, want 2 (the blocked one and the rest together)", batches)
	}
}

func TestJournalCloseFlushes(t *testing.T) {
	s := openPostgres(t)
	ctx := testCtx(t)
	p := mustPool(t, s, assetA, programA)
	mustReconcile(t, s, p, chainUTXOs(p, 1, 0, 100))
	j := storage.NewJournal(s, storage.JournalOptions{MaxBatch: 8})

	unblock := blockJournal(t, s)
	const n = 20
	res := make([]*lockmgr.Reservation, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range res {
		res[i] = lockRes(p.ID, int64(i+1), hashOf(1, i))
		wg.Go(func() { errs[i] = j.Record(ctx, res[i]) })
		if i == 0 {
			waitLockWaiters(t, s, 1) // the first write's transaction waits
		}
	}
	waitFor(t, "writes queued", func() bool { return j.Pending() == n-1 })

	// A caller that gives up returns at once; its write, not started, is dropped.
	gone := lockRes(p.ID, 99, hashOf(1, 99))
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	t0 := time.Now()
	err := j.Record(cctx, gone)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) > 2*time.Second {
		t.Errorf("Record with an expiring context: err = %v after %v", err, time.Since(t0))
	}

	closed := make(chan struct{})
	go func() { j.Close(); close(closed) }()
	done, stop := context.WithCancel(ctx)
	stop() // so that a probe never waits in the queue
	waitFor(t, "journal closed to new writes", func() bool {
		return errors.Is(j.Record(done, lockRes(p.ID, 500, hashOf(1, 50))), storage.ErrJournalClosed)
	})
	unblock()
	<-closed
	var count int64
	if err := s.DB().WithContext(ctx).Model(&storage.Reservation{}).Count(&count).Error; err != nil {
		t.Fatal(err)
	}
	if count != n {
		t.Errorf("%d reservations stored when Close returned, want %d", count, n)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Record %d: %v", i, err)
		}
	}
	if _, err := s.GetReservation(ctx, gone.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the abandoned write was committed: err = %v", err)
	}
	j.Close() // twice is fine
}

// With PostgreSQL gone or hung, a write fails within its caller's context, and
// the journal works again once the server is back.
func TestJournalDatabaseDown(t *testing.T) {
	srv := testenv.StartPostgres(t)
	url := testenv.CreateDatabase(t, srv.URL())
	ctx := testCtx(t)
	if err := storage.MigrateUp(ctx, url); err != nil {
		t.Fatal(err)
	}
	s, err := storage.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	p := mustPool(t, s, assetA, programA)
	j := newJournal(t, s, storage.JournalOptions{})
	fence := int64(0)
	record := func(timeout time.Duration) (time.Duration, error) {
		fence++
		c, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		t0 := time.Now()
		err := j.Record(c, lockRes(p.ID, fence, hashOf(1, int(fence))))
		return time.Since(t0), err
	}
	recovers := func(what string) {
		t.Helper()
		var err error
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
			if _, err = record(2 * time.Second); err == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("journal did not recover after %s: %v", what, err)
	}
	if _, err := record(5 * time.Second); err != nil {
		t.Fatal(err)
	}

	// Hung: the write gives up with its context.
	srv.Stop()
	took, err := record(300 * time.Millisecond)
	if err == nil || took > 2*time.Second {
		t.Errorf("Record with the server stopped: err = %v after %v", err, took)
	}
	srv.Cont()
	recovers("SIGCONT")

	// Gone: the write fails promptly, well before its deadline. (The server
	// runs without fsync: checkpoint so that the pool survives the kill.)
	if err := s.DB().WithContext(ctx).Exec(`CHECKPOINT`).Error; err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	took, err = record(10 * time.Second)
	if err == nil || took > 5*time.Second {
		t.Errorf("Record with the server killed: err = %v after %v", err, took)
	}
	srv.Restart()
	recovers("restart")
}
