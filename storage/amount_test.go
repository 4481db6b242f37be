package storage_test

import (
	"math"
	"strconv"
	"testing"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/storage"
)

// amounts are the edges of uint64 amounts: zero, the first integer a float64
// loses, the first one int64 (and SQLite's integers) cannot hold, the largest.
var amounts = []uint64{0, 1<<53 + 1, 1 << 63, math.MaxUint64}

// Amounts round-trip exactly through every path that writes or reads them,
// on both dialects (NUMERIC(20,0) in PostgreSQL, decimal text in SQLite).
func TestAmountsRoundTrip(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA) // indexed: ChangeUTXOs and ApplyBlocks write it
		q := mustPool(t, s, assetA, programB) // listed: ReconcilePool writes it
		want := map[string]uint64{}
		var pending, confirmed []storage.IndexedOutput
		var listed []chain.UTXO
		for i, a := range amounts {
			pending = append(pending, output(p, hashOf(1, i), a, txOf(1, i), 0))
			confirmed = append(confirmed, output(p, hashOf(2, i), a, txOf(2, i), 1))
			listed = append(listed, chain.UTXO{Hash: hashOf(3, i), Asset: q.Asset, Program: q.Program, Amount: a, Confirmed: true})
			want[hashOf(1, i)], want[hashOf(2, i)], want[hashOf(3, i)] = a, a, a
		}
		mustChange(t, s, pending)
		b := block(1, 1)
		b.Outputs = confirmed
		mustApply(t, s, []int64{p.ID}, b)
		// ApplyBlocks confirms a pending output: its amount stays exact.
		b2 := block(1, 2)
		b2.Outputs = []storage.IndexedOutput{pending[3]}
		b2.Outputs[0].Height = 2
		mustApply(t, s, []int64{p.ID}, b2)
		res := mustReconcile(t, s, q, listed)
		if len(res.Added) != len(amounts) {
			t.Fatalf("reconcile added %d, want %d", len(res.Added), len(amounts))
		}
		check := func(path string, hash string, got uint64) {
			t.Helper()
			if w, ok := want[hash]; !ok || got != w {
				t.Errorf("%s: %s has amount %d, want %d", path, short(hash), got, w)
			}
		}
		for _, u := range res.Added {
			check("ReconcilePool", u.Hash, uint64(u.Amount))
		}
		hashes := make([]string, 0, len(want))
		for h := range want {
			hashes = append(hashes, h)
		}
		us, err := s.GetUTXOs(ctx, hashes)
		if err != nil || len(us) != len(want) {
			t.Fatalf("GetUTXOs = %d rows, %v", len(us), err)
		}
		for _, u := range us {
			check("GetUTXOs", u.Hash, uint64(u.Amount))
		}
		if u := mustUTXO(t, s, hashOf(1, 3)); !u.Confirmed || u.Height != 2 {
			t.Errorf("the pending output was not confirmed: %+v", u)
		}
		// The stored value itself, as the database has it.
		var raw []struct {
			Hash   string
			Amount string
		}
		if err := s.DB().WithContext(ctx).Raw(`SELECT hash, CAST(amount AS TEXT) AS amount FROM utxos`).Scan(&raw).Error; err != nil {
			t.Fatal(err)
		}
		if len(raw) != len(want) {
			t.Errorf("%d rows stored, want %d", len(raw), len(want))
		}
		for _, r := range raw {
			check("stored text", r.Hash, mustParse(t, r.Amount))
		}

		// Hold the confirmed ones, so that the reserved listing and the
		// journal's reads see them too.
		j := newJournal(t, s, storage.JournalOptions{})
		r := lockRes(p.ID, 1, hashOf(2, 0), hashOf(2, 1), hashOf(2, 2), hashOf(2, 3))
		if err := j.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			pool  int64
			state string
			n     int
		}{{p.ID, "", 8}, {p.ID, storage.StateReserved, 4}, {p.ID, storage.StateAvailable, 4}, {q.ID, "", 4}} {
			list, err := s.ListUTXOs(ctx, c.pool, c.state, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != c.n {
				t.Errorf("ListUTXOs(%d, %q) = %d rows, want %d", c.pool, c.state, len(list), c.n)
			}
			for _, u := range list {
				check("ListUTXOs("+c.state+")", u.Hash, uint64(u.Amount))
			}
		}
		for pool, n := range map[int64]int{p.ID: 8, q.ID: 4} {
			utxos, _, _, _, err := s.Snapshot(ctx, pool)
			if err != nil || len(utxos) != n {
				t.Fatalf("Snapshot(%d) = %d utxos, %v; want %d", pool, len(utxos), err, n)
			}
			for _, u := range utxos {
				check("Snapshot", u.Hash, uint64(u.Amount))
			}
			snap, err := s.LockSnapshot(ctx, pool)
			if err != nil || len(snap.Available) != n {
				t.Fatalf("LockSnapshot(%d) = %+v, %v", pool, snap, err)
			}
			items := snap.Available
			for _, l := range snap.Live {
				items = append(items, l.Items...)
			}
			for _, it := range items {
				check("LockSnapshot", it.Hash, it.Amount)
			}
			avail, err := s.AvailableUTXOs(ctx, pool)
			if err != nil || len(avail) != n {
				t.Fatalf("AvailableUTXOs(%d) = %d, %v", pool, len(avail), err)
			}
			for h, a := range avail {
				check("AvailableUTXOs", h, a)
			}
		}
		got, err := j.Lookup(ctx, r.ID)
		if err != nil || len(got.Items) != 4 {
			t.Fatalf("Lookup = %+v, %v", got, err)
		}
		for _, it := range got.Items {
			check("Journal.Lookup", it.Hash, it.Amount)
		}
		// The same list again: nothing differs, nothing is written.
		if res := mustReconcile(t, s, q, listed); res.Changed() {
			t.Errorf("second reconcile of the same amounts changed %+v", res)
		}
	})
}

func mustParse(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("stored amount %q: %v", s, err)
	}
	return n
}

// Amount is written as a decimal string and read from what the drivers give.
func TestAmountValueAndScan(t *testing.T) {
	t.Parallel()
	for _, a := range amounts {
		v, err := storage.Amount(a).Value()
		if err != nil || v != strconv.FormatUint(a, 10) {
			t.Errorf("Amount(%d).Value() = %v, %v", a, v, err)
		}
		for _, src := range []any{strconv.FormatUint(a, 10), []byte(strconv.FormatUint(a, 10))} {
			var got storage.Amount
			if err := got.Scan(src); err != nil || uint64(got) != a {
				t.Errorf("Scan(%T %v) = %d, %v", src, src, got, err)
			}
		}
	}
	var got storage.Amount
	if err := got.Scan(int64(math.MaxInt64)); err != nil || uint64(got) != math.MaxInt64 {
		t.Errorf("Scan(int64 max) = %d, %v", got, err)
	}
	for _, bad := range []any{int64(-1), "-1", "18446744073709551616", "1.5", "", 1.0, nil} {
		got = 7
		if err := got.Scan(bad); err == nil {
			t.Errorf("Scan(%T %v) accepted: %d", bad, bad, got)
		}
	}
}
