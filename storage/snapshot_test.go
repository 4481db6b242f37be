package storage_test

import (
	"strings"
	"testing"
	"time"

	"github.com/bufferd/bufferd/lockmgr"
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

func TestSnapshot(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		q := mustPool(t, s, assetA, programB)
		seen := chainUTXOs(p, 1, 0, 10)
		mustReconcile(t, s, p, seen)
		mustReconcile(t, s, p, seen[2:]) // h(0), h(1) spent
		mustReconcile(t, s, q, chainUTXOs(q, 2, 0, 3))
		h := func(i int) string { return hashOf(1, i) }
		mustChange(t, s, []storage.IndexedOutput{{PoolID: p.ID, Hash: h(20), Asset: p.Asset, Amount: 5, Height: 3,
			ValidHeight: 103, State: storage.StateImmature}}) // not offered before it matures
		later := time.Now().Add(time.Hour)

		b := mustRecord(t, s, p.ID, 4, storage.ResSubmitted, later, h(3), h(4))
		a := mustRecord(t, s, p.ID, 2, storage.ResHeld, later, h(2))
		mustRecord(t, s, p.ID, 3, storage.ResHeld, time.Now().Add(-time.Second), h(5)) // expired
		mustRecord(t, s, p.ID, 9, storage.ResReleased, later, h(6))
		mustRecord(t, s, q.ID, 20, storage.ResHeld, later, hashOf(2, 0))
		// Reservations made with an idempotency key: the live and the ended
		// ones are kept for replays within the window, an older one is not.
		keyedAt := func(fence int64, state string, created time.Time, key, hash string) storage.Reservation {
			r := storage.Reservation{ID: newID(), PoolID: p.ID, Fence: fence, State: state, Hashes: hash,
				CreatedAt: created, ExpiresAt: later, IdempotencyKey: key, Fingerprint: "fp-" + key}
			if err := s.RecordReservation(ctx, r); err != nil {
				t.Fatal(err)
			}
			return mustReservation(t, s, r.ID)
		}
		k1 := keyedAt(5, storage.ResHeld, time.Now(), "k1", h(7))
		k2 := keyedAt(6, storage.ResReleased, time.Now().Add(-time.Hour), "k2", h(8))
		keyedAt(7, storage.ResReleased, time.Now().Add(-lockmgr.IdempotencyWindow-time.Minute), "k3", h(9))
		rq := storage.Reservation{ID: newID(), PoolID: q.ID, Fence: 21, Hashes: hashOf(2, 1), ExpiresAt: later,
			IdempotencyKey: "kq"}
		if err := s.RecordReservation(ctx, rq); err != nil {
			t.Fatal(err)
		}

		utxos, live, keyed, maxFence, err := s.Snapshot(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		// The available UTXOs, held or not: Redis offers them and the live
		// reservations hold some of them.
		if len(utxos) != 8 {
			t.Errorf("%d utxos, want the 8 available", len(utxos))
		}
		for i, u := range utxos {
			if u.PoolID != p.ID || u.Hash != h(i+2) || u.State != storage.StateAvailable || uint64(u.Amount) != uint64(1002+i) {
				t.Errorf("utxo %d: %+v", i, u)
			}
		}
		if got, want := strings.Join(ids(live), " "), strings.Join([]string{a.ID, b.ID, k1.ID}, " "); got != want {
			t.Errorf("live = %v, want a, b, k1 (by fence)", ids(live))
		}
		gotKeys := map[string]string{}
		for _, r := range keyed {
			gotKeys[r.IdempotencyKey] = r.ID
		}
		if len(gotKeys) != 2 || gotKeys["k1"] != k1.ID || gotKeys["k2"] != k2.ID {
			t.Errorf("keyed = %v, want k1 and k2 of this pool within the window", gotKeys)
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
		if len(snap.Live) != 3 {
			t.Fatalf("LockSnapshot live = %+v", snap.Live)
		}
		lb := snap.Live[1]
		if lb.ID != b.ID || lb.Fence != 4 || lb.State != storage.ResSubmitted || len(lb.Items) != 2 ||
			lb.Items[1].Hash != h(4) || lb.Items[1].Amount != 1004 || !lb.ExpiresAt.Equal(b.ExpiresAt) {
			t.Errorf("LockSnapshot live[1] = %+v", lb)
		}
		if len(snap.Keys) != 2 {
			t.Fatalf("LockSnapshot keys = %+v", snap.Keys)
		}
		for _, k := range snap.Keys {
			if (k.ID != k1.ID || k.Key != "k1" || k.Fingerprint != "fp-k1" || k.State != storage.ResHeld) &&
				(k.ID != k2.ID || k.Key != "k2" || k.Fingerprint != "fp-k2" || k.State != storage.ResReleased) {
				t.Errorf("LockSnapshot key %+v", k)
			}
		}

		empty := mustPool(t, s, assetB, programA)
		utxos, live, keyed, maxFence, err = s.Snapshot(ctx, empty.ID)
		if err != nil || len(utxos) != 0 || len(live) != 0 || len(keyed) != 0 || maxFence != 0 {
			t.Errorf("Snapshot(empty pool) = %v, %v, %v, %d, %v", utxos, live, keyed, maxFence, err)
		}
	})
}

func TestSubmittedReservations(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		mustReconcile(t, s, p, chainUTXOs(p, 1, 0, 10))
		h := func(i int) string { return hashOf(1, i) }
		later := time.Now().Add(time.Hour)
		t0 := time.Now().UTC().Truncate(time.Second)
		record := func(fence int64, state, tx string, created, expires time.Time, hash string) storage.Reservation {
			r := storage.Reservation{ID: newID(), PoolID: p.ID, Fence: fence, State: state, TxID: tx, Hashes: hash,
				CreatedAt: created, ExpiresAt: expires}
			if err := s.RecordReservation(ctx, r); err != nil {
				t.Fatal(err)
			}
			return r
		}
		newer := record(1, storage.ResSubmitted, "t1", t0, later, h(0))
		older := record(2, storage.ResSubmitted, "t2", t0.Add(-time.Minute), later, h(1))
		record(3, storage.ResHeld, "", t0.Add(-time.Hour), later, h(2))
		record(4, storage.ResSubmitted, "t4", t0.Add(-time.Hour), t0.Add(-time.Second), h(3)) // expired
		record(5, storage.ResSpent, "", t0.Add(-time.Hour), later, h(4))                      // spent by an unknown tx
		// Settled spent from the mempool within the submit grace: its
		// transaction may still fail.
		settled := record(6, storage.ResSpent, "t6", t0.Add(-2*time.Hour), later, h(5))
		r7 := storage.Reservation{ID: newID(), PoolID: p.ID, Fence: 7, State: storage.ResSpent, TxID: "t7", Hashes: h(6),
			CreatedAt: t0.Add(-3 * time.Hour), UpdatedAt: t0.Add(-lockmgr.DefaultSubmitGrace - time.Minute), ExpiresAt: later}
		if err := s.RecordReservation(ctx, r7); err != nil { // settled before the grace
			t.Fatal(err)
		}

		got, err := s.SubmittedReservations(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(ids(got), " ") != settled.ID+" "+older.ID+" "+newer.ID {
			t.Errorf("SubmittedReservations = %v, want settled, older, newer", ids(got))
		}
		got, err = s.SubmittedReservations(ctx, 1)
		if err != nil || len(got) != 1 || got[0].ID != settled.ID {
			t.Errorf("SubmittedReservations(limit 1) = %v, %v", ids(got), err)
		}
	})
}
