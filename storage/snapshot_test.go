package storage_test

import (
	"strings"
	"testing"
	"time"

	"github.com/bufferd/bufferd/storage"
)

// mustRecord journals a reservation with the given state, fence, expiry and hashes.
func mustRecord(t *testing.T, s *storage.Store, pool, fence int64, state string, expires time.Time, hashes ...string) storage.Reservation {
	t.Helper()
	r := storage.Reservation{
		ID: newID(), PoolID: pool, Fence: fence, Owner: "o", State: state,
		Hashes: strings.Join(hashes, ","), ExpiresAt: expires,
	}
	if err := s.RecordReservation(testCtx(t), r); err != nil {
		t.Fatalf("RecordReservation: %v", err)
	}
	return mustReservation(t, s, r.ID)
}

func ids(rs []storage.Reservation) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

func TestSettleSpent(t *testing.T) {
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		q := mustPool(t, s, assetA, programB)
		mustReconcile(t, s, p, chainUTXOs(p, 1, 0, 10))
		mustReconcile(t, s, q, chainUTXOs(q, 2, 0, 10))
		h := func(i int) string { return hashOf(1, i) }
		later := time.Now().Add(time.Hour)

		c := mustRecord(t, s, p.ID, 3, storage.ResHeld, later, h(3))
		a := mustRecord(t, s, p.ID, 1, storage.ResHeld, later, h(0), h(1))
		b := mustRecord(t, s, p.ID, 2, storage.ResSubmitted, later, h(2))
		d := mustRecord(t, s, p.ID, 4, storage.ResReleased, later, h(4))
		e := mustRecord(t, s, q.ID, 1, storage.ResHeld, later, hashOf(2, 0))
		// Past its expiry but not yet marked: still holds, so it is settled too.
		f := mustRecord(t, s, p.ID, 5, storage.ResHeld, time.Now().Add(-time.Minute), h(5))

		spent := []string{h(1), h(2), h(4), h(5), hashOf(2, 0), "unknown"}
		n0 := s.StatementCount()
		got, err := s.SettleSpent(ctx, p.ID, spent)
		if err != nil {
			t.Fatal(err)
		}
		few := s.StatementCount() - n0
		if want := []string{a.ID, b.ID, f.ID}; strings.Join(ids(got), " ") != strings.Join(want, " ") {
			t.Fatalf("SettleSpent = %v, want %v (by fence)", ids(got), want)
		}
		for _, r := range got {
			if r.State != storage.ResSpent || r.PoolID != p.ID || r.Hashes == "" || r.Fence == 0 {
				t.Errorf("returned row %+v", r)
			}
			if stored := mustReservation(t, s, r.ID); stored.State != storage.ResSpent {
				t.Errorf("stored row %+v", stored)
			}
		}
		for r, want := range map[string]string{c.ID: storage.ResHeld, d.ID: storage.ResReleased, e.ID: storage.ResHeld} {
			if got := mustReservation(t, s, r); got.State != want {
				t.Errorf("reservation %s is %s, want %s", r, got.State, want)
			}
		}

		// Settled ones are not settled again; the statement count does not
		// grow with the number of hashes.
		many := append([]string{}, spent...)
		for i := range 2000 {
			many = append(many, hashOf(9, i))
		}
		n0 = s.StatementCount()
		again, err := s.SettleSpent(ctx, p.ID, many)
		if err != nil {
			t.Fatal(err)
		}
		if len(again) != 0 {
			t.Errorf("settled again: %v", ids(again))
		}
		if n := s.StatementCount() - n0; n > few || few > 3 {
			t.Errorf("statements: %d for %d hashes, %d for %d", few, len(spent), n, len(many))
		}
		if got, err := s.SettleSpent(ctx, p.ID, nil); err != nil || len(got) != 0 {
			t.Errorf("SettleSpent(nil) = %v, %v", got, err)
		}
	})
}

func TestSnapshot(t *testing.T) {
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		q := mustPool(t, s, assetA, programB)
		seen := chainUTXOs(p, 1, 0, 10)
		mustReconcile(t, s, p, seen)
		mustReconcile(t, s, p, seen[2:]) // h(0), h(1) spent
		mustReconcile(t, s, q, chainUTXOs(q, 2, 0, 3))
		h := func(i int) string { return hashOf(1, i) }
		later := time.Now().Add(time.Hour)

		b := mustRecord(t, s, p.ID, 4, storage.ResSubmitted, later, h(3), h(4))
		a := mustRecord(t, s, p.ID, 2, storage.ResHeld, later, h(2))
		mustRecord(t, s, p.ID, 3, storage.ResHeld, time.Now().Add(-time.Second), h(5)) // expired
		mustRecord(t, s, p.ID, 9, storage.ResReleased, later, h(6))
		mustRecord(t, s, q.ID, 20, storage.ResHeld, later, hashOf(2, 0))

		utxos, live, maxFence, err := s.Snapshot(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(utxos) != 8 {
			t.Errorf("%d utxos, want 8 (available or reserved)", len(utxos))
		}
		for i, u := range utxos {
			if u.PoolID != p.ID || u.Hash != h(i+2) || (u.State != storage.StateAvailable && u.State != storage.StateReserved) {
				t.Errorf("utxo %d: %+v", i, u)
			}
		}
		if strings.Join(ids(live), " ") != a.ID+" "+b.ID {
			t.Errorf("live = %v, want a, b", ids(live))
		}
		if maxFence != 9 {
			t.Errorf("maxFence = %d, want 9", maxFence)
		}

		snap, err := s.LockSnapshot(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Available) != 8 || snap.Available[0].Hash != h(2) || snap.Available[0].Amount != 1002 || snap.FenceFloor != 9 {
			t.Errorf("LockSnapshot = %+v", snap)
		}
		if len(snap.Live) != 2 {
			t.Fatalf("LockSnapshot live = %+v", snap.Live)
		}
		lb := snap.Live[1]
		if lb.ID != b.ID || lb.Fence != 4 || lb.State != storage.ResSubmitted || len(lb.Items) != 2 ||
			lb.Items[1].Hash != h(4) || lb.Items[1].Amount != 1004 || !lb.ExpiresAt.Equal(b.ExpiresAt) {
			t.Errorf("LockSnapshot live[1] = %+v", lb)
		}

		empty := mustPool(t, s, assetB, programA)
		utxos, live, maxFence, err = s.Snapshot(ctx, empty.ID)
		if err != nil || len(utxos) != 0 || len(live) != 0 || maxFence != 0 {
			t.Errorf("Snapshot(empty pool) = %v, %v, %d, %v", utxos, live, maxFence, err)
		}
	})
}

func TestSubmittedReservations(t *testing.T) {
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		mustReconcile(t, s, p, chainUTXOs(p, 1, 0, 10))
		h := func(i int) string { return hashOf(1, i) }
		later := time.Now().Add(time.Hour)
		t0 := time.Now().UTC().Truncate(time.Second)
		record := func(fence int64, state string, created, expires time.Time, hash string) storage.Reservation {
			r := storage.Reservation{ID: newID(), PoolID: p.ID, Fence: fence, State: state, Hashes: hash,
				CreatedAt: created, ExpiresAt: expires}
			if err := s.RecordReservation(ctx, r); err != nil {
				t.Fatal(err)
			}
			return r
		}
		newer := record(1, storage.ResSubmitted, t0, later, h(0))
		older := record(2, storage.ResSubmitted, t0.Add(-time.Minute), later, h(1))
		record(3, storage.ResHeld, t0.Add(-time.Hour), later, h(2))
		record(4, storage.ResSubmitted, t0.Add(-time.Hour), t0.Add(-time.Second), h(3)) // expired
		record(5, storage.ResSpent, t0.Add(-time.Hour), later, h(4))

		got, err := s.SubmittedReservations(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(ids(got), " ") != older.ID+" "+newer.ID {
			t.Errorf("SubmittedReservations = %v, want older, newer", ids(got))
		}
		got, err = s.SubmittedReservations(ctx, 1)
		if err != nil || len(got) != 1 || got[0].ID != older.ID {
			t.Errorf("SubmittedReservations(limit 1) = %v, %v", ids(got), err)
		}
	})
}
