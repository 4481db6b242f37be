package storage_test

import (
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/bufferd/bufferd/storage"
)

// FailLineage invalidates the outputs of a failed transaction and of every
// transaction that spent one of them, down the lineage, and releases the
// submitted reservations of those transactions.
func TestFailLineage(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		q := mustPool(t, s, assetA, programB)
		o := func(i int) string { return hashOf(1, i) }
		F, C, D, Z := txOf(1, 100), txOf(1, 101), txOf(1, 102), txOf(1, 103)
		mustChange(t, s, []storage.IndexedOutput{
			output(p, o(1), 1, F, 0), output(p, o(2), 2, F, 0), // F's outputs
			output(p, o(3), 3, "", 0),        // F's too, learnt by NoteCreatedTx
			output(p, o(4), 4, Z, 0),         // Z's: NoteCreatedTx does not overwrite it
			output(p, o(5), 5, C, 0),         // C spent o(1): C fails with F
			output(p, o(6), 6, D, 0),         // D spent o(2)
			output(p, o(7), 7, "", 0),        // named by the caller as F's
			output(p, o(8), 8, Z, 0),         // unrelated
			output(q, hashOf(2, 0), 9, F, 0), // another pool's
		})
		if err := s.NoteCreatedTx(ctx, p.ID, F, []string{o(3), o(4), hashOf(2, 0)}); err != nil {
			t.Fatal(err)
		}
		created, err := s.CreatedTxOf(ctx, p.ID, []string{o(3), o(4), o(7), hashOf(2, 0), hashOf(9, 9)})
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]string{o(3): F, o(4): Z}; !maps.Equal(created, want) {
			t.Errorf("CreatedTxOf = %v, want %v", created, want)
		}
		spend(t, s, p.ID, D, 0, o(2))
		later := time.Now().Add(time.Hour)
		r1 := mustRecord(t, s, p.ID, 1, storage.ResSubmitted, later, o(1)) // submitted C
		if err := s.UpdateReservation(ctx, r1.ID, storage.ReservationUpdate{Fence: 1, TxID: C}); err != nil {
			t.Fatal(err)
		}
		r2 := storage.Reservation{ID: newID(), PoolID: p.ID, Fence: 2, State: storage.ResSubmitted, TxID: D, Hashes: o(8), ExpiresAt: later}
		r3 := storage.Reservation{ID: newID(), PoolID: p.ID, Fence: 3, State: storage.ResHeld, Hashes: o(3), ExpiresAt: later}
		r4 := storage.Reservation{ID: newID(), PoolID: p.ID, Fence: 4, State: storage.ResSubmitted, TxID: Z, Hashes: o(4), ExpiresAt: later}
		for _, r := range []storage.Reservation{r2, r3, r4} {
			if err := s.RecordReservation(ctx, r); err != nil {
				t.Fatal(err)
			}
		}

		got, err := s.FailLineage(ctx, p.ID, F, []string{o(7)})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Failed) != 3 || got.Failed[0] != F || !slices.Contains(got.Failed, C) || !slices.Contains(got.Failed, D) {
			t.Errorf("Failed = %v, want F then C and D", got.Failed)
		}
		if inv := sorted(got.Invalidated...); !slices.Equal(inv, sorted(o(1), o(2), o(3), o(5), o(6), o(7))) {
			t.Errorf("Invalidated = %v", inv)
		}
		if len(got.Released) != 2 || got.Released[0].ID != r1.ID || got.Released[1].ID != r2.ID ||
			got.Released[0].State != storage.ResReleased {
			t.Errorf("Released = %+v, want r1 and r2 (by fence)", got.Released)
		}
		for id, want := range map[string]string{r1.ID: storage.ResReleased, r2.ID: storage.ResReleased, r3.ID: storage.ResHeld,
			r4.ID: storage.ResSubmitted} {
			if st := mustReservation(t, s, id).State; st != want {
				t.Errorf("reservation %s is %s, want %s", id, st, want)
			}
		}
		wantStates(t, "after FailLineage", statesOf(t, s, o(4), o(8), hashOf(2, 0)), map[string]string{
			o(4): storage.StateAvailable, o(8): storage.StateAvailable, hashOf(2, 0): storage.StateAvailable})
		// Settle ends the held reservation on an invalidated output.
		settled, err := s.Settle(ctx, p.ID, got.Invalidated)
		if err != nil || len(settled) != 1 || settled[0].ID != r3.ID || settled[0].State != storage.ResInvalidated {
			t.Errorf("Settle(invalidated) = %+v, %v", settled, err)
		}
		// Again: nothing more to invalidate or release.
		again, err := s.FailLineage(ctx, p.ID, F, nil)
		if err != nil || len(again.Invalidated) != 0 || len(again.Released) != 0 {
			t.Errorf("FailLineage again = %+v, %v", again, err)
		}
		if _, err := s.FailLineage(ctx, p.ID, "", nil); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("FailLineage without a tx: err = %v, want ErrInvalidArgument", err)
		}
	})
}
