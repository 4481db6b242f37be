package storage_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
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

// holdings returns the rows of reservation_utxos, "id:hash:pool" sorted.
func holdings(t *testing.T, s *storage.Store) []string {
	t.Helper()
	var rows []storage.ReservationUTXO
	if err := s.DB().WithContext(testCtx(t)).Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = fmt.Sprintf("%s:%s:%d", r.ReservationID, r.Hash, r.PoolID)
	}
	slices.Sort(out)
	return out
}

// holdingRows is what holdings shows for reservation r of pool.
func holdingRows(pool int64, r *lockmgr.Reservation) []string {
	var out []string
	for _, h := range r.Hashes() {
		out = append(out, fmt.Sprintf("%s:%s:%d", r.ID, h, pool))
	}
	return out
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

// waitFor waits up to 10 s for cond to hold.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		if !cond() {
			return fmt.Errorf("waiting for %s", what)
		}
		return nil
	})
}

// waitLockWaiters waits until n journal INSERTs wait on the table lock.
func waitLockWaiters(t *testing.T, s *storage.Store, n int) {
	t.Helper()
	waitFor(t, "a journal transaction waiting on the table lock", func() bool {
		var got int
		err := s.DB().WithContext(testCtx(t)).Raw(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'
			AND (query LIKE 'INSERT INTO reservations %' OR query LIKE 'WITH%INSERT INTO reservations %')`).Scan(&got).Error
		return err == nil && got == n
	})
}

func TestJournalGroupCommit(t *testing.T) {
	t.Parallel()
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
		// A record on its own takes two statements (the reservation, what it
		// holds); a batch takes two for all.
		if stmts > n/2 {
			t.Errorf("%d statements for %d records, want at most %d", stmts, n, n/2)
		}
		// Reserved is derived from the live reservations' holdings.
		if c := mustCounts(t, s, p.ID); c != (storage.Counts{Reserved: 2 * n}) {
			t.Errorf("counts = %+v, want all %d reserved", c, 2*n)
		}
		var want []string
		for _, r := range res {
			got := mustReservation(t, s, r.ID)
			if got.Fence != r.Fence || got.State != storage.ResHeld || got.Owner != "o" ||
				got.Hashes != r.Items[0].Hash+","+r.Items[1].Hash || !got.ExpiresAt.Equal(r.ExpiresAt) ||
				!got.CreatedAt.Equal(r.CreatedAt) {
				t.Fatalf("row %+v does not match %+v", got, r)
			}
			want = append(want, holdingRows(p.ID, r)...)
		}
		slices.Sort(want)
		if got := holdings(t, s); !slices.Equal(got, want) {
			t.Errorf("reservation_utxos has %d rows, want the %d the reservations hold", len(got), len(want))
		}
		// Releases as lockmgr writes them (the reservation as it was, state
		// released, from held) are ended in batches too: on PostgreSQL a few
		// statements per batch, where one by one each takes two.
		stmts0, batches0 := s.StatementCount(), j.Batches()
		start = make(chan struct{})
		for i := range res {
			wg.Go(func() {
				<-start
				ended := *res[i]
				ended.State = lockmgr.StateReleased
				errs[i] = j.Update(ctx, &ended, lockmgr.StateHeld)
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
		// What a reservation held stays recorded after it ended (Settle and
		// FailLineage look spent ones up by UTXO).
		if got := holdings(t, s); !slices.Equal(got, want) {
			t.Errorf("reservation_utxos changed by the releases: %d rows, want %d", len(got), len(want))
		}
		// Recording the same reservation again is a no-op; a lone write commits.
		if err := j.Record(ctx, res[0]); err != nil {
			t.Errorf("Record again: %v", err)
		}
		if got := mustReservation(t, s, res[0].ID); got.State != storage.ResReleased {
			t.Errorf("recording again changed the row: %+v", got)
		}
		if err := j.Record(ctx, &lockmgr.Reservation{ID: newID(), PoolID: p.ID, Fence: 999}); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("Record without hashes: err = %v, want ErrInvalidArgument", err)
		}
	})
}

func TestJournalUpdate(t *testing.T) {
	t.Parallel()
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
		if err := j.Update(ctx, a, lockmgr.StateHeld); err != nil {
			t.Fatalf("extend: %v", err)
		}
		if got := mustReservation(t, s, a.ID); !got.ExpiresAt.Equal(a.ExpiresAt) || got.Fence != 7 || got.State != storage.ResHeld {
			t.Errorf("after extend: %+v", got)
		}
		// Submit b.
		b.State, b.TxID = lockmgr.StateSubmitted, "ab12"
		if err := j.Update(ctx, b, lockmgr.StateHeld); err != nil {
			t.Fatalf("submit: %v", err)
		}
		if got := mustReservation(t, s, b.ID); got.State != storage.ResSubmitted || got.TxID != "ab12" {
			t.Errorf("after submit: %+v", got)
		}
		// Release c: its UTXOs are free again.
		c.State = lockmgr.StateReleased
		if err := j.Update(ctx, c, lockmgr.StateHeld); err != nil {
			t.Fatalf("release: %v", err)
		}
		if got := mustReservation(t, s, c.ID); got.State != storage.ResReleased {
			t.Errorf("after release: %+v", got)
		}
		// The journal no longer writes utxos.state: reserved is derived.
		wantStates(t, "stored states", statesOf(t, s, hashOf(1, 0), hashOf(1, 1), hashOf(1, 2)), map[string]string{
			hashOf(1, 0): storage.StateAvailable, hashOf(1, 1): storage.StateAvailable, hashOf(1, 2): storage.StateAvailable})
		wantListed := map[string]string{hashOf(1, 0): storage.StateReserved, hashOf(1, 1): storage.StateReserved,
			hashOf(1, 2): storage.StateAvailable, hashOf(1, 3): storage.StateAvailable}
		wantStates(t, "after release", listedStates(t, s, p.ID), wantListed)

		// Refused updates fail their caller and change nothing.
		beforeA, beforeB, beforeC := mustReservation(t, s, a.ID), mustReservation(t, s, b.ID), mustReservation(t, s, c.ID)
		old := *a
		old.Fence, old.State = 1, lockmgr.StateReleased
		if err := j.Update(ctx, &old); !errors.Is(err, storage.ErrStaleFence) {
			t.Errorf("update with an old fence: err = %v, want ErrStaleFence", err)
		}
		ended := *c
		ended.State, ended.ExpiresAt = lockmgr.StateHeld, c.ExpiresAt.Add(time.Hour)
		if err := j.Update(ctx, &ended); !errors.Is(err, storage.ErrNotLive) || !errors.Is(err, lockmgr.ErrEnded) {
			t.Errorf("update of a released reservation: err = %v, want ErrNotLive and lockmgr.ErrEnded", err)
		}
		// Ending an ended reservation again: ErrEnded (lockmgr answers a
		// repeated release from it).
		again := *c
		again.State = lockmgr.StateReleased
		if err := j.Update(ctx, &again, lockmgr.StateHeld); !errors.Is(err, lockmgr.ErrEnded) {
			t.Errorf("releasing a released reservation: err = %v, want lockmgr.ErrEnded", err)
		}
		// Releasing (or extending) a submitted reservation: it is live in
		// another state than the update's from.
		rel := *b
		rel.State = lockmgr.StateReleased
		if err := j.Update(ctx, &rel, lockmgr.StateHeld); !errors.Is(err, storage.ErrWrongState) || !errors.Is(err, lockmgr.ErrNotHeld) {
			t.Errorf("release of a submitted reservation: err = %v, want ErrWrongState and lockmgr.ErrNotHeld", err)
		}
		ext := *b
		ext.ExpiresAt = b.ExpiresAt.Add(time.Hour)
		if err := j.Update(ctx, &ext, lockmgr.StateHeld); !errors.Is(err, lockmgr.ErrNotHeld) {
			t.Errorf("extension of a submitted reservation: err = %v, want lockmgr.ErrNotHeld", err)
		}
		unknown := lockRes(p.ID, 50, hashOf(1, 9))
		if err := j.Update(ctx, unknown); !errors.Is(err, storage.ErrNotFound) || !errors.Is(err, lockmgr.ErrNotFound) {
			t.Errorf("update of an unknown reservation: err = %v, want ErrNotFound", err)
		}
		if err := j.Update(ctx, &lockmgr.Reservation{ID: a.ID, Fence: 0}); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("update without fence: err = %v, want ErrInvalidArgument", err)
		}
		if err := j.Update(ctx, a, lockmgr.StateReleased); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("update from an ended state: err = %v, want ErrInvalidArgument", err)
		}
		for _, r := range []struct {
			id     string
			before storage.Reservation
		}{{a.ID, beforeA}, {b.ID, beforeB}, {c.ID, beforeC}} {
			if got := mustReservation(t, s, r.id); got != r.before {
				t.Errorf("a refused update changed %s: %+v, was %+v", r.id, got, r.before)
			}
		}
		wantStates(t, "after refused updates", listedStates(t, s, p.ID), wantListed)

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
		start := make(chan struct{}) // all at once, not as fast as goroutines spawn
		for i, r := range many {
			wg.Go(func() {
				r.State = lockmgr.StateReleased
				<-start
				errs[i] = j.Update(ctx, r, lockmgr.StateHeld)
			})
		}
		close(start)
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

// Record is idempotent for the same reservation; a fence or an idempotency
// key another reservation has is refused; Lookup and LookupKey read the
// journal back with the UTXOs' amounts; ForgetKeys frees old keys.
func TestJournalRecordKeysAndLookup(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		mustReconcile(t, s, p, chainUTXOs(p, 1, 0, 10))
		j := newJournal(t, s, storage.JournalOptions{})
		key := lockmgr.KeyDigest("client-key-1")
		a := lockRes(p.ID, 1, hashOf(1, 0), hashOf(1, 1))
		a.Key, a.Fingerprint = key, "fp-a"
		if err := j.Record(ctx, a); err != nil {
			t.Fatal(err)
		}
		rows := holdings(t, s)
		if want := holdingRows(p.ID, a); !slices.Equal(rows, want) {
			t.Errorf("reservation_utxos = %v, want %v", rows, want)
		}
		// The same reservation twice: a no-op.
		if err := j.Record(ctx, a); err != nil {
			t.Errorf("recording the same reservation again: %v", err)
		}
		if got := holdings(t, s); !slices.Equal(got, rows) {
			t.Errorf("recording again changed reservation_utxos: %v", got)
		}
		// The same id with another content, or another id with a's fence.
		other := *a
		other.Items = []lockmgr.Item{{Hash: hashOf(1, 5), Amount: 1}}
		if err := j.Record(ctx, &other); !errors.Is(err, storage.ErrStaleFence) {
			t.Errorf("same id, other utxos: err = %v, want ErrStaleFence", err)
		}
		sameFence := lockRes(p.ID, 1, hashOf(1, 5))
		if err := j.Record(ctx, sameFence); !errors.Is(err, storage.ErrStaleFence) {
			t.Errorf("used fence: err = %v, want ErrStaleFence", err)
		}
		// a's idempotency key on another reservation.
		taken := lockRes(p.ID, 2, hashOf(1, 6))
		taken.Key, taken.Fingerprint = key, "fp-other"
		if err := j.Record(ctx, taken); !errors.Is(err, lockmgr.ErrKeyTaken) {
			t.Errorf("taken idempotency key: err = %v, want lockmgr.ErrKeyTaken", err)
		}
		for _, id := range []string{sameFence.ID, taken.ID} {
			if _, err := s.GetReservation(ctx, id); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("a refused record was written: %s: %v", id, err)
			}
		}
		if got := holdings(t, s); !slices.Equal(got, rows) {
			t.Errorf("refused records wrote reservation_utxos: %v", got)
		}
		if st := listedStates(t, s, p.ID); st[hashOf(1, 5)] != storage.StateAvailable || st[hashOf(1, 6)] != storage.StateAvailable {
			t.Errorf("refused records reserved their utxos: %v", st)
		}

		// Lookup and LookupKey: the journal's row with the stored amounts.
		for name, look := range map[string]func() (*lockmgr.Reservation, error){
			"Lookup":    func() (*lockmgr.Reservation, error) { return j.Lookup(ctx, a.ID) },
			"LookupKey": func() (*lockmgr.Reservation, error) { return j.LookupKey(ctx, key) },
		} {
			got, err := look()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if got.ID != a.ID || got.PoolID != p.ID || got.Fence != 1 || got.Owner != "o" || got.State != lockmgr.StateHeld ||
				got.Key != key || got.Fingerprint != "fp-a" || !got.ExpiresAt.Equal(a.ExpiresAt) || !got.CreatedAt.Equal(a.CreatedAt) ||
				!slices.Equal(got.Items, []lockmgr.Item{{Hash: hashOf(1, 0), Amount: 1000}, {Hash: hashOf(1, 1), Amount: 1001}}) {
				t.Errorf("%s = %+v", name, got)
			}
		}
		if _, err := j.Lookup(ctx, newID()); !errors.Is(err, lockmgr.ErrNotFound) {
			t.Errorf("Lookup(unknown): err = %v, want lockmgr.ErrNotFound", err)
		}
		if _, err := j.LookupKey(ctx, lockmgr.KeyDigest("never used")); !errors.Is(err, lockmgr.ErrNotFound) {
			t.Errorf("LookupKey(unknown): err = %v, want lockmgr.ErrNotFound", err)
		}
		if _, err := j.LookupKey(ctx, ""); !errors.Is(err, lockmgr.ErrNotFound) {
			t.Errorf("LookupKey(\"\"): err = %v, want lockmgr.ErrNotFound", err)
		}
		// An ended reservation is still looked up, in its state.
		ended := *a
		ended.State = lockmgr.StateReleased
		if err := j.Update(ctx, &ended, lockmgr.StateHeld); err != nil {
			t.Fatal(err)
		}
		if got, err := j.LookupKey(ctx, key); err != nil || got.State != lockmgr.StateReleased {
			t.Errorf("LookupKey of a released reservation = %+v, %v", got, err)
		}

		// ForgetKeys forgets the keys of reservations made at or before the
		// cutoff: the key is free for a new reservation.
		if n, err := s.ForgetKeys(ctx, a.CreatedAt.Add(-time.Second)); err != nil || n != 0 {
			t.Fatalf("ForgetKeys before a = %d, %v; want 0", n, err)
		}
		if n, err := s.ForgetKeys(ctx, a.CreatedAt); err != nil || n != 1 {
			t.Fatalf("ForgetKeys = %d, %v; want 1", n, err)
		}
		if _, err := j.LookupKey(ctx, key); !errors.Is(err, lockmgr.ErrNotFound) {
			t.Errorf("LookupKey of a forgotten key: err = %v, want lockmgr.ErrNotFound", err)
		}
		if got := mustReservation(t, s, a.ID); got.IdempotencyKey != "" || got.Fingerprint != "fp-a" || got.State != storage.ResReleased {
			t.Errorf("reservation after ForgetKeys: %+v", got)
		}
		if err := j.Record(ctx, taken); err != nil {
			t.Fatalf("record with a forgotten key: %v", err)
		}
		if got, err := j.LookupKey(ctx, key); err != nil || got.ID != taken.ID {
			t.Errorf("LookupKey after reuse = %+v, %v; want %s", got, err, taken.ID)
		}
	})
}

// A batch with a write that fails as a whole is retried write by write, so
// only the bad write's caller gets an error; refused writes (a used fence, a
// taken key, an update that does not apply) do not fail a batch.
func TestJournalBatchIsolatesBadWrites(t *testing.T) {
	t.Parallel()
	s := openPostgres(t)
	ctx := testCtx(t)
	p := mustPool(t, s, assetA, programA)
	mustReconcile(t, s, p, chainUTXOs(p, 1, 0, 100))
	j := newJournal(t, s, storage.JournalOptions{})

	first := lockRes(p.ID, 1, hashOf(1, 0))
	first.Key = lockmgr.KeyDigest("first")
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
	keyed := lockRes(p.ID, 31, hashOf(1, 31)) // another reservation with first's key
	keyed.Key = first.Key
	writes = append(writes, func() error { return j.Record(ctx, keyed) })
	release := *first
	release.State = lockmgr.StateReleased
	writes = append(writes, func() error { return j.Update(ctx, &release, lockmgr.StateHeld) })
	again := *ended
	again.State = lockmgr.StateSubmitted
	writes = append(writes, func() error { return j.Update(ctx, &again) })
	// A reservation of a pool that does not exist fails the whole group
	// transaction (a foreign key): the batch is retried write by write.
	orphan := lockRes(p.ID+100, 1, hashOf(1, 40))
	writes = append(writes, func() error { return j.Record(ctx, orphan) })

	errs, batches := run(writes)
	k := len(good)
	for i := range good {
		if errs[i] != nil {
			t.Errorf("good record %d: %v", i, errs[i])
		}
		mustReservation(t, s, good[i].ID)
	}
	if err := errs[k]; !errors.Is(err, storage.ErrStaleFence) {
		t.Errorf("record with a used fence: err = %v, want ErrStaleFence", err)
	}
	if err := errs[k+1]; !errors.Is(err, lockmgr.ErrKeyTaken) {
		t.Errorf("record with a taken key: err = %v, want lockmgr.ErrKeyTaken", err)
	}
	if err := errs[k+2]; err != nil {
		t.Errorf("release in the failed batch: %v", err)
	}
	if err := errs[k+3]; !errors.Is(err, storage.ErrNotLive) || !errors.Is(err, lockmgr.ErrEnded) {
		t.Errorf("update of an ended reservation: err = %v, want ErrNotLive (lockmgr.ErrEnded)", err)
	}
	if err := errs[k+4]; !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("record of an unknown pool: err = %v, want ErrNotFound", err)
	}
	if batches != 1 { // the blocked one; the failed batch was retried write by write
		t.Errorf("group transactions = %d, want 1", batches)
	}
	for _, id := range []string{stale.ID, keyed.ID, orphan.ID} {
		if _, err := s.GetReservation(ctx, id); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("a refused record was written: %s: %v", id, err)
		}
	}
	wantStates(t, "after the first batch", listedStates(t, s, p.ID), map[string]string{
		hashOf(1, 0): storage.StateAvailable, hashOf(1, 30): storage.StateAvailable, hashOf(1, 31): storage.StateAvailable,
		hashOf(1, 10): storage.StateReserved})
	if got := mustReservation(t, s, ended.ID); got.State != storage.ResReleased {
		t.Errorf("ended reservation changed: %+v", got)
	}

	// Refused writes alone do not fail the group transaction: the records
	// with them commit in it.
	more := make([]*lockmgr.Reservation, 4)
	writes = nil
	for i := range more {
		more[i] = lockRes(p.ID, int64(50+i), hashOf(1, 50+i))
		writes = append(writes, func() error { return j.Record(ctx, more[i]) })
	}
	old := *good[0]
	old.Fence = 3 // good[0] has fence 10
	writes = append(writes,
		func() error { return j.Update(ctx, &old) },
		func() error { return j.Update(ctx, lockRes(p.ID, 60, hashOf(1, 60))) },
		func() error { return j.Record(ctx, lockRes(p.ID, good[1].Fence, hashOf(1, 61))) })
	taken := lockRes(p.ID, 62, hashOf(1, 62))
	taken.Key = first.Key
	writes = append(writes, func() error { return j.Record(ctx, taken) })
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
	if !errors.Is(errs[6], storage.ErrStaleFence) || !errors.Is(errs[7], lockmgr.ErrKeyTaken) {
		t.Errorf("refused records: %v, %v; want ErrStaleFence, lockmgr.ErrKeyTaken", errs[6], errs[7])
	}
	if batches != 2 {
		t.Errorf("group transactions = %d, want 2 (the blocked one and the rest together)", batches)
	}
	if _, err := s.GetReservation(ctx, taken.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the record with a taken key was written: %v", err)
	}
}

func TestJournalCloseFlushes(t *testing.T) {
	t.Parallel()
	s := openPostgres(t)
	ctx := testCtx(t)
	p := mustPool(t, s, assetA, programA)
	mustReconcile(t, s, p, chainUTXOs(p, 1, 0, 100))
	j := storage.NewJournalOfBatch(s, 8)

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
	t.Parallel()
	srv, s := openPrivatePostgres(t)
	ctx := testCtx(t)
	p := mustPool(t, s, assetA, programA)
	j := newJournal(t, s, storage.JournalOptions{})
	fence := int64(0)
	record := func(timeout time.Duration) error {
		fence++
		c, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return j.Record(c, lockRes(p.ID, fence, hashOf(1, int(fence))))
	}
	recovers := func(what string) {
		t.Helper()
		testenv.Eventually(t, 20*time.Second, func() error {
			if err := record(2 * time.Second); err != nil {
				return fmt.Errorf("journal did not recover after %s: %w", what, err)
			}
			return nil
		})
	}
	if err := record(5 * time.Second); err != nil {
		t.Fatal(err)
	}

	// Hung: the write gives up with its context.
	srv.Stop()
	if err := record(300 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Record with the server stopped: err = %v, want its context's deadline", err)
	}
	srv.Cont()
	recovers("SIGCONT")

	// Gone: the write fails promptly, well before its deadline. (The server
	// runs without fsync: checkpoint so that the pool survives the kill.)
	if err := s.DB().WithContext(ctx).Exec(`CHECKPOINT`).Error; err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	if err := record(10 * time.Second); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Record with the server killed: err = %v, want the lost server's error, not its deadline", err)
	}
	srv.Restart()
	recovers("restart")
}

// A release is answered before the journal learns it: its deferred write
// keeps being tried while PostgreSQL is down, lands once it is back with the
// time the release happened, and Flush waits for it.
func TestJournalDeferredReleaseSurvivesAnOutage(t *testing.T) {
	t.Parallel()
	srv, s := openPrivatePostgres(t)
	ctx := testCtx(t)
	p := mustPool(t, s, assetA, programA)
	j := newJournal(t, s, storage.JournalOptions{Timeout: time.Second})
	r := lockRes(p.ID, 1, hashOf(1, 1))
	if err := j.Record(ctx, r); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	at := time.Now().UTC().Truncate(time.Millisecond).Add(-time.Second)
	j.Released(r, at)
	short, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	if err := j.Flush(short); err == nil {
		t.Fatal("Flush returned while the database was stopped")
	}
	cancel()
	srv.Cont()
	long, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := j.Flush(long); err != nil {
		t.Fatalf("deferred write not written after the outage: %v", err)
	}
	row := mustReservation(t, s, r.ID)
	if row.State != storage.ResReleased || !row.UpdatedAt.Equal(at) {
		t.Fatalf("row %s at %s, want released at %s", row.State, row.UpdatedAt, at)
	}
	// A deferred write the journal refuses (the reservation ended) is done
	// with at once.
	j.Released(r, at)
	if err := j.Flush(long); err != nil {
		t.Fatal(err)
	}
}

// Deferred writes have a writer of their own: a release whose write waits
// on a lock does not hold up grants, and it lands once the lock is gone.
func TestJournalDeferredWritesDoNotHoldUpGrants(t *testing.T) {
	t.Parallel()
	s := openPostgres(t)
	ctx := testCtx(t)
	p := mustPool(t, s, assetA, programA)
	j := newJournal(t, s, storage.JournalOptions{})
	slow := lockRes(p.ID, 1, hashOf(1, 1))
	if err := j.Record(ctx, slow); err != nil {
		t.Fatal(err)
	}
	// Lock the reservation's row: the write of its release waits.
	tx := lockRow(t, s, slow.ID)
	at := time.Now().UTC().Truncate(time.Millisecond)
	j.Released(slow, at)
	waitForLockWait(t, s, "the release's write waiting")
	for i := range 5 {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := j.Record(c, lockRes(p.ID, int64(10+i), hashOf(1, 10+i)))
		cancel()
		if err != nil {
			t.Fatalf("grant %d while a release's write waited: %v", i, err)
		}
	}
	tx.Rollback()
	if err := j.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if row := mustReservation(t, s, slow.ID); row.State != storage.ResReleased || !row.UpdatedAt.Equal(at) {
		t.Fatalf("released reservation: %s at %s, want released at %s", row.State, row.UpdatedAt, at)
	}
}

// A batch of releases takes its reservations' rows in id order, whatever
// order the releases arrived in, as every path that changes several does, so
// that batches of several replicas do not deadlock. The table holds the
// history of a while, as in production: the plan walks the batch's list into
// the primary key. (On a table of a few rows PostgreSQL may scan the table
// instead, in its physical order; a deadlock then fails one batch, whose
// writes are retried one by one.)
func TestJournalReleaseBatchTakesRowsInIDOrder(t *testing.T) {
	t.Parallel()
	s := openPostgres(t)
	ctx := testCtx(t)
	p := mustPool(t, s, assetA, programA)
	j := newJournal(t, s, storage.JournalOptions{})
	if err := s.DB().WithContext(ctx).Exec(`INSERT INTO reservations (id, pool_id, fence, hashes, state,
		created_at, expires_at, updated_at)
		SELECT md5(g::text), ?, 1000 + g, md5(g::text), 'released', now(), now(), now()
		FROM generate_series(1, 5000) g`, p.ID).Error; err != nil {
		t.Fatal(err)
	}
	lo, hi := lockRes(p.ID, 1, hashOf(1, 1)), lockRes(p.ID, 2, hashOf(1, 2))
	if hi.ID < lo.ID {
		lo, hi = hi, lo
	}
	for _, r := range []*lockmgr.Reservation{hi, lo} { // the table's physical order is not the ids'

		if err := j.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	tx := lockRow(t, s, hi.ID)
	at := time.Now().UTC().Truncate(time.Millisecond)
	j.Released(hi, at) // the higher id first: one batch, as they come within its linger
	j.Released(lo, at)
	waitForLockWait(t, s, "the batch waiting for the locked row")
	// Taken in id order, the lower id is already the batch's.
	probe := s.DB().WithContext(ctx).Begin()
	err := probe.Exec(`SELECT 1 FROM reservations WHERE id = ? FOR UPDATE NOWAIT`, lo.ID).Error
	probe.Rollback()
	tx.Rollback()
	if err == nil {
		t.Fatal("the batch waits for the higher id without holding the lower one: rows are not taken in id order")
	}
	if err := j.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*lockmgr.Reservation{lo, hi} {
		if row := mustReservation(t, s, r.ID); row.State != storage.ResReleased {
			t.Fatalf("reservation %s is %s, want released", r.ID, row.State)
		}
	}
}

// ForgetKeys, which the sweep runs every few seconds, reads the few keyed
// reservations through their index, not the whole journal: the journal keeps
// every reservation ever made. The table here has no statistics, as a new
// deployment's has not (and as this machine's PostgreSQL, without autovacuum,
// never has).
func TestForgetKeysDoesNotScanTheJournal(t *testing.T) {
	t.Parallel()
	s := openPostgres(t)
	ctx := testCtx(t)
	p := mustPool(t, s, assetA, programA)
	if err := s.DB().WithContext(ctx).Exec(`INSERT INTO reservations (id, pool_id, fence, hashes, state,
		created_at, expires_at, updated_at, idempotency_key)
		SELECT md5(g::text), ?, g, md5(g::text), 'released', now(), now(), now(), CASE WHEN g % 1000 = 0 THEN 'k' || g ELSE '' END
		FROM generate_series(1, 20000) g`, p.ID).Error; err != nil {
		t.Fatal(err)
	}
	var lines []string
	rows, err := s.DB().WithContext(ctx).Raw("EXPLAIN "+storage.ForgetKeysStatement, time.Now()).Rows()
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, line)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		t.Fatal(err)
	}
	if plan := strings.Join(lines, "\n"); !strings.Contains(plan, "reservations_idempotency_key") || strings.Contains(plan, "Seq Scan") {
		t.Fatalf("ForgetKeys does not read through the key index:\n%s", plan)
	}
	if n, err := s.ForgetKeys(ctx, time.Now().Add(time.Minute)); err != nil || n != 20 {
		t.Fatalf("ForgetKeys = %d, %v; want the 20 keyed reservations", n, err)
	}
}

// Releases trickling in one by one are written in few statements: the
// deferred writer lets a batch fill up, as nobody waits for it.
func TestJournalDeferredWritesAreBatched(t *testing.T) {
	t.Parallel()
	s := openPostgres(t)
	ctx := testCtx(t)
	p := mustPool(t, s, assetA, programA)
	j := newJournal(t, s, storage.JournalOptions{})
	const n = 100
	rs := make([]*lockmgr.Reservation, n)
	for i := range rs {
		rs[i] = lockRes(p.ID, int64(1+i), hashOf(1, i))
		if err := j.Record(ctx, rs[i]); err != nil {
			t.Fatal(err)
		}
	}
	before := j.Batches()
	at := time.Now().UTC().Truncate(time.Millisecond)
	for _, r := range rs { // one each millisecond, as releases arrive
		j.Released(r, at)
		time.Sleep(time.Millisecond) // the scenario's pace, not a wait for anything
	}
	if err := j.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// About 100 ms of releases: some 6 batches of 20 ms, where the writer
	// without the wait wrote one per release.
	if got := j.Batches() - before; got > 20 {
		t.Errorf("%d releases written in %d batches, want few", n, got)
	}
	for _, r := range rs {
		if row := mustReservation(t, s, r.ID); row.State != storage.ResReleased {
			t.Fatalf("reservation %d is %s, want released", r.Fence, row.State)
		}
	}
}
