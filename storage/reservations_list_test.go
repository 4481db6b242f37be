package storage_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/bufferd/bufferd/storage"
)

// TestListReservations pages through the journal with every filter on both
// dialects: each page continues where the last one stopped, a held row past
// its expiry counts as expired, and the live summary and the grant history
// count what was recorded.
func TestListReservations(t *testing.T) {
	t.Parallel()
	eachDialect(t, func(t *testing.T, s *storage.Store) {
		ctx := testCtx(t)
		p1 := mustPool(t, s, assetA, programA)
		p2 := mustPool(t, s, assetA, programA+"00")
		u1, u2 := chainUTXOs(p1, 1, 0, 10), chainUTXOs(p2, 2, 0, 10)
		mustReconcile(t, s, p1, u1)
		mustReconcile(t, s, p2, u2)

		now := time.Now().UTC().Truncate(time.Second)
		type row struct {
			pool           storage.Pool
			hash, state    string
			owner          string
			created, until time.Duration // from now
		}
		rows := []row{
			{p1, u1[0].Hash, storage.ResHeld, "alice", -3 * time.Minute, time.Minute},
			{p1, u1[1].Hash, storage.ResHeld, "bob", -2 * time.Minute, -time.Second}, // past its expiry
			{p1, u1[2].Hash, storage.ResReleased, "alice", -90 * time.Second, time.Minute},
			{p1, u1[3].Hash, storage.ResSubmitted, "alice", -time.Minute, time.Minute},
			{p2, u2[0].Hash, storage.ResHeld, "alice", -30 * time.Second, time.Minute},
			{p2, u2[1].Hash, storage.ResSpent, "carol", -2 * time.Hour, -time.Hour},
		}
		ids := make([]string, len(rows))
		for i, r := range rows {
			ids[i] = fmt.Sprintf("%032x", i+1)
			if err := s.RecordReservation(ctx, storage.Reservation{ID: ids[i], PoolID: r.pool.ID, Fence: int64(i + 1),
				Owner: r.owner, Hashes: r.hash, State: r.state, CreatedAt: now.Add(r.created), ExpiresAt: now.Add(r.until)}); err != nil {
				t.Fatal(err)
			}
		}
		list := func(f storage.ReservationFilter, limit int) []string {
			t.Helper()
			var out []string
			var after storage.ReservationKey
			for page := 0; ; page++ {
				got, err := s.ListReservations(ctx, f, after, limit)
				if err != nil {
					t.Fatalf("ListReservations(%+v): %v", f, err)
				}
				for _, r := range got {
					out = append(out, r.ID)
				}
				if len(got) < limit || page > 10 {
					return out
				}
				after = storage.ReservationKey{PoolID: got[len(got)-1].PoolID, Fence: got[len(got)-1].Fence}
			}
		}
		for _, c := range []struct {
			f    storage.ReservationFilter
			want []int // indexes into rows, in listing order
		}{
			{storage.ReservationFilter{}, []int{5, 4, 3, 2, 1, 0}},
			{storage.ReservationFilter{PoolID: p1.ID}, []int{3, 2, 1, 0}},
			{storage.ReservationFilter{State: storage.ResLive}, []int{4, 3, 0}},
			{storage.ReservationFilter{State: storage.ResHeld}, []int{4, 0}},
			{storage.ReservationFilter{State: storage.ResExpired}, []int{1}},
			{storage.ReservationFilter{State: storage.ResSpent}, []int{5}},
			{storage.ReservationFilter{PoolID: p1.ID, Owner: "alice"}, []int{3, 2, 0}},
			{storage.ReservationFilter{Owner: "nobody"}, nil},
		} {
			var want []string
			for _, i := range c.want {
				want = append(want, ids[i])
			}
			for _, limit := range []int{1, 2, 100} {
				if got := list(c.f, limit); !slices.Equal(got, want) {
					t.Errorf("filter %+v, pages of %d: %v, want %v", c.f, limit, got, want)
				}
			}
		}
		if _, err := s.ListReservations(ctx, storage.ReservationFilter{State: "lost"}, storage.ReservationKey{}, 10); err == nil {
			t.Error("an unknown state was accepted")
		}

		counts, live, err := s.LiveReservations(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		if counts[p1.ID] != 2 || counts[p2.ID] != 1 || len(live) != 2 || live[0].ID != ids[0] || live[1].ID != ids[3] {
			t.Errorf("live reservations: %v %+v", counts, live)
		}

		hist, err := s.GrantHistory(ctx, now.Add(time.Second), time.Minute, 5)
		if err != nil {
			t.Fatal(err)
		}
		// Minutes ending at now+1s: created at -3m; -2m; -90s and -1m (p1); -30s (p2).
		if !slices.Equal(hist[p1.ID], []int64{0, 1, 1, 2, 0}) || !slices.Equal(hist[p2.ID], []int64{0, 0, 0, 0, 1}) {
			t.Errorf("grant history: %v", hist)
		}
	})
}
