package storage_test

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/storage"
)

func TestReservationJournal(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		seen := chainUTXOs(p, 1, 0, 10)
		// Two hashes where one is a prefix of the other: membership must be exact.
		seen = append(seen, chain.UTXO{Hash: "deadbeef", Amount: 5}, chain.UTXO{Hash: "deadbeef00", Amount: 6})
		mustReconcile(t, s, p, seen)
		h := func(i int) string { return seen[i].Hash }

		t0 := time.Now().UTC().Truncate(time.Second)
		// Times in another zone are the same instants (SQLite compares them as text).
		zone := time.FixedZone("UTC+5", 5*3600)
		a := storage.Reservation{
			ID: strings.Repeat("a", 32), PoolID: p.ID, Fence: 1, Owner: "alice",
			Hashes: h(0) + "," + h(1), CreatedAt: t0, ExpiresAt: t0.Add(time.Minute).In(zone),
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
		if st := listedStates(t, s, p.ID); st[h(5)] != storage.StateAvailable {
			t.Errorf("a refused reservation reserved its utxo: %v", st[h(5)])
		}
		for _, bad := range []storage.Reservation{
			{ID: "x", PoolID: p.ID, Fence: 0, Hashes: h(6), ExpiresAt: t0},
			{ID: "x", PoolID: p.ID, Fence: 9, Hashes: "", ExpiresAt: t0},
			{ID: "", PoolID: p.ID, Fence: 9, Hashes: h(6), ExpiresAt: t0},
			{ID: "x", PoolID: p.ID, Fence: 9, Hashes: h(6) + ",", ExpiresAt: t0},
			{ID: "x", PoolID: p.ID, Fence: 9, Hashes: h(6), ExpiresAt: t0, State: "reserved"},
		} {
			if err := s.RecordReservation(ctx, bad); !errors.Is(err, storage.ErrInvalidArgument) {
				t.Errorf("RecordReservation(%+v): err = %v, want ErrInvalidArgument", bad, err)
			}
		}
		if s.Dialect() == storage.DialectPostgres { // SQLite (dev) has no foreign keys to pools
			err := s.RecordReservation(ctx, storage.Reservation{ID: "y", PoolID: p.ID + 100, Fence: 1, Hashes: h(6), ExpiresAt: t0})
			if !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("RecordReservation(unknown pool): err = %v, want ErrNotFound", err)
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
		_, live, _, maxFence, err := s.Snapshot(ctx, p.ID)
		if err != nil || len(live) != 2 || live[0].ID != a.ID || live[1].ID != b.ID {
			t.Fatalf("live reservations = %+v, %v", live, err)
		}
		if maxFence != 2 {
			t.Errorf("highest fence = %d", maxFence)
		}

		// Nothing due yet.
		n, err := s.ExpireReservations(ctx, t0.Add(30*time.Second).In(zone))
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
		wantStates(t, "after a expired", listedStates(t, s, p.ID), map[string]string{
			h(0): storage.StateAvailable, h(1): storage.StateReserved, h(2): storage.StateReserved,
			"deadbeef": storage.StateAvailable, "deadbeef00": storage.StateReserved,
		})
		if got, _ := s.GetReservation(ctx, a.ID); got.State != storage.ResExpired {
			t.Errorf("a is %s, want expired", got.State)
		}

		// A held UTXO that the chain no longer reports becomes spent.
		res := mustReconcile(t, s, p, append(seen[:2:2], seen[3:]...))
		if len(res.Spent) != 1 || res.Spent[0] != h(2) {
			t.Fatalf("reserved utxo gone from chain: spent %v", res.Spent)
		}
		if c := mustCounts(t, s, p.ID); c != (storage.Counts{Available: 9, Reserved: 2, Spent: 1}) {
			t.Fatalf("counts with a held utxo spent: %+v (a spent one is spent, held or not)", c)
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
	t.Parallel()
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

		// Extend and submit with the current fence, from held.
		later := exp.Add(time.Hour)
		if err := s.UpdateReservation(ctx, r.ID, storage.ReservationUpdate{Fence: 5, State: storage.ResSubmitted, TxID: "tx1",
			ExpiresAt: later, From: []string{storage.ResHeld}}); err != nil {
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
		// A submitted reservation is not released by an update from held.
		err = s.UpdateReservation(ctx, r.ID, storage.ReservationUpdate{Fence: 5, State: storage.ResReleased, From: []string{storage.ResHeld}})
		if !errors.Is(err, storage.ErrWrongState) {
			t.Fatalf("release from held of a submitted reservation: err = %v, want ErrWrongState", err)
		}
		if c := mustCounts(t, s, p.ID); c != (storage.Counts{Available: 2, Reserved: 2}) {
			t.Fatalf("a refused release freed utxos: %+v", c)
		}
		for _, from := range [][]string{{storage.ResSpent}, {storage.ResHeld, "bogus"}} {
			err := s.UpdateReservation(ctx, r.ID, storage.ReservationUpdate{Fence: 5, State: storage.ResReleased, From: from})
			if !errors.Is(err, storage.ErrInvalidArgument) {
				t.Errorf("update from %v: err = %v, want ErrInvalidArgument", from, err)
			}
		}

		// Release (from any live state) frees the UTXOs at once.
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

// settleCase is one reservation of TestSettle and the chain event its UTXOs see.
type settleCase struct {
	name    string
	state   string // the reservation's state when the chain moves
	tx      string
	expired bool          // its expiry passed (not yet marked)
	ago     time.Duration // how long ago its row last changed (a settled-spent one's window)
	utxos   []storage.UTXOChange
	unknown bool // it also holds a UTXO the store does not know
	skip    bool // its hashes are not passed to Settle
	want    string
	wantTx  string
}

// TestSettle applies the chain to reservations with Store.Settle, one case
// per row of the lifecycle table in lockmgr's package doc.
func TestSettle(t *testing.T) {
	t.Parallel()
	const (
		T = "7100000000000000000000000000000000000000000000000000000000000000" // the reservation's own transaction
		X = "7800000000000000000000000000000000000000000000000000000000000000" // another one
	)
	spentBy := func(tx string) storage.UTXOChange { return storage.UTXOChange{State: storage.StateSpent, SpentTx: tx} }
	avail := storage.UTXOChange{State: storage.StateAvailable}
	invalid := storage.UTXOChange{State: storage.StateInvalidated}
	cases := []settleCase{
		{name: "held, a utxo spent by T", state: storage.ResHeld, utxos: []storage.UTXOChange{spentBy(T), avail},
			want: storage.ResSpent, wantTx: T},
		{name: "held, spent by an unknown tx", state: storage.ResHeld, utxos: []storage.UTXOChange{spentBy("")},
			want: storage.ResSpent},
		{name: "submitted T, spent by T", state: storage.ResSubmitted, tx: T, utxos: []storage.UTXOChange{spentBy(T), avail},
			want: storage.ResSpent, wantTx: T},
		{name: "submitted T, spent by an unknown tx", state: storage.ResSubmitted, tx: T, utxos: []storage.UTXOChange{spentBy("")},
			want: storage.ResSpent, wantTx: T},
		{name: "submitted T, spent by X", state: storage.ResSubmitted, tx: T, utxos: []storage.UTXOChange{spentBy(T), spentBy(X)},
			want: storage.ResInvalidated, wantTx: T},
		{name: "held, a utxo invalidated", state: storage.ResHeld, utxos: []storage.UTXOChange{invalid, avail},
			want: storage.ResInvalidated},
		{name: "submitted T, spent by T and a utxo invalidated", state: storage.ResSubmitted, tx: T,
			utxos: []storage.UTXOChange{spentBy(T), invalid}, want: storage.ResInvalidated, wantTx: T},
		// Issue 13, case 2: the old code settled such a reservation spent,
		// without a tx id.
		{name: "held, ran out before the spend", state: storage.ResHeld, expired: true, utxos: []storage.UTXOChange{spentBy(X)},
			want: storage.ResExpired},
		{name: "submitted T, ran out before the spend", state: storage.ResSubmitted, tx: T, expired: true,
			utxos: []storage.UTXOChange{spentBy(T)}, want: storage.ResExpired, wantTx: T},
		{name: "held, ran out, nothing spent", state: storage.ResHeld, expired: true, utxos: []storage.UTXOChange{avail},
			want: storage.ResExpired},
		{name: "held, nothing happened", state: storage.ResHeld, utxos: []storage.UTXOChange{avail, avail}, unknown: true,
			want: storage.ResHeld},
		{name: "submitted T, nothing happened", state: storage.ResSubmitted, tx: T, utxos: []storage.UTXOChange{avail},
			want: storage.ResSubmitted, wantTx: T},
		{name: "spent by T, its spend vanished", state: storage.ResSpent, tx: T, utxos: []storage.UTXOChange{avail, avail},
			want: storage.ResReleased, wantTx: T},
		{name: "spent by T, a utxo invalidated", state: storage.ResSpent, tx: T, utxos: []storage.UTXOChange{spentBy(T), invalid},
			want: storage.ResInvalidated, wantTx: T},
		{name: "spent by T, still spent", state: storage.ResSpent, tx: T, utxos: []storage.UTXOChange{spentBy(T), avail},
			want: storage.ResSpent, wantTx: T},
		{name: "spent by T long ago, its spend vanished", state: storage.ResSpent, tx: T, ago: 2 * time.Hour,
			utxos: []storage.UTXOChange{avail}, want: storage.ResSpent, wantTx: T},
		{name: "released, then spent", state: storage.ResReleased, utxos: []storage.UTXOChange{spentBy(X)},
			want: storage.ResReleased},
		{name: "expired, then spent", state: storage.ResExpired, utxos: []storage.UTXOChange{spentBy(X)},
			want: storage.ResExpired},
		{name: "invalidated, then available", state: storage.ResInvalidated, tx: T, utxos: []storage.UTXOChange{avail},
			want: storage.ResInvalidated, wantTx: T},
		// Last: the second Settle below moves it.
		{name: "held, spent, hashes not given", state: storage.ResHeld, utxos: []storage.UTXOChange{spentBy(X)}, skip: true,
			want: storage.ResHeld},
	}
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		q := mustPool(t, s, assetA, programB)
		now := time.Now()
		ids := make([]string, len(cases))
		var given, all []string
		var changes []storage.UTXOChange
		for i, c := range cases {
			var hashes []string
			for k, u := range c.utxos {
				h := hashOf(byte(i+1), k)
				hashes = append(hashes, h)
				u.PoolID, u.Hash = p.ID, h
				if u.State != storage.StateAvailable {
					changes = append(changes, u)
				}
			}
			seen := chainUTXOs(p, byte(i+1), 0, len(c.utxos))
			if err := s.ChangeUTXOs(ctx, outputsOf(p, seen), nil); err != nil {
				t.Fatal(err)
			}
			if c.unknown {
				hashes = append(hashes, hashOf(0xee, i))
			}
			r := storage.Reservation{ID: newID(), PoolID: p.ID, Fence: int64(i + 1), State: c.state, TxID: c.tx,
				Hashes: strings.Join(hashes, ","), ExpiresAt: now.Add(time.Hour)}
			if c.expired {
				r.ExpiresAt = now.Add(-time.Minute)
			}
			if c.ago > 0 {
				r.CreatedAt, r.UpdatedAt = now.Add(-c.ago), now.Add(-c.ago)
			}
			if err := s.RecordReservation(ctx, r); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			ids[i] = r.ID
			all = append(all, hashes...)
			if !c.skip {
				given = append(given, hashes...)
			}
		}
		mustChange(t, s, nil, changes...)
		// A reservation of another pool on a spent UTXO: not q's Settle's business in p.
		seenQ := chainUTXOs(q, 0x70, 0, 1)
		mustChange(t, s, outputsOf(q, seenQ))
		spend(t, s, q.ID, X, 0, seenQ[0].Hash)
		rq := mustRecord(t, s, q.ID, 1, storage.ResHeld, now.Add(time.Hour), seenQ[0].Hash)

		before := s.StatementCount()
		got, err := s.Settle(ctx, p.ID, append(slices.Clone(given), seenQ[0].Hash))
		if err != nil {
			t.Fatal(err)
		}
		stmts := s.StatementCount() - before
		var wantMoved []string
		for i, c := range cases {
			if c.want != c.state {
				wantMoved = append(wantMoved, ids[i]) // cases are in fence order
			}
		}
		if !slices.Equal(settledIDs(got), wantMoved) {
			t.Errorf("Settle moved %d reservations, want %d (by fence)", len(got), len(wantMoved))
		}
		moved := map[string]storage.Settled{}
		for _, m := range got {
			moved[m.ID] = m
		}
		for i, c := range cases {
			stored := mustReservation(t, s, ids[i])
			if stored.State != c.want || stored.TxID != c.wantTx {
				t.Errorf("%s: stored %s tx %q, want %s tx %q", c.name, stored.State, short(stored.TxID), c.want, short(c.wantTx))
			}
			m, ok := moved[ids[i]]
			switch {
			case c.want == c.state && ok:
				t.Errorf("%s: returned as moved", c.name)
			case c.want != c.state && !ok:
				t.Errorf("%s: not returned", c.name)
			case ok && (m.From != c.state || m.State != c.want || m.TxID != c.wantTx || m.PoolID != p.ID || m.Fence != int64(i+1) ||
				m.Hashes != stored.Hashes):
				t.Errorf("%s: returned %+v, want from %s to %s", c.name, m, c.state, c.want)
			}
		}
		if got := mustReservation(t, s, rq.ID); got.State != storage.ResHeld {
			t.Errorf("Settle of pool %d moved a reservation of pool %d: %s", p.ID, q.ID, got.State)
		}
		t.Logf("Settle of %d hashes moved %d reservations in %d statements", len(given)+1, len(got), stmts)
		if stmts > 4 {
			t.Errorf("Settle took %d statements, want at most 4", stmts)
		}

		// Settled ones are not settled again; the statement count does not
		// grow with the number of hashes beyond one per 1000.
		many := slices.Clone(all)
		for i := range 2000 {
			many = append(many, hashOf(0xdd, i))
		}
		before = s.StatementCount()
		again, err := s.Settle(ctx, p.ID, many)
		if err != nil {
			t.Fatal(err)
		}
		// The one whose hashes were not given moves now.
		if moved := settledIDs(again); len(moved) != 1 || moved[0] != ids[len(cases)-1] {
			t.Errorf("second Settle moved %v, want only the one whose hashes were not given", moved)
		}
		if n, limit := s.StatementCount()-before, int64(3+(len(many)+999)/1000); n > limit {
			t.Errorf("Settle of %d hashes took %d statements, want at most %d", len(many), n, limit)
		}
		if got, err := s.Settle(ctx, p.ID, nil); err != nil || len(got) != 0 {
			t.Errorf("Settle(nil) = %v, %v", got, err)
		}
		// q's own Settle moves q's reservation.
		if got, err := s.Settle(ctx, q.ID, []string{seenQ[0].Hash}); err != nil || len(got) != 1 || got[0].ID != rq.ID ||
			got[0].State != storage.ResSpent || got[0].TxID != X || got[0].From != storage.ResHeld {
			t.Errorf("Settle(q) = %+v, %v", got, err)
		}
	})
}

// outputsOf converts chain UTXOs of pool p to outputs for ChangeUTXOs or
// ApplyBlocks (pending: height 0).
func outputsOf(p storage.Pool, us []chain.UTXO) []storage.IndexedOutput {
	out := make([]storage.IndexedOutput, len(us))
	for i, u := range us {
		out[i] = output(p, u.Hash, u.Amount, u.TxID, 0)
	}
	return out
}

func settledIDs(rs []storage.Settled) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

// UnsettledHashes finds the UTXOs whose reservations the chain moved without
// Settle seeing it; LiveReservationIDs the live reservations not run out.
func TestUnsettledHashesAndLiveReservationIDs(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		q := mustPool(t, s, assetA, programB)
		seen := chainUTXOs(p, 1, 0, 10)
		mustReconcile(t, s, p, seen)
		mustReconcile(t, s, q, chainUTXOs(q, 2, 0, 1))
		u := func(i int) string { return seen[i].Hash }
		T := txOf(1, 1)
		now := time.Now()
		later := now.Add(time.Hour)
		record := func(fence int64, state, tx string, expires time.Time, ago time.Duration, hashes ...string) string {
			t.Helper()
			r := storage.Reservation{ID: newID(), PoolID: p.ID, Fence: fence, State: state, TxID: tx,
				Hashes: strings.Join(hashes, ","), ExpiresAt: expires}
			if ago > 0 {
				r.CreatedAt, r.UpdatedAt = now.Add(-ago), now.Add(-ago)
			}
			if err := s.RecordReservation(ctx, r); err != nil {
				t.Fatal(err)
			}
			return r.ID
		}
		a := record(1, storage.ResHeld, "", later, 0, u(0), u(1))              // u(0) spent under it
		b := record(2, storage.ResSubmitted, T, later, 0, u(2))                // u(2) invalidated under it
		c := record(3, storage.ResHeld, "", later, 0, u(3))                    // nothing happened
		record(4, storage.ResSpent, T, later, 0, u(4))                         // settled spent, its spend vanished
		record(5, storage.ResSpent, T, later, 0, u(5))                         // settled spent, still spent
		record(6, storage.ResSpent, T, later, 2*time.Hour, u(6))               // settled long ago, spend vanished
		record(7, storage.ResReleased, "", later, 0, u(7))                     // ended, then spent
		h := record(8, storage.ResHeld, "", now.Add(-10*time.Second), 0, u(8)) // ran out 10 s ago, not marked
		spend(t, s, p.ID, T, 0, u(0), u(5), u(7))
		setState(t, s, p.ID, storage.StateInvalidated, u(2))
		mustRecord(t, s, q.ID, 1, storage.ResHeld, later, hashOf(2, 0))
		spend(t, s, q.ID, T, 0, hashOf(2, 0))

		got, err := s.UnsettledHashes(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if want := []string{u(0), u(2), u(4)}; !slices.Equal(got, want) {
			t.Errorf("UnsettledHashes = %v, want %v", got, want)
		}
		if got, err := s.UnsettledHashes(ctx, q.ID+100); err != nil || len(got) != 0 {
			t.Errorf("UnsettledHashes(unknown pool) = %v, %v", got, err)
		}

		live, err := s.LiveReservationIDs(ctx, p.ID, now.Add(-30*time.Second).In(time.FixedZone("UTC-7", -7*3600)))
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]bool{a: true, b: true, c: true, h: true}; !maps.Equal(live, want) {
			t.Errorf("LiveReservationIDs(30 s ago) = %v, want a, b, c and the one that ran out 10 s ago", live)
		}
		live, err = s.LiveReservationIDs(ctx, p.ID, now)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]bool{a: true, b: true, c: true}; !maps.Equal(live, want) {
			t.Errorf("LiveReservationIDs(now) = %v, want a, b, c", live)
		}

		// Settling what it found settles the pool: the next sweep finds
		// nothing more to move.
		settled, err := s.Settle(ctx, p.ID, got)
		if err != nil || len(settled) != 3 {
			t.Fatalf("Settle(unsettled) moved %d, %v; want 3", len(settled), err)
		}
		got, err = s.UnsettledHashes(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		if again, err := s.Settle(ctx, p.ID, got); err != nil || len(again) != 0 {
			t.Errorf("Settle of what is still reported unsettled (%d hashes) moved %v, %v", len(got), settledIDs(again), err)
		}
		if slices.Contains(got, u(0)) || slices.Contains(got, u(2)) {
			t.Errorf("after Settle UnsettledHashes still reports the spent or invalidated utxo: %v", got)
		}
		live, err = s.LiveReservationIDs(ctx, p.ID, now)
		if want := map[string]bool{c: true}; err != nil || !maps.Equal(live, want) {
			t.Errorf("LiveReservationIDs after Settle = %v, %v; want only c", live, err)
		}
	})
}
