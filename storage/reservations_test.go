package storage_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/storage"
)

func TestReservationJournal(t *testing.T) {
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		seen := chainUTXOs(p, 1, 0, 10)
		// Two hashes where one is a prefix of the other: membership must be exact.
		seen = append(seen, chain.UTXO{Hash: "deadbeef", Amount: 5}, chain.UTXO{Hash: "deadbeef00", Amount: 6})
		mustReconcile(t, s, p, seen)
		h := func(i int) string { return seen[i].Hash }

		t0 := time.Now().UTC().Truncate(time.Second)
		a := storage.Reservation{
			ID: strings.Repeat("a", 32), PoolID: p.ID, Fence: 1, Owner: "alice",
			Hashes: h(0) + "," + h(1), CreatedAt: t0, ExpiresAt: t0.Add(time.Minute),
		}
		if err := s.RecordReservation(ctx, a); err != nil {
			t.Fatalf("RecordReservation: %v", err)
		}
		if c := mustCounts(t, s, p.ID); c != (storage.Counts{Available: 10, Reserved: 2}) {
			t.Fatalf("counts after reserve: %+v", c)
		}
		got, err := s.GetReservation(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != storage.ResHeld || got.Fence != 1 || got.Owner != "alice" || got.Hashes != a.Hashes ||
			!got.ExpiresAt.Equal(a.ExpiresAt) || !got.CreatedAt.Equal(t0) {
			t.Fatalf("GetReservation = %+v, want %+v", got, a)
		}
		if _, err := s.GetReservation(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetReservation(unknown): err = %v", err)
		}

		// A retry of the same write is accepted; a reused fence is not.
		if err := s.RecordReservation(ctx, a); err != nil {
			t.Errorf("recording the same reservation again: %v", err)
		}
		dup := a
		dup.ID, dup.Hashes = strings.Repeat("d", 32), h(5)
		if err := s.RecordReservation(ctx, dup); !errors.Is(err, storage.ErrStaleFence) {
			t.Errorf("reused fence: err = %v, want ErrStaleFence", err)
		}
		if st := statesOf(t, s, h(5)); st[h(5)] != storage.StateAvailable {
			t.Errorf("a refused reservation reserved its utxo: %v", st)
		}
		for _, bad := range []storage.Reservation{
			{ID: "x", PoolID: p.ID, Fence: 0, Hashes: h(6), ExpiresAt: t0},
			{ID: "x", PoolID: p.ID, Fence: 9, Hashes: "", ExpiresAt: t0},
			{ID: "", PoolID: p.ID, Fence: 9, Hashes: h(6), ExpiresAt: t0},
			{ID: "x", PoolID: p.ID, Fence: 9, Hashes: h(6) + ",", ExpiresAt: t0},
		} {
			if err := s.RecordReservation(ctx, bad); !errors.Is(err, storage.ErrInvalidArgument) {
				t.Errorf("RecordReservation(%+v): err = %v, want ErrInvalidArgument", bad, err)
			}
		}

		// b holds h(1) too: a's hold lapsed in Redis before the journal caught up.
		b := storage.Reservation{
			ID: strings.Repeat("b", 32), PoolID: p.ID, Fence: 2, Hashes: h(1) + "," + h(2) + ",deadbeef00",
			CreatedAt: t0, ExpiresAt: t0.Add(time.Hour),
		}
		if err := s.RecordReservation(ctx, b); err != nil {
			t.Fatal(err)
		}
		if c := mustCounts(t, s, p.ID); c != (storage.Counts{Available: 8, Reserved: 4}) {
			t.Fatalf("counts: %+v", c)
		}
		_, live, maxFence, err := s.Snapshot(ctx, p.ID)
		if err != nil || len(live) != 2 || live[0].ID != a.ID || live[1].ID != b.ID {
			t.Fatalf("live reservations = %+v, %v", live, err)
		}
		if maxFence != 2 {
			t.Errorf("highest fence = %d", maxFence)
		}

		// Nothing due yet.
		n, err := s.ExpireReservations(ctx, t0.Add(30*time.Second))
		if err != nil || n != 0 {
			t.Fatalf("early ExpireReservations = %d, %v", n, err)
		}
		if c := mustCounts(t, s, p.ID); c != (storage.Counts{Available: 8, Reserved: 4}) {
			t.Fatalf("counts after early expire: %+v", c)
		}

		// a expires; h(1) stays reserved for b; "deadbeef" was never reserved.
		n, err = s.ExpireReservations(ctx, t0.Add(2*time.Minute))
		if err != nil || n != 1 {
			t.Fatalf("ExpireReservations = %d, %v; want 1", n, err)
		}
		st := statesOf(t, s, h(0), h(1), h(2), "deadbeef", "deadbeef00")
		want := map[string]string{
			h(0): storage.StateAvailable, h(1): storage.StateReserved, h(2): storage.StateReserved,
			"deadbeef": storage.StateAvailable, "deadbeef00": storage.StateReserved,
		}
		for k, v := range want {
			if st[k] != v {
				t.Errorf("after a expired: %s is %s, want %s", k, st[k], v)
			}
		}
		if got, _ := s.GetReservation(ctx, a.ID); got.State != storage.ResExpired {
			t.Errorf("a is %s, want expired", got.State)
		}

		// A held UTXO that the chain no longer reports becomes spent.
		res := mustReconcile(t, s, p, append(seen[:2:2], seen[3:]...))
		if len(res.Spent) != 1 || res.Spent[0] != h(2) {
			t.Fatalf("reserved utxo gone from chain: spent %v", res.Spent)
		}

		// b expires: everything reserved is available again.
		n, err = s.ExpireReservations(ctx, t0.Add(2*time.Hour))
		if err != nil || n != 1 {
			t.Fatalf("ExpireReservations = %d, %v; want 1", n, err)
		}
		if c := mustCounts(t, s, p.ID); c != (storage.Counts{Available: 11, Spent: 1}) {
			t.Fatalf("counts after all expired: %+v", c)
		}
	})
}

func TestUpdateReservation(t *testing.T) {
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		seen := chainUTXOs(p, 1, 0, 4)
		mustReconcile(t, s, p, seen)
		exp := time.Now().Add(time.Hour)
		r := storage.Reservation{ID: strings.Repeat("c", 32), PoolID: p.ID, Fence: 5, Hashes: seen[0].Hash + "," + seen[1].Hash, ExpiresAt: exp}
		if err := s.RecordReservation(ctx, r); err != nil {
			t.Fatal(err)
		}

		// Extend and submit with the current fence.
		later := exp.Add(time.Hour)
		if err := s.UpdateReservation(ctx, r.ID, storage.ReservationUpdate{Fence: 5, State: storage.ResSubmitted, TxID: "tx1", ExpiresAt: later}); err != nil {
			t.Fatalf("submit: %v", err)
		}
		got, _ := s.GetReservation(ctx, r.ID)
		if got.State != storage.ResSubmitted || got.TxID != "tx1" || !got.ExpiresAt.Equal(later.UTC().Truncate(time.Microsecond)) {
			t.Fatalf("after submit: %+v", got)
		}
		// An older fence is refused and changes nothing.
		err := s.UpdateReservation(ctx, r.ID, storage.ReservationUpdate{Fence: 4, State: storage.ResReleased})
		if !errors.Is(err, storage.ErrStaleFence) {
			t.Fatalf("stale fence: err = %v", err)
		}
		if got, _ := s.GetReservation(ctx, r.ID); got.State != storage.ResSubmitted {
			t.Fatalf("stale write changed the state to %s", got.State)
		}
		if err := s.UpdateReservation(ctx, "unknown", storage.ReservationUpdate{Fence: 9}); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("unknown id: err = %v", err)
		}

		// Release frees the UTXOs at once.
		if err := s.UpdateReservation(ctx, r.ID, storage.ReservationUpdate{Fence: 5, State: storage.ResReleased}); err != nil {
			t.Fatalf("release: %v", err)
		}
		if c := mustCounts(t, s, p.ID); c != (storage.Counts{Available: 4}) {
			t.Fatalf("counts after release: %+v", c)
		}
		// An ended reservation cannot be extended.
		err = s.UpdateReservation(ctx, r.ID, storage.ReservationUpdate{Fence: 5, ExpiresAt: later.Add(time.Hour)})
		if !errors.Is(err, storage.ErrNotLive) {
			t.Fatalf("extend after release: err = %v, want ErrNotLive", err)
		}
	})
}
