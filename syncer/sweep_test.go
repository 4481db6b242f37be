package syncer_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

// poolView is everything the sweep may change about a pool: what Redis
// offers (with amounts), what is free, which reservation holds which UTXO,
// and the chain states and reservation states PostgreSQL has.
type poolView struct {
	offered map[string]uint64
	free    map[string]bool
	holder  map[string]string
	utxos   map[string]string
	res     map[string]string
}

func (f *fixture) view(t *testing.T, pool int64) poolView {
	t.Helper()
	ctx := context.Background()
	v := poolView{free: map[string]bool{}, utxos: map[string]string{}, res: map[string]string{}}
	var err error
	if v.offered, err = f.locks.Offered(ctx, pool); err != nil {
		t.Fatal(err)
	}
	for _, h := range f.reservable(t, pool) {
		v.free[h] = true
	}
	if v.holder, err = f.rdb.HGetAll(ctx, f.poolKey(pool, "holder")).Result(); err != nil {
		t.Fatal(err)
	}
	us, err := f.store.PoolUTXOsByState(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		v.utxos[u.Hash] = u.State + "/" + u.SpentTx
	}
	var rows []storage.Reservation
	if err := f.store.DB().Where("pool_id = ?", pool).Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		v.res[r.ID] = r.State
	}
	return v
}

// poolKey is the Redis key of one part of a pool's state (see the key
// layout in lockmgr/internal/scripts/prelude.lua).
func (f *fixture) poolKey(pool int64, part string) string {
	return f.prefix + "{p" + strconv.FormatInt(pool, 10) + "}:" + part
}

// diffViews lists what changed from a to b, sorted, with hashes and ids cut
// to 8 characters.
func diffViews(a, b poolView) []string {
	var out []string
	short := func(s string) string { return s[:min(8, len(s))] }
	keys := func(x, y map[string]string) []string {
		all := map[string]string{}
		maps.Copy(all, x)
		maps.Copy(all, y)
		return slices.Sorted(maps.Keys(all))
	}
	cmpMaps := func(name string, x, y map[string]string) {
		for _, k := range keys(x, y) {
			xv, xok := x[k]
			yv, yok := y[k]
			switch {
			case xok && !yok:
				out = append(out, fmt.Sprintf("-%s %s=%s", name, short(k), short(xv)))
			case !xok && yok:
				out = append(out, fmt.Sprintf("+%s %s=%s", name, short(k), short(yv)))
			case xv != yv:
				out = append(out, fmt.Sprintf("~%s %s %s->%s", name, short(k), xv, yv))
			}
		}
	}
	str := func(m map[string]uint64) map[string]string {
		o := map[string]string{}
		for k, v := range m {
			o[k] = strconv.FormatUint(v, 10)
		}
		return o
	}
	set := func(m map[string]bool) map[string]string {
		o := map[string]string{}
		for k := range m {
			o[k] = "1"
		}
		return o
	}
	cmpMaps("offered", str(a.offered), str(b.offered))
	cmpMaps("free", set(a.free), set(b.free))
	cmpMaps("holder", a.holder, b.holder)
	cmpMaps("utxo", a.utxos, b.utxos)
	cmpMaps("res", a.res, b.res)
	slices.Sort(out)
	return out
}

// sweepPool is a pool of six UTXOs indexed from the simulated node, with a
// live reservation on the last UTXO and a grant of the fifth that is not
// journalled yet (its reserve is in flight): the sweep must leave both alone.
type sweepPool struct {
	f      *fixture
	sweep  *syncer.Sweep
	pool   storage.Pool
	hashes []string
	live   *lockmgr.Reservation
	young  *lockmgr.Reservation
}

func newSweepPool(t *testing.T, name string) *sweepPool {
	t.Helper()
	ctx := context.Background()
	f := newFixture(t)
	s := newSource(t, f, "bytomd")
	prog := program("sweep " + name)
	hashes, err := f.chain.AddUTXOs(asset, prog, amounts(6))
	if err != nil {
		t.Fatal(err)
	}
	p := s.pool(t, asset, prog)
	live, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: hashes[5:6]})
	if err != nil {
		t.Fatal(err)
	}
	young, err := f.unjournalled().Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: hashes[4:5]})
	if err != nil {
		t.Fatal(err)
	}
	sp := &sweepPool{f: f, sweep: s.runner.Sweeper(), pool: p, hashes: hashes, live: live, young: young}
	// A healthy pool: the sweep finds nothing to do.
	sp.check(t, syncer.SweepResult{})
	return sp
}

// check sweeps the pool and checks what it repaired (res), what changed
// (the want lines of diffViews, hashes and ids cut to 8 characters), and
// that a second sweep finds nothing more; the live reservation and the
// young grant are still live.
func (sp *sweepPool) check(t *testing.T, want syncer.SweepResult, changes ...string) {
	t.Helper()
	ctx := context.Background()
	before := sp.f.view(t, sp.pool.ID)
	res, err := sp.sweep.Pool(ctx, sp.pool.ID)
	if err != nil {
		t.Fatal(err)
	}
	if res != want {
		t.Errorf("sweep repaired %+v, want %+v", res, want)
	}
	slices.Sort(changes)
	if got := diffViews(before, sp.f.view(t, sp.pool.ID)); !slices.Equal(got, changes) {
		t.Errorf("the sweep changed\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(changes, "\n  "))
	}
	before = sp.f.view(t, sp.pool.ID)
	if res, err := sp.sweep.Pool(ctx, sp.pool.ID); err != nil || res != (syncer.SweepResult{}) {
		t.Errorf("a second sweep: %+v %v, want nothing to repair", res, err)
	}
	if got := diffViews(before, sp.f.view(t, sp.pool.ID)); len(got) != 0 {
		t.Errorf("a second sweep changed %v", got)
	}
	for _, r := range []*lockmgr.Reservation{sp.live, sp.young} {
		if _, err := sp.f.locks.Get(ctx, sp.pool.ID, r.ID); err != nil {
			t.Errorf("the sweep ended reservation %s it had no reason to end: %v", r.ID[:8], err)
		}
	}
}

func short(s string) string { return s[:8] }

// A UTXO PostgreSQL says is available but Redis lost from its offer set
// (a write to Redis that failed after the database's commit) is offered
// again.
func TestSweepOffersAUTXORedisLost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sp := newSweepPool(t, "lost offer")
	f, p, h := sp.f, sp.pool, sp.hashes[0]
	if err := f.rdb.HDel(ctx, f.poolKey(p.ID, "utxo"), h).Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.rdb.ZRem(ctx, f.poolKey(p.ID, "free"), fmt.Sprintf("%020d:%s", 1000, h)).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: []string{h}}); !errors.Is(err, lockmgr.ErrUnknownUTXO) {
		t.Fatalf("broken state: reserving the UTXO Redis lost: %v, want ErrUnknownUTXO", err)
	}
	if st := utxoState(t, f, h); st != storage.StateAvailable {
		t.Fatalf("broken state: the database says %s", st)
	}
	sp.check(t, syncer.SweepResult{Offered: 1}, "+offered "+short(h)+"=1000", "+free "+short(h)+"=1")
	if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: []string{h}}); err != nil {
		t.Fatalf("after the sweep: %v", err)
	}
}

// A UTXO Redis offers that PostgreSQL says is spent (Redis missed the
// syncer's removal) is no longer offered.
func TestSweepUnoffersAUTXOTheDatabaseSaysIsSpent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sp := newSweepPool(t, "spent offer")
	f, p, h := sp.f, sp.pool, sp.hashes[1]
	spender := strings.Repeat("5", 64)
	err := f.store.DB().Exec(`UPDATE utxos SET state = ?, spent_tx = ?, spent_height = ? WHERE hash = ?`,
		storage.StateSpent, spender, f.chain.Tip().Height, h).Error
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(f.reservable(t, p.ID), h) {
		t.Fatal("broken state: Redis does not offer the spent UTXO")
	}
	sp.check(t, syncer.SweepResult{Unoffered: 1}, "-offered "+short(h)+"=1001", "-free "+short(h)+"=1")
	if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: []string{h}}); !errors.Is(err, lockmgr.ErrUnknownUTXO) {
		t.Fatalf("after the sweep the spent UTXO: %v, want ErrUnknownUTXO", err)
	}
}

// A hold in Redis whose reservation the journal ended (the release reached
// PostgreSQL, then Redis failed) ends: its UTXOs are offered again. The
// journal's word is final: the hold's age does not matter.
func TestSweepEndsAHoldTheJournalEnded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sp := newSweepPool(t, "ended hold")
	f, p := sp.f, sp.pool
	r, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: sp.hashes[2:4]})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.DB().Exec(`UPDATE reservations SET state = ? WHERE id = ?`, storage.ResReleased, r.ID).Error; err != nil {
		t.Fatal(err)
	}
	if _, err := f.locks.Get(ctx, p.ID, r.ID); err != nil {
		t.Fatalf("broken state: the hold is not in Redis: %v", err)
	}
	if free := f.reservable(t, p.ID); slices.Contains(free, sp.hashes[2]) || slices.Contains(free, sp.hashes[3]) {
		t.Fatal("broken state: the held UTXOs are free")
	}
	h2, h3 := short(sp.hashes[2]), short(sp.hashes[3])
	sp.check(t, syncer.SweepResult{OrphanHolds: 1},
		"-holder "+h2+"="+short(r.ID), "-holder "+h3+"="+short(r.ID), "+free "+h2+"=1", "+free "+h3+"=1")
	if _, err := f.locks.Get(ctx, p.ID, r.ID); !errors.Is(err, lockmgr.ErrNotFound) {
		t.Fatalf("after the sweep the ended reservation: %v, want ErrNotFound", err)
	}
}

// A grant the journal never recorded (its process died between Redis and
// the journal) ends once it is older than ExpiryMargin; one granted less
// than ExpiryMargin ago (the fixture's young grant) may still be journalled
// and survives.
func TestSweepEndsAnOldHoldTheJournalNeverRecorded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sp := newSweepPool(t, "unjournalled hold")
	f, p := sp.f, sp.pool
	r, err := f.unjournalled().Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: sp.hashes[2:3]})
	if err != nil {
		t.Fatal(err)
	}
	// Its grant, as Redis remembers it, is older than the margin.
	created := time.Now().Add(-syncer.ExpiryMargin - time.Second).UnixMilli()
	if err := f.rdb.HSet(ctx, f.poolKey(p.ID, "res:")+r.ID, "created", created).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.GetReservation(ctx, r.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("broken state: the journal has the grant: %v", err)
	}
	if slices.Contains(f.reservable(t, p.ID), sp.hashes[2]) {
		t.Fatal("broken state: the held UTXO is free")
	}
	h2 := short(sp.hashes[2])
	sp.check(t, syncer.SweepResult{OrphanHolds: 1}, "-holder "+h2+"="+short(r.ID), "+free "+h2+"=1")
	if _, err := f.unjournalled().Get(ctx, p.ID, sp.young.ID); err != nil {
		t.Fatalf("the young unjournalled grant did not survive: %v", err)
	}
}

// A live reservation holding a UTXO the chain spent, which Settle missed
// (the syncer applied the spend to Redis and died before settling), is
// settled: spent by that transaction, its other UTXO offered again.
func TestSweepSettlesAReservationSettleMissed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sp := newSweepPool(t, "unsettled")
	f, p := sp.f, sp.pool
	r, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: sp.hashes[2:4]})
	if err != nil {
		t.Fatal(err)
	}
	spender := strings.Repeat("7", 64)
	err = f.store.DB().Exec(`UPDATE utxos SET state = ?, spent_tx = ?, spent_height = ? WHERE hash = ?`,
		storage.StateSpent, spender, f.chain.Tip().Height, sp.hashes[2]).Error
	if err != nil {
		t.Fatal(err)
	}
	if err := f.locks.ApplyChain(ctx, p.ID, nil, sp.hashes[2:3]); err != nil {
		t.Fatal(err)
	}
	if got := f.journal(t, r.ID).State; got != storage.ResHeld {
		t.Fatalf("broken state: the journal says %s", got)
	}
	if _, err := f.locks.Get(ctx, p.ID, r.ID); err != nil {
		t.Fatalf("broken state: the reservation is not live in Redis: %v", err)
	}
	if slices.Contains(f.reservable(t, p.ID), sp.hashes[3]) {
		t.Fatal("broken state: its unspent UTXO is free")
	}
	h2, h3, id := short(sp.hashes[2]), short(sp.hashes[3]), short(r.ID)
	sp.check(t, syncer.SweepResult{Unsettled: 1},
		"~res "+id+" held->spent", "-holder "+h2+"="+id, "-holder "+h3+"="+id, "+free "+h3+"=1")
	if row := f.journal(t, r.ID); row.State != storage.ResSpent || row.TxID != spender {
		t.Fatalf("after the sweep: %s by %q, want spent by %s", row.State, row.TxID, spender[:8])
	}
	if _, err := f.locks.Get(ctx, p.ID, r.ID); !errors.Is(err, lockmgr.ErrNotFound) {
		t.Fatalf("after the sweep the settled reservation: %v, want ErrNotFound", err)
	}
}

// forgottenRelease reserves a UTXO of the pool and releases it through a
// manager whose journal never hears of the release (its API died right after
// answering); it returns the reservation and the release.
func (sp *sweepPool) forgottenRelease(t *testing.T) (r, released *lockmgr.Reservation) {
	t.Helper()
	ctx := context.Background()
	forgetful := sp.f.forgetful(t)
	r, err := forgetful.Reserve(ctx, lockmgr.Request{PoolID: sp.pool.ID, Hashes: sp.hashes[2:3]})
	if err != nil {
		t.Fatal(err)
	}
	if released, err = forgetful.Release(ctx, sp.pool.ID, r.ID); err != nil {
		t.Fatal(err)
	}
	return r, released
}

// A release Redis made whose journal write was lost (the API died right
// after answering) is written to the journal, as of when it happened, once
// it is older than the time the API's own write takes.
func TestSweepWritesALostRelease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sp := newSweepPool(t, "lost release")
	f, p := sp.f, sp.pool
	r, released := sp.forgottenRelease(t)
	// A young release is left to its API.
	if res, err := sp.sweep.Pool(ctx, p.ID); err != nil || res.LostReleases != 0 {
		t.Fatalf("sweep of a young release: %+v, %v", res, err)
	}
	if row, err := f.store.GetReservation(ctx, r.ID); err != nil || row.State != storage.ResHeld {
		t.Fatalf("broken state: the journal has %+v (%v), want held", row, err)
	}
	// Make it old, as the sweep after next finds it.
	member := r.ID + " " + strconv.FormatInt(r.Fence, 10)
	old := float64(released.UpdatedAt.Add(-10 * time.Second).UnixMilli())
	if err := f.rdb.ZAdd(ctx, f.poolKey(p.ID, "releases"), redis.Z{Score: old, Member: member}).Err(); err != nil {
		t.Fatal(err)
	}
	sp.check(t, syncer.SweepResult{LostReleases: 1}, "~res "+short(r.ID)+" held->released")
	row, err := f.store.GetReservation(ctx, r.ID)
	if err != nil || !row.UpdatedAt.Equal(time.UnixMilli(int64(old)).UTC()) {
		t.Fatalf("journal after the sweep: %+v (%v), want released at the release", row, err)
	}
}

// A busy pool records thousands of releases between two sweeps. The sweep
// reads, writes and forgets them a page at a time: one call that read them
// all, and one that forgot them all, held Redis for 35-38 ms each in a bench
// run (50,000 releases), while every other client waited.
func TestSweepTakesManyReleasesInShortCalls(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sp := newSweepPool(t, "many releases")
	f, p := sp.f, sp.pool
	r, released := sp.forgottenRelease(t)
	// Old enough for the sweep, with 3,000 releases of reservations the
	// journal already ended or never had.
	old := float64(released.UpdatedAt.Add(-10 * time.Second).UnixMilli())
	zs := []redis.Z{{Score: old, Member: r.ID + " " + strconv.FormatInt(r.Fence, 10)}}
	for i := range 3000 {
		zs = append(zs, redis.Z{Score: old - float64(i), Member: fmt.Sprintf("gone%d 1", i)})
	}
	releases := f.poolKey(p.ID, "releases")
	if err := f.rdb.ZAdd(ctx, releases, zs...).Err(); err != nil {
		t.Fatal(err)
	}
	sizes := &testenv.CallSizes{}
	f.rdb.AddHook(sizes)
	var res syncer.SweepResult
	largest, name := sizes.Measure(func() {
		var err error
		if res, err = sp.sweep.Pool(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
	})
	if largest > 2500 {
		t.Errorf("the sweep made a call (%s) of %d elements; want at most 2500", name, largest)
	}
	if res.LostReleases != 1 {
		t.Errorf("sweep wrote %d lost releases, want 1", res.LostReleases)
	}
	if n, err := f.rdb.ZCard(ctx, releases).Result(); err != nil || n != 0 {
		t.Errorf("the sweep left %d recorded releases (%v), want none", n, err)
	}
	if row, err := f.store.GetReservation(ctx, r.ID); err != nil || row.State != storage.ResReleased {
		t.Fatalf("journal after the sweep: %+v (%v), want released", row, err)
	}
}
