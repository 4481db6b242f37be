package storage_test

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/storage"
)

func TestEnsurePoolConcurrent(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			ids     = map[int64]bool{}
			created int
		)
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Different spellings of the same pool.
				asset, program := assetA, programA
				if i%2 == 1 {
					asset, program = " "+strings.ToUpper(assetA), strings.ToUpper(programA)+" "
				}
				p, c, err := s.EnsurePool(ctx, asset, program)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					t.Errorf("EnsurePool: %v", err)
					return
				}
				ids[p.ID] = true
				if c {
					created++
				}
			}()
		}
		wg.Wait()
		pools, err := s.ListPools(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(pools) != 1 || len(ids) != 1 || created != 1 {
			t.Fatalf("20 concurrent EnsurePool: %d rows, %d ids, %d created; want 1, 1, 1", len(pools), len(ids), created)
		}
		if pools[0].Asset != assetA || pools[0].Program != programA {
			t.Errorf("stored pool %+v, want lower-case asset and program", pools[0])
		}

		got, err := s.GetPool(ctx, pools[0].ID)
		if err != nil || got.ID != pools[0].ID {
			t.Errorf("GetPool = %+v, %v", got, err)
		}
		if _, err := s.GetPool(ctx, pools[0].ID+100); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetPool(unknown): err = %v, want ErrNotFound", err)
		}
		if _, err := s.FindPool(ctx, assetB, programA); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("FindPool(unknown): err = %v, want ErrNotFound", err)
		}
		if _, _, err := s.EnsurePool(ctx, "", programA); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("EnsurePool(empty asset): err = %v, want ErrInvalidArgument", err)
		}
		p2, c, err := s.EnsurePool(ctx, assetB, programA)
		if err != nil || !c || p2.ID == pools[0].ID {
			t.Errorf("EnsurePool(other asset) = %+v, %v, %v; want a new pool", p2, c, err)
		}
	})
}

func TestReconcile(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)

		// A pool of 5,000 UTXOs syncs completely (2,500 on SQLite, which is
		// dev-only and very slow under the race detector).
		n := 5000
		if s.Dialect() == storage.DialectSQLite {
			n = 2500
		}
		batches := (n + 999) / 1000
		seen := chainUTXOs(p, 1, 0, n)
		seen[7].Confirmed = false
		res := mustReconcile(t, s, p, seen)
		if len(res.Added) != n || len(res.Spent) != 0 || len(res.Revived) != 0 {
			t.Fatalf("first sync: added %d spent %d revived %d, want %d/0/0", len(res.Added), len(res.Spent), len(res.Revived), n)
		}
		if res.Statements != 2+batches { // the unspent rows, the others, one insert per 1000 rows
			t.Errorf("first sync: %d statements, want %d", res.Statements, 2+batches)
		}
		for _, u := range res.Added {
			if u.ID == 0 || u.State != storage.StateAvailable || u.PoolID != p.ID {
				t.Fatalf("added row %+v", u)
			}
		}
		if c := mustCounts(t, s, p.ID); c != (storage.Counts{Available: int64(n)}) {
			t.Fatalf("counts after first sync: %+v", c)
		}
		stored, err := s.PoolUTXOsByState(ctx, p.ID, storage.StateAvailable)
		if err != nil || len(stored) != n {
			t.Fatalf("PoolUTXOsByState = %d rows, %v", len(stored), err)
		}
		for i, u := range stored { // inserted in order, so ids follow seen
			if u.Hash != seen[i].Hash || uint64(u.Amount) != seen[i].Amount || u.Confirmed != seen[i].Confirmed ||
				u.CreatedTx != seen[i].TxID || u.Asset != p.Asset {
				t.Fatalf("stored[%d] = %+v, want %+v", i, u, seen[i])
			}
		}

		// Same input again: only the read, no transaction, nothing changed.
		before := s.StatementCount()
		res = mustReconcile(t, s, p, seen)
		if d := s.StatementCount() - before; d != 1 || res.Statements != 1 || res.Changed() {
			t.Fatalf("unchanged sync: %d statements (result says %d), result %+v; want one read, no change", d, res.Statements, res)
		}

		// One gone, one new.
		one := append(slices.Clone(seen[1:]), chainUTXOs(p, 2, 0, 1)...)
		res = mustReconcile(t, s, p, one)
		if len(res.Added) != 1 || res.Added[0].Hash != hashOf(2, 0) || !slices.Equal(res.Spent, []string{seen[0].Hash}) {
			t.Fatalf("one change: added %v spent %v", res.Added, res.Spent)
		}
		if got := res.Touched(); !slices.Equal(got, []string{hashOf(2, 0), seen[0].Hash}) {
			t.Errorf("one change: touched %v", got)
		}
		stmtsOne := res.Statements
		if stmtsOne != 4 { // read the unspent rows, look the new hash up, insert, mark spent
			t.Errorf("one change: %d statements, want 4", stmtsOne)
		}

		// 100 gone, 100 new: the same number of statements.
		hundred := append(slices.Clone(seen[101:]), chainUTXOs(p, 2, 0, 101)...)
		res = mustReconcile(t, s, p, hundred)
		if len(res.Added) != 100 || len(res.Spent) != 100 {
			t.Fatalf("100 changes: added %d spent %d", len(res.Added), len(res.Spent))
		}
		if res.Statements != stmtsOne {
			t.Errorf("100 changes: %d statements, 1 change: %d; want equal", res.Statements, stmtsOne)
		}
		if c := mustCounts(t, s, p.ID); c != (storage.Counts{Available: int64(n), Spent: 101}) {
			t.Fatalf("counts: %+v", c)
		}

		// Spent rows seen again come back; a confirmation flips.
		back := append(slices.Clone(hundred), seen[:101]...)
		back[0].Confirmed = false // was confirmed
		res = mustReconcile(t, s, p, back)
		if len(res.Revived) != 101 || len(res.Added) != 0 || len(res.Spent) != 0 || res.Confirmed != 1 {
			t.Fatalf("revive: revived %d added %d spent %d confirmed %d", len(res.Revived), len(res.Added), len(res.Spent), res.Confirmed)
		}
		if res.Statements != 4 { // read the unspent rows, look the spent ones up, revive, unconfirm
			t.Errorf("revive: %d statements, want 4", res.Statements)
		}
		st := statesOf(t, s, seen[0].Hash, seen[100].Hash)
		if st[seen[0].Hash] != storage.StateAvailable || st[seen[100].Hash] != storage.StateAvailable {
			t.Fatalf("revived states: %v", st)
		}
		got, err := s.GetUTXOs(ctx, []string{back[0].Hash, seen[0].Hash, "unknown", seen[0].Hash})
		if err != nil || len(got) != 2 {
			t.Fatalf("GetUTXOs = %d rows, %v", len(got), err)
		}
		for _, u := range got {
			if u.Hash == back[0].Hash && u.Confirmed {
				t.Errorf("confirmed flag did not follow the chain: %+v", u)
			}
			if u.Hash == seen[0].Hash && (u.SpentAt != nil || u.State != storage.StateAvailable) {
				t.Errorf("revived row keeps spent data: %+v", u)
			}
		}
		if c := mustCounts(t, s, p.ID); c != (storage.Counts{Available: int64(n) + 101}) {
			t.Fatalf("counts after revive: %+v", c)
		}

		// Everything gone: all spent, one statement per 1000 rows.
		res = mustReconcile(t, s, p, nil)
		if all := n + 101; len(res.Spent) != all || res.Statements != 1+(all+999)/1000 {
			t.Fatalf("all gone: spent %d in %d statements, want %d in %d", len(res.Spent), res.Statements, all, 1+(all+999)/1000)
		}
		if c := mustCounts(t, s, p.ID); c != (storage.Counts{Spent: int64(n) + 101}) {
			t.Fatalf("counts after all gone: %+v", c)
		}

		// More than 1000 spent rows seen again: the spent history is read
		// in one statement instead of looked up by hash (then one revive per
		// 1000 rows, and back[0]'s confirmation flips back).
		res = mustReconcile(t, s, p, hundred)
		if len(res.Revived) != n || len(res.Added) != 0 || res.Statements != 3+batches {
			t.Fatalf("mass revive: revived %d added %d in %d statements, want %d, 0 in %d", len(res.Revived), len(res.Added), res.Statements, n, 3+batches)
		}
		if c := mustCounts(t, s, p.ID); c != (storage.Counts{Available: int64(n), Spent: 101}) {
			t.Fatalf("counts after mass revive: %+v", c)
		}
	})
}

func TestReconcileSkipsForeignAndBadEntries(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		p1 := mustPool(t, s, assetA, programA)
		p2 := mustPool(t, s, assetB, programB)
		mustReconcile(t, s, p1, chainUTXOs(p1, 1, 0, 3))

		seen := chainUTXOs(p2, 2, 0, 2)
		foreign := chainUTXOs(p2, 1, 0, 1)[0] // p1's hash reported for p2
		wrongAsset := chainUTXOs(p1, 3, 0, 1)[0]
		wrongAsset.Program = p2.Program // right program, wrong asset
		seen = append(seen, foreign, wrongAsset,
			chain.UTXO{Hash: "", Amount: 1},
			// (A negative amount, skipped before, can no longer be
			// expressed: amounts are uint64.)
			seen[0], // duplicate
		)
		res := mustReconcile(t, s, p2, seen)
		if len(res.Added) != 2 {
			t.Fatalf("added %d rows, want the 2 valid ones: %+v", len(res.Added), res.Added)
		}
		us, err := s.GetUTXOs(testCtx(t), []string{foreign.Hash})
		if err != nil || len(us) != 1 || us[0].PoolID != p1.ID {
			t.Fatalf("foreign hash row = %+v, %v; want it untouched in pool %d", us, err, p1.ID)
		}
		if c := mustCounts(t, s, p1.ID); c != (storage.Counts{Available: 3}) {
			t.Errorf("pool 1 counts: %+v", c)
		}
		if c := mustCounts(t, s, p2.ID); c != (storage.Counts{Available: 2}) {
			t.Errorf("pool 2 counts: %+v", c)
		}
		// Skipped entries never cause writes on the next pass.
		res = mustReconcile(t, s, p2, seen)
		if res.Changed() {
			t.Errorf("second pass changed something: %+v", res)
		}
	})
}

func TestListUTXOsPagination(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		other := mustPool(t, s, assetB, programB)
		mustReconcile(t, s, other, chainUTXOs(other, 9, 0, 5))
		mustReconcile(t, s, p, chainUTXOs(p, 1, 0, 25))
		mustReconcile(t, s, p, chainUTXOs(p, 1, 5, 20)) // first 5 spent

		var all []storage.UTXO
		after := int64(0)
		for page := 0; ; page++ {
			us, err := s.ListUTXOs(ctx, p.ID, "", after, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(us) == 0 {
				break
			}
			if page > 5 {
				t.Fatal("pagination does not end")
			}
			all = append(all, us...)
			after = us[len(us)-1].ID
		}
		if len(all) != 25 {
			t.Fatalf("paged through %d rows, want 25", len(all))
		}
		for i := 1; i < len(all); i++ {
			if all[i].ID <= all[i-1].ID || all[i].PoolID != p.ID {
				t.Fatalf("row %d out of order or from another pool: %+v", i, all[i])
			}
		}
		spent, err := s.ListUTXOs(ctx, p.ID, storage.StateSpent, 0, 0)
		if err != nil || len(spent) != 5 {
			t.Fatalf("spent rows: %d, %v", len(spent), err)
		}
		if _, err := s.ListUTXOs(ctx, p.ID, "bogus", 0, 10); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("ListUTXOs(bogus state): err = %v", err)
		}
		both, err := s.PoolUTXOsByState(ctx, p.ID, storage.StateSpent, storage.StateAvailable)
		if err != nil || len(both) != 25 {
			t.Errorf("PoolUTXOsByState(spent, available) = %d, %v", len(both), err)
		}
	})
}

func TestStateCheckConstraint(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		p := mustPool(t, s, assetA, programA)
		mustReconcile(t, s, p, chainUTXOs(p, 1, 0, 1))
		for _, st := range []string{"bogus", "reserved"} { // reserved is derived, never stored
			if err := s.DB().WithContext(testCtx(t)).Exec(`UPDATE utxos SET state = ?`, st).Error; err == nil {
				t.Errorf("utxo state %q was accepted", st)
			}
		}
		if err := s.DB().WithContext(testCtx(t)).Exec(`UPDATE utxos SET state = 'immature'`).Error; err != nil {
			t.Errorf("utxo state immature refused: %v", err)
		}
	})
}

// A pool's options are set when it is registered; registering it again
// keeps them.
func TestEnsurePoolOptions(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		def, created, err := s.EnsurePool(ctx, assetA, programA)
		if err != nil || !created {
			t.Fatalf("EnsurePool = %+v, %v, %v", def, created, err)
		}
		if !def.Unconfirmed || def.FromHeight != 0 || def.SyncedAt != nil {
			t.Errorf("default options: %+v; want unconfirmed, from height 0, not synced", def)
		}
		no := false
		p, created, err := s.EnsurePool(ctx, assetA, programB, storage.PoolOptions{Unconfirmed: &no, FromHeight: 1234})
		if err != nil || !created || p.Unconfirmed || p.FromHeight != 1234 {
			t.Fatalf("EnsurePool(unconfirmed false, from 1234) = %+v, %v, %v", p, created, err)
		}
		yes := true
		again, created, err := s.EnsurePool(ctx, strings.ToUpper(assetA), programB, storage.PoolOptions{Unconfirmed: &yes, FromHeight: 1})
		if err != nil || created || again.ID != p.ID || again.Unconfirmed || again.FromHeight != 1234 {
			t.Errorf("EnsurePool of an existing pool with other options = %+v, %v, %v; want it unchanged", again, created, err)
		}
		if got, err := s.GetPool(ctx, p.ID); err != nil || got.Unconfirmed || got.FromHeight != 1234 {
			t.Errorf("stored pool %+v, %v", got, err)
		}
		q, _, err := s.EnsurePool(ctx, assetB, programA, storage.PoolOptions{Unconfirmed: &yes})
		if err != nil || !q.Unconfirmed {
			t.Errorf("EnsurePool(unconfirmed true) = %+v, %v", q, err)
		}
		if _, _, err := s.EnsurePool(ctx, assetB, programB, storage.PoolOptions{FromHeight: -1}); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("EnsurePool(from height -1): err = %v, want ErrInvalidArgument", err)
		}
		if _, err := s.FindPool(ctx, assetB, programB); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("a refused EnsurePool stored the pool: %v", err)
		}
	})
}

// A pool without Unconfirmed takes a pending output only once it is confirmed.
func TestReconcileUnconfirmedOption(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		no := false
		p := mustPool(t, s, assetA, programA, storage.PoolOptions{Unconfirmed: &no})
		q := mustPool(t, s, assetA, programB)
		for _, pool := range []storage.Pool{p, q} {
			seen := chainUTXOs(pool, 1, 0, 3)
			if pool.ID == q.ID {
				seen = chainUTXOs(pool, 2, 0, 3)
			}
			seen[2].Confirmed = false
			res := mustReconcile(t, s, pool, seen)
			want := 3
			if pool.ID == p.ID {
				want = 2
			}
			if len(res.Added) != want {
				t.Errorf("pool unconfirmed=%v: added %d, want %d", pool.Unconfirmed, len(res.Added), want)
			}
			seen[2].Confirmed = true
			res = mustReconcile(t, s, pool, seen)
			if pool.ID == p.ID && (len(res.Added) != 1 || !res.Added[0].Confirmed) {
				t.Errorf("the output confirmed: added %+v", res.Added)
			}
			if c := mustCounts(t, s, pool.ID); c != (storage.Counts{Available: 3}) {
				t.Errorf("pool unconfirmed=%v counts %+v", pool.Unconfirmed, c)
			}
		}
	})
}

// Counts derive Reserved from the live reservations: an available UTXO a
// live, unexpired reservation holds is reserved; a spent one stays spent;
// UTXOs of ended or run-out reservations are available.
func TestPoolCountsDerived(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		q := mustPool(t, s, assetA, programB)
		mustPool(t, s, assetB, programA) // no UTXOs: absent
		mustReconcile(t, s, p, chainUTXOs(p, 1, 0, 6))
		mustReconcile(t, s, q, chainUTXOs(q, 2, 0, 2))
		h := func(i int) string { return hashOf(1, i) }
		imm := output(p, h(10), 7, txOf(1, 10), 5)
		imm.State, imm.ValidHeight = storage.StateImmature, 105
		mustChange(t, s, []storage.IndexedOutput{imm})
		spend(t, s, p.ID, txOf(1, 0), 0, h(4))
		setState(t, s, p.ID, storage.StateInvalidated, h(5))
		later := time.Now().Add(time.Hour)

		mustRecord(t, s, p.ID, 1, storage.ResHeld, later, h(0), h(4))                  // h(0) reserved, h(4) spent
		mustRecord(t, s, p.ID, 2, storage.ResSubmitted, later, h(1))                   // reserved
		mustRecord(t, s, p.ID, 3, storage.ResHeld, later, h(0))                        // h(0) again: counted once
		mustRecord(t, s, p.ID, 4, storage.ResHeld, time.Now().Add(-time.Second), h(2)) // ran out
		mustRecord(t, s, p.ID, 5, storage.ResReleased, later, h(3))                    // ended
		mustRecord(t, s, p.ID, 6, storage.ResSpent, later, h(3))                       // ended
		mustRecord(t, s, q.ID, 1, storage.ResHeld, later, hashOf(2, 0))                // another pool's

		all, err := s.PoolCounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 2 {
			t.Errorf("PoolCounts has %d pools, want the 2 with utxos: %v", len(all), all)
		}
		if c := all[p.ID]; c != (storage.Counts{Available: 2, Reserved: 2, Spent: 1, Invalidated: 1, Immature: 1}) {
			t.Errorf("pool counts %+v", c)
		}
		if c := all[q.ID]; c != (storage.Counts{Available: 1, Reserved: 1}) {
			t.Errorf("other pool's counts %+v", c)
		}
		// The held spent UTXO's reservation is marked expired: nothing changes
		// for h(4), h(0) is still held by the third one.
		if _, err := s.ExpireReservations(ctx, time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := s.UpdateReservation(ctx, idByFence(t, s, p.ID, 1), storage.ReservationUpdate{Fence: 1,
			State: storage.ResReleased}); err != nil {
			t.Fatal(err)
		}
		if c := mustCounts(t, s, p.ID); c != (storage.Counts{Available: 2, Reserved: 2, Spent: 1, Invalidated: 1, Immature: 1}) {
			t.Errorf("pool counts after the first reservation ended: %+v", c)
		}
		if _, err := s.MatureUTXOs(ctx, 105); err != nil {
			t.Fatal(err)
		}
		if c := mustCounts(t, s, p.ID); c != (storage.Counts{Available: 3, Reserved: 2, Spent: 1, Invalidated: 1}) {
			t.Errorf("pool counts after maturity: %+v", c)
		}
	})
}

// ListUTXOs shows an available UTXO held by a live reservation as reserved
// and filters on it.
func TestListUTXOsReserved(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p := mustPool(t, s, assetA, programA)
		mustReconcile(t, s, p, chainUTXOs(p, 1, 0, 30))
		h := func(i int) string { return hashOf(1, i) }
		later := time.Now().Add(time.Hour)
		var held []string
		for i := 0; i < 30; i += 3 {
			held = append(held, h(i))
		}
		mustRecord(t, s, p.ID, 1, storage.ResHeld, later, held[:5]...)
		mustRecord(t, s, p.ID, 2, storage.ResSubmitted, later, held[5:]...)
		mustRecord(t, s, p.ID, 3, storage.ResHeld, time.Now().Add(-time.Second), h(1)) // ran out
		mustRecord(t, s, p.ID, 4, storage.ResReleased, later, h(2))
		mustRecord(t, s, p.ID, 5, storage.ResHeld, later, h(4), h(29)) // h(29) spent below
		spend(t, s, p.ID, txOf(1, 29), 0, h(29))
		held = append(held, h(4))
		slices.Sort(held)

		page := func(state string, limit int) []storage.UTXO {
			t.Helper()
			var out []storage.UTXO
			after := int64(0)
			for {
				us, err := s.ListUTXOs(ctx, p.ID, state, after, limit)
				if err != nil {
					t.Fatal(err)
				}
				if len(us) == 0 {
					return out
				}
				out = append(out, us...)
				after = us[len(us)-1].ID
			}
		}
		reserved := page(storage.StateReserved, 4)
		if got := hashesOfUTXOs(reserved); !slices.Equal(got, held) {
			t.Errorf("reserved = %v, want %v", got, held)
		}
		for _, u := range reserved {
			if u.State != storage.StateReserved || uint64(u.Amount) < 1000 || u.Asset != p.Asset {
				t.Errorf("reserved row %+v", u)
			}
		}
		avail := page(storage.StateAvailable, 7)
		if len(avail) != 30-len(held)-1 {
			t.Errorf("%d available, want %d", len(avail), 30-len(held)-1)
		}
		for _, u := range avail {
			if u.State != storage.StateAvailable || slices.Contains(held, u.Hash) || u.Hash == h(29) {
				t.Errorf("available row %+v", u)
			}
		}
		if spent := page(storage.StateSpent, 0); len(spent) != 1 || spent[0].Hash != h(29) || spent[0].State != storage.StateSpent {
			t.Errorf("spent = %+v: a held spent utxo lists as spent", spent)
		}
		all := listedStates(t, s, p.ID)
		if len(all) != 30 || all[h(0)] != storage.StateReserved || all[h(1)] != storage.StateAvailable ||
			all[h(2)] != storage.StateAvailable || all[h(29)] != storage.StateSpent {
			t.Errorf("all states: %v", all)
		}
		// The stored state is still available.
		if st := statesOf(t, s, h(0)); st[h(0)] != storage.StateAvailable {
			t.Errorf("stored state of a held utxo: %s", st[h(0)])
		}
		if _, err := s.PoolUTXOsByState(ctx, p.ID, storage.StateReserved); !errors.Is(err, storage.ErrInvalidArgument) {
			t.Errorf("PoolUTXOsByState(reserved): err = %v, want ErrInvalidArgument (not a stored state)", err)
		}
	})
}

func hashesOfUTXOs(us []storage.UTXO) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.Hash
	}
	slices.Sort(out)
	return out
}
