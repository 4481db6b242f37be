package storage_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
)

// TestSyncerAndJournalDoNotDeadlock runs the syncer's settling and expiry
// against journal batches changing the same reservations. The journal locks
// rows in id order; if the syncer's statements locked them in another order
// (an UPDATE's plan order), PostgreSQL would find deadlocks and fail one of
// the transactions after deadlock_timeout.
func TestSyncerAndJournalDoNotDeadlock(t *testing.T) {
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
		var deadlocks []string
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
			var wg sync.WaitGroup
			errs := make(chan error, 2)
			start := make(chan struct{})
			for i := range res {
				wg.Go(func() {
					<-start
					sub := *res[i]
					sub.State, sub.TxID = lockmgr.StateSubmitted, strings.Repeat("ab", 32)
					_ = j.Update(ctx, &sub) // ErrEnded when the syncer was first
				})
			}
			wg.Go(func() {
				<-start
				_, err := s.SettleSpent(ctx, p.ID, hashes[:n/2])
				errs <- err
			})
			wg.Go(func() {
				<-start
				_, err := s.ExpireReservations(ctx, time.Now())
				errs <- err
			})
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					deadlocks = append(deadlocks, err.Error())
				}
			}
		}
		if len(deadlocks) > 0 {
			t.Fatalf("%d of %d syncer transactions failed: %v", len(deadlocks), 2*rounds, deadlocks)
		}
	})
}
