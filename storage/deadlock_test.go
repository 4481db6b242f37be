package storage_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
)

// TestSyncerAndJournalDoNotDeadlock runs the syncer's settling, expiry and
// failed-lineage release against journal batches changing the same
// reservations. The journal locks rows in id order; if the syncer's
// statements locked them in another order (an UPDATE's plan order),
// PostgreSQL would find deadlocks and fail one of the transactions after
// deadlock_timeout.
func TestSyncerAndJournalDoNotDeadlock(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		if s.Dialect() != storage.DialectPostgres {
			t.Skip("SQLite runs one writer at a time")
		}
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		const (
			rounds = 8
			n      = 64
		)
		mustReconcile(t, s, p, chainUTXOs(p, 1, 0, rounds*n))
		j := newJournal(t, s, storage.JournalOptions{})
		var failures []string
		settled := 0
		for round := 0; round < rounds; round++ {
			res := make([]*lockmgr.Reservation, n)
			hashes := make([]string, n)
			for i := range res {
				hashes[i] = hashOf(1, round*n+i)
				res[i] = lockRes(p.ID, int64(round*n+i+1), hashes[i])
				if i%2 == 1 {
					res[i].ExpiresAt = time.Now().Add(-time.Second) // for the expiry pass
				}
				if err := j.Record(ctx, res[i]); err != nil {
					t.Fatal(err)
				}
			}
			// The chain spent the first half: Settle moves their reservations
			// while the journal submits them.
			submitTx := strings.Repeat("ab", 32)
			spend(t, s, p.ID, strings.Repeat("cd", 32), 0, hashes[:n/2]...)
			var wg sync.WaitGroup
			errs := make(chan error, 3)
			start := make(chan struct{})
			for i := range res {
				wg.Go(func() {
					<-start
					sub := *res[i]
					sub.State, sub.TxID = lockmgr.StateSubmitted, submitTx
					_ = j.Update(ctx, &sub, lockmgr.StateHeld) // ErrEnded when the syncer was first
				})
			}
			wg.Go(func() {
				<-start
				got, err := s.Settle(ctx, p.ID, hashes[:n/2])
				settled += len(got)
				errs <- err
			})
			wg.Go(func() {
				<-start
				_, err := s.ExpireReservations(ctx, time.Now())
				errs <- err
			})
			wg.Go(func() {
				<-start
				_, err := s.FailLineage(ctx, p.ID, submitTx, nil)
				errs <- err
			})
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					failures = append(failures, err.Error())
				}
			}
		}
		if len(failures) > 0 {
			t.Fatalf("%d of %d syncer transactions failed: %v", len(failures), 3*rounds, failures)
		}
		if settled == 0 {
			t.Error("Settle never moved a reservation: the race tested nothing")
		}
		// Whoever won, no reservation is left live on a spent UTXO.
		for round := 0; round < rounds; round++ {
			for i := 0; i < n/2; i += 2 { // the even ones had not run out
				if got := mustReservation(t, s, idByFence(t, s, p.ID, int64(round*n+i+1))); lockmgr.Live(got.State) {
					t.Errorf("fence %d: %s on a spent utxo after Settle", got.Fence, got.State)
				}
			}
		}
	})
}

// idByFence returns the id of the pool's reservation with that fence.
func idByFence(t *testing.T, s *storage.Store, poolID, fence int64) string {
	t.Helper()
	var id string
	if err := s.DB().Raw(`SELECT id FROM reservations WHERE pool_id = ? AND fence = ?`, poolID, fence).Scan(&id).Error; err != nil || id == "" {
		t.Fatalf("reservation with fence %d: %q, %v", fence, id, err)
	}
	return id
}
