package syncer_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

// gold is an issued asset: a transaction that fails moves none of it.
var gold = strings.Repeat("9", 64)

// contract is a non-P2W program (OP_TRUE OP_TRUE), the kind a DApp locks its
// state in: the node's wallet lists its outputs only with smart_contract.
const contract = "5151"

// source runs the sync jobs over one kind of chain source: a node the
// syncer indexes (bytomd) or a server listing UTXOs (blockcenter).
type source struct {
	name   string
	runner *syncer.Runner
	f      *fixture
}

func newSource(t *testing.T, f *fixture, kind string) *source {
	t.Helper()
	return newSourceAt(t, f, kind, f.url)
}

// newSourceAt is newSource with the chain served at url.
func newSourceAt(t *testing.T, f *fixture, kind, url string) *source {
	t.Helper()
	var src chain.Source = chain.NewBlockcenter(url, chain.WithPageSize(1000))
	if kind == "bytomd" {
		src = chain.NewBytomd(url)
	}
	r := syncer.Jobs{Store: f.store, Locks: f.locks, Chain: src,
		Rebuild:  syncer.NewRebuilder(f.store, f.locks, f.rdb, f.prefix, nil),
		Interval: time.Hour, MaxBackoff: time.Hour, StartDepth: 10_000}.ForTerm(0)
	return &source{name: kind, runner: r, f: f}
}

// sync brings the pools in step with the chain: one pass of the index, or
// one tick of the UTXO sync.
func (s *source) sync(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	if s.runner.ChainIndex() != nil {
		if _, err := s.runner.ChainIndex().Pass(ctx); err != nil {
			t.Fatalf("index pass: %v", err)
		}
		return
	}
	if err := s.runner.Tick(ctx); err != nil {
		t.Fatalf("tick: %v", err)
	}
}

// eachSource runs fn against a fresh fixture for each kind of source.
func eachSource(t *testing.T, fn func(t *testing.T, s *source)) {
	for _, kind := range []string{"bytomd", "blockcenter"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			fn(t, newSource(t, f, kind))
		})
	}
}

// reservable is what a client can reserve in the pool right now.
func (f *fixture) reservable(t *testing.T, pool int64) []string {
	t.Helper()
	items, err := f.locks.ListAvailable(context.Background(), pool, false, 0, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.Hash
	}
	slices.Sort(out)
	return out
}

// counts are the pool's counts in PostgreSQL.
func (f *fixture) counts(t *testing.T, pool int64) storage.Counts {
	t.Helper()
	c, err := f.store.PoolCounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c[pool]
}

// journal returns a reservation as the journal has it.
func (f *fixture) journal(t *testing.T, id string) storage.Reservation {
	t.Helper()
	r, err := f.store.GetReservation(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// checkNoneLost checks invariant 7 at a quiet point: the pool's UTXOs the
// chain has (unspent, mature, not spent by a pending transaction) are each
// held by one live reservation or reservable, nothing else is, and the
// PostgreSQL counts say so.
func (f *fixture) checkNoneLost(t *testing.T, pool storage.Pool, holds map[string]string) {
	t.Helper()
	tip := f.chain.Tip().Height
	want := map[string]bool{}
	for _, u := range f.chain.UTXOs(pool.Asset, pool.Program, true) {
		blk := uint64(0)
		if tx, err := f.chain.Tx(u.TxID); err == nil && tx.Coinbase() {
			blk = tx.Height
		}
		if blk > 0 && tip < blk+chain.CoinbaseMaturity {
			continue // immature
		}
		if !pool.Unconfirmed && !u.Confirmed {
			continue
		}
		want[u.Hash] = true
	}
	free := f.reservable(t, pool.ID)
	got := map[string]bool{}
	for _, h := range free {
		got[h] = true
	}
	for h := range holds {
		if got[h] {
			t.Errorf("%s is held and reservable", h[:8])
		}
		got[h] = true
	}
	for h := range want {
		if !got[h] {
			t.Errorf("lost: %s is unspent on chain but neither held nor reservable", h[:8])
		}
	}
	for h := range got {
		if !want[h] {
			t.Errorf("%s is held or reservable but the chain does not offer it", h[:8])
		}
	}
	c := f.counts(t, pool.ID)
	if c.Available != int64(len(free)) || c.Available+c.Reserved != int64(len(want)) {
		t.Errorf("counts %+v, but %d reservable of %d on chain", c, len(free), len(want))
	}
}

// liveHolds are the UTXOs each live reservation of the pool holds.
func (f *fixture) liveHolds(t *testing.T, pool int64) map[string]string {
	t.Helper()
	ids, err := f.store.LiveReservationIDs(context.Background(), pool, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for id := range ids {
		for _, h := range storage.SplitHashes(f.journal(t, id).Hashes) {
			if prev, ok := out[h]; ok {
				t.Errorf("%s held by %s and %s", h[:8], prev, id)
			}
			out[h] = id
		}
	}
	return out
}

func (s *source) pool(t *testing.T, asset, prog string, opts ...storage.PoolOptions) storage.Pool {
	t.Helper()
	from := int64(1)
	if len(opts) > 0 {
		from = opts[0].FromHeight
	}
	o := storage.PoolOptions{FromHeight: from}
	if len(opts) > 0 {
		o.Unconfirmed = opts[0].Unconfirmed
	}
	p, _, err := s.f.store.EnsurePool(context.Background(), asset, prog, o)
	if err != nil {
		t.Fatal(err)
	}
	s.sync(t)
	p, err = s.f.store.GetPool(context.Background(), p.ID)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Case 1 of issue 13: a reservation's other UTXOs come back when one of its
// UTXOs leaves the chain, whether somebody else spends it, a reorganisation
// removes it, or the transaction that created it fails.
func TestOtherUTXOsComeBackWhenOneLeavesTheChain(t *testing.T) {
	t.Parallel()
	eachSource(t, func(t *testing.T, s *source) {
		ctx := context.Background()
		f := s.f
		for _, how := range []string{"foreign spend", "reorg", "failed creator"} {
			prog := program(s.name + how)
			asset := asset
			if how == "failed creator" {
				asset = gold
				prog = contract + strings.Repeat("51", len(how))
			}
			hashes, err := f.chain.AddUTXOs(asset, prog, []uint64{10, 20, 30, 40})
			if err != nil {
				t.Fatal(err)
			}
			var gone string
			switch how {
			case "reorg":
				// One more UTXO, alone in the last block.
				extra, err := f.chain.AddUTXOs(asset, prog, []uint64{5})
				if err != nil {
					t.Fatal(err)
				}
				gone = extra[0]
			case "failed creator":
				// A pending transaction that will fail creates one more.
				_, outs, err := f.chain.Spend([]string{hashes[3]}, []sim.Output{{Asset: asset, Program: prog, Amount: 5}}, true)
				if err != nil {
					t.Fatal(err)
				}
				gone = outs[0]
			}
			p := s.pool(t, asset, prog)
			hold := []string{hashes[0], hashes[1]}
			if gone != "" {
				hold = append(hold, gone)
			} else {
				hold = append(hold, hashes[2])
				gone = hashes[2]
			}
			r, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: hold, TTL: time.Minute})
			if err != nil {
				t.Fatalf("%s: %v", how, err)
			}
			switch how {
			case "foreign spend":
				if _, _, err := f.chain.Spend([]string{gone}, []sim.Output{{Asset: asset, Program: program("elsewhere"), Amount: 30}}, false); err != nil {
					t.Fatal(err)
				}
				if _, err := f.chain.Mine(1); err != nil {
					t.Fatal(err)
				}
			case "reorg":
				if _, err := f.chain.Reorg(1, true); err != nil {
					t.Fatal(err)
				}
			case "failed creator":
				if _, err := f.chain.Mine(1); err != nil {
					t.Fatal(err)
				}
			}
			s.sync(t)
			free := f.reservable(t, p.ID)
			for _, h := range hold[:2] {
				if !slices.Contains(free, h) {
					t.Errorf("%s: %s of the ended reservation is not reservable again: %v", how, h[:8], free)
				}
			}
			if slices.Contains(free, gone) {
				t.Errorf("%s: the UTXO that left the chain is reservable", how)
			}
			want := lockmgr.StateSpent
			if how != "foreign spend" {
				want = lockmgr.StateInvalidated
			}
			got := f.journal(t, r.ID).State
			// A listing does not tell which transaction created a UTXO: one
			// that left it is settled spent unless a reservation followed
			// its creator.
			if got != want && !(s.name == "blockcenter" && got == lockmgr.StateSpent) {
				t.Errorf("%s: reservation is %s, want %s", how, got, want)
			}
			if _, err := f.locks.Get(ctx, p.ID, r.ID); !errors.Is(err, lockmgr.ErrNotFound) {
				t.Errorf("%s: ended reservation still live in Redis: %v", how, err)
			}
			f.checkNoneLost(t, p, f.liveHolds(t, p.ID))
		}
	})
}

// Case 2: a reservation that ran out before its UTXO was spent ends expired,
// not spent, and its other UTXOs are not counted reserved.
func TestExpiredReservationIsNotSettledSpent(t *testing.T) {
	t.Parallel()
	eachSource(t, func(t *testing.T, s *source) {
		ctx := context.Background()
		f := s.f
		prog := program("expired " + s.name)
		hashes, err := f.chain.AddUTXOs(asset, prog, []uint64{10, 20, 30})
		if err != nil {
			t.Fatal(err)
		}
		p := s.pool(t, asset, prog)
		r, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: hashes[:2], TTL: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "the reservation to run out", func() bool { return time.Now().After(r.ExpiresAt) })
		if _, _, err := f.chain.Spend(hashes[:1], []sim.Output{{Asset: asset, Program: program("elsewhere"), Amount: 10}}, false); err != nil {
			t.Fatal(err)
		}
		if _, err := f.chain.Mine(1); err != nil {
			t.Fatal(err)
		}
		s.sync(t)
		row := f.journal(t, r.ID)
		if row.State != lockmgr.StateExpired || row.TxID != "" {
			t.Fatalf("reservation is %s with tx %q, want expired", row.State, row.TxID)
		}
		if c := f.counts(t, p.ID); c.Reserved != 0 || c.Available != 2 || c.Spent != 1 {
			t.Fatalf("counts %+v, want 2 available, 1 spent, none reserved", c)
		}
		f.checkNoneLost(t, p, f.liveHolds(t, p.ID))
	})
}

// Case 4: when a transaction fails, a reservation that spent one of its
// outputs (a child spend) is invalidated, not left spent, and so on down the
// lineage; the reservation of the failed transaction gets its UTXO back.
func TestChildOfAFailedTransactionIsInvalidated(t *testing.T) {
	t.Parallel()
	eachSource(t, func(t *testing.T, s *source) {
		ctx := context.Background()
		f := s.f
		prog := contract + "5151"
		hashes, err := f.chain.AddUTXOs(gold, prog, []uint64{100, 200})
		if err != nil {
			t.Fatal(err)
		}
		p := s.pool(t, gold, prog)
		r1, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: hashes[:1]})
		if err != nil {
			t.Fatal(err)
		}
		// The parent will fail once mined; its change goes back into the pool.
		parent, change, err := f.chain.Spend(hashes[:1], []sim.Output{{Asset: gold, Program: prog, Amount: 99}}, true)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.locks.Submit(ctx, p.ID, r1.ID, parent); err != nil {
			t.Fatal(err)
		}
		s.sync(t)
		if got := f.journal(t, r1.ID).State; got != lockmgr.StateSpent {
			t.Fatalf("parent's reservation is %s after its spend was seen, want spent", got)
		}
		// A second user takes the change before the parent is mined and spends it.
		r2, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: change})
		if err != nil {
			t.Fatalf("reserve the unconfirmed change: %v", err)
		}
		child, _, err := f.chain.Spend(change, []sim.Output{{Asset: gold, Program: prog, Amount: 98}}, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.locks.Submit(ctx, p.ID, r2.ID, child); err != nil {
			t.Fatal(err)
		}
		s.sync(t)
		if got := f.journal(t, r2.ID).State; got != lockmgr.StateSpent {
			t.Fatalf("child's reservation is %s after its spend was seen, want spent", got)
		}
		// The parent is mined and fails: the child can never be mined.
		if _, err := f.chain.Mine(1); err != nil {
			t.Fatal(err)
		}
		s.sync(t)
		s.sync(t)
		if got := f.journal(t, r2.ID).State; got != lockmgr.StateInvalidated {
			t.Errorf("child's reservation is %s, want invalidated", got)
		}
		if got := f.journal(t, r1.ID).State; got != lockmgr.StateReleased {
			t.Errorf("failed parent's reservation is %s, want released (its UTXO is back)", got)
		}
		if free := f.reservable(t, p.ID); !slices.Contains(free, hashes[0]) || slices.Contains(free, change[0]) {
			t.Errorf("reservable %v: want the parent's input back and its change gone", free)
		}
		f.checkNoneLost(t, p, f.liveHolds(t, p.ID))
	})
}

// Case 3: a submitted reservation is not released (its transaction may be
// mined), so its UTXOs are never offered to somebody else meanwhile.
func TestSubmittedReservationIsNotReleased(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	s := newSource(t, f, "bytomd")
	prog := program("submitted")
	hashes, err := f.chain.AddUTXOs(asset, prog, []uint64{10, 20})
	if err != nil {
		t.Fatal(err)
	}
	p := s.pool(t, asset, prog)
	r, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: hashes[:1]})
	if err != nil {
		t.Fatal(err)
	}
	tx, _, err := f.chain.Spend(hashes[:1], []sim.Output{{Asset: asset, Program: prog, Amount: 9}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.locks.Submit(ctx, p.ID, r.ID, tx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.locks.Release(ctx, p.ID, r.ID); !errors.Is(err, lockmgr.ErrNotHeld) {
		t.Fatalf("release of a submitted reservation: %v, want ErrNotHeld", err)
	}
	if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: hashes[:1]}); !errors.Is(err, lockmgr.ErrLocked) {
		t.Fatalf("its UTXO was offered again: %v", err)
	}
	if got := f.journal(t, r.ID).State; got != lockmgr.StateSubmitted {
		t.Fatalf("journal says %s, want submitted", got)
	}
}

// Issue 12: a BTM pool on a P2WPKH program (the miner's) and an issued-asset
// pool on a contract program list exactly the node's unspent outputs,
// without the node's wallet; coinbase outputs are reservable only once
// mature; amounts above 2^53 are exact end to end.
func TestIndexSeesEveryProgramAndWaitsForMaturity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	s := newSource(t, f, "bytomd")
	if _, err := f.chain.Mine(104); err != nil { // tip 104: coinbases of heights 1-4 are mature
		t.Fatal(err)
	}
	big := []uint64{1<<53 + 1, 1<<53 + 2, math.MaxUint64}
	if _, err := f.chain.AddUTXOs(gold, contract, big); err != nil { // tip 105
		t.Fatal(err)
	}
	btm := s.pool(t, chain.BTMAsset, sim.MinerProgram)
	g := s.pool(t, gold, contract)
	c := f.counts(t, btm.ID)
	if c.Available != 5 || c.Immature != 100 {
		t.Fatalf("miner pool counts %+v at tip %d: want 5 mature coinbase outputs (heights 1-5) and 100 immature",
			c, f.chain.Tip().Height)
	}
	f.checkNoneLost(t, btm, nil)
	if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: btm.ID, Count: 6}); !errors.Is(err, lockmgr.ErrNoUTXOAvailable) {
		t.Fatalf("reserved more than the mature outputs: %v", err)
	}
	// One more block matures one more coinbase.
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	s.sync(t)
	if c := f.counts(t, btm.ID); c.Available != 6 || c.Immature != 100 {
		t.Fatalf("after one more block: %+v, want 6 available and 100 immature", c)
	}
	f.checkNoneLost(t, btm, nil)
	// The contract pool's amounts, exactly.
	f.checkNoneLost(t, g, nil)
	r, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: g.ID, Amount: 1<<53 + 2})
	if err != nil || r.Items[0].Amount != 1<<53+2 {
		t.Fatalf("reserve 2^53+2: %+v %v", r, err)
	}
	rows, err := f.store.ListUTXOs(ctx, g.ID, "", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, u := range rows {
		got = append(got, uint64(u.Amount))
		if !u.Confirmed || u.Height != 105 {
			t.Errorf("%s: confirmed %v at height %d, want confirmed at 105", u.Hash[:8], u.Confirmed, u.Height)
		}
	}
	if !slices.Equal(got, big) {
		t.Fatalf("stored amounts %v, want %v", got, big)
	}
}

// Issue 12: an output a pending transaction spends is withheld within one
// pass, and comes back when that spend vanishes; outputs of pending
// transactions are offered unconfirmed only where the pool takes them.
func TestIndexOverlaysTheMempool(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	s := newSource(t, f, "bytomd")
	prog := program("mempool")
	hashes, err := f.chain.AddUTXOs(asset, prog, []uint64{10, 20, 30})
	if err != nil {
		t.Fatal(err)
	}
	p := s.pool(t, asset, prog)
	strict := s.pool(t, asset, program("strict"), storage.PoolOptions{FromHeight: 1, Unconfirmed: new(bool)})

	tx, outs, err := f.chain.Spend(hashes[:1], []sim.Output{{Asset: asset, Program: prog, Amount: 9},
		{Asset: asset, Program: strict.Program, Amount: 8}}, false)
	if err != nil {
		t.Fatal(err)
	}
	s.sync(t)
	free := f.reservable(t, p.ID)
	if slices.Contains(free, hashes[0]) {
		t.Fatal("a UTXO spent in the mempool is still offered")
	}
	if !slices.Contains(free, outs[0]) {
		t.Fatal("the pending change is not offered in a pool that takes unconfirmed outputs")
	}
	if slices.Contains(f.reservable(t, strict.ID), outs[1]) {
		t.Fatal("a pending output is offered in a pool that waits for blocks")
	}
	f.checkNoneLost(t, p, nil)
	// The spend vanishes from the mempool: the UTXO comes back, its change goes.
	if err := f.chain.Drop(tx); err != nil {
		t.Fatal(err)
	}
	s.sync(t)
	free = f.reservable(t, p.ID)
	if !slices.Contains(free, hashes[0]) || slices.Contains(free, outs[0]) {
		t.Fatalf("after the spend was dropped: %v", free)
	}
	f.checkNoneLost(t, p, nil)
	// Two pending spends of one UTXO: withheld; the block keeps one.
	if _, _, err := f.chain.Spend(hashes[1:2], []sim.Output{{Asset: asset, Program: program("a"), Amount: 20}}, false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.chain.Spend(hashes[1:2], []sim.Output{{Asset: asset, Program: program("b"), Amount: 20}}, false); err != nil {
		t.Fatal(err)
	}
	s.sync(t)
	if slices.Contains(f.reservable(t, p.ID), hashes[1]) {
		t.Fatal("a UTXO two pending transactions spend is offered")
	}
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	s.sync(t)
	rows, err := f.store.GetUTXOs(ctx, hashes[1:2])
	if err != nil || len(rows) != 1 || rows[0].State != storage.StateSpent || rows[0].SpentHeight == 0 {
		t.Fatalf("after the block: %+v %v", rows, err)
	}
	f.checkNoneLost(t, p, nil)
	f.checkNoneLost(t, strict, nil)
}

// Issue 12: a reorganisation restores what it should: spends of the
// abandoned blocks undone, outputs they created gone unless the new branch
// has them.
func TestIndexFollowsReorganisations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	s := newSource(t, f, "bytomd")
	prog := program("reorg")
	hashes, err := f.chain.AddUTXOs(asset, prog, []uint64{10, 20, 30})
	if err != nil {
		t.Fatal(err)
	}
	p := s.pool(t, asset, prog)
	if _, _, err := f.chain.Spend(hashes[:1], []sim.Output{{Asset: asset, Program: program("x"), Amount: 10}}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.chain.Mine(2); err != nil {
		t.Fatal(err)
	}
	s.sync(t)
	f.checkNoneLost(t, p, nil)
	// The blocks of the spend are abandoned and the spend forgotten.
	if _, err := f.chain.Reorg(2, true); err != nil {
		t.Fatal(err)
	}
	s.sync(t)
	if !slices.Contains(f.reservable(t, p.ID), hashes[0]) {
		t.Fatal("a spend the reorganisation undid still withholds its UTXO")
	}
	f.checkNoneLost(t, p, nil)
	// A reorganisation that keeps the transactions changes nothing in the end.
	if _, _, err := f.chain.Spend(hashes[1:2], []sim.Output{{Asset: asset, Program: prog, Amount: 19}}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	s.sync(t)
	if _, err := f.chain.Reorg(1, false); err != nil {
		t.Fatal(err)
	}
	s.sync(t)
	f.checkNoneLost(t, p, nil)
	n, err := f.store.ListTransactions(ctx, p.ID, "", 0, 10)
	if err != nil || len(n) != 1 {
		t.Fatalf("history after the reorganisations: %d transactions (%v), want the one kept", len(n), err)
	}
}

// Issue 12: backfill from a pool's from_height; a pool is offered only once
// its index reached the tip, and a restart resumes from the stored cursor.
func TestIndexBackfillsAndResumes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	prog := program("backfill")
	old, err := f.chain.AddUTXOs(asset, prog, []uint64{1, 2}) // height 1
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.chain.Mine(250); err != nil {
		t.Fatal(err)
	}
	p, _, err := f.store.EnsurePool(ctx, asset, prog, storage.PoolOptions{FromHeight: 1})
	if err != nil {
		t.Fatal(err)
	}
	s := newSource(t, f, "bytomd")
	s.runner.ChainIndex().Batch = 100
	if _, err := s.runner.ChainIndex().Pass(ctx); err != nil {
		t.Fatal(err)
	}
	cur, err := f.store.IndexCursors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cur[p.ID].Height < 1 {
		t.Fatalf("cursor %d after a pass", cur[p.ID].Height)
	}
	// A restart (a new runner) resumes from the cursor, not from scratch.
	s2 := newSource(t, f, "bytomd")
	for i := 0; i < 10; i++ {
		if _, err := s2.runner.ChainIndex().Pass(ctx); err != nil {
			t.Fatal(err)
		}
	}
	got, err := f.store.GetPool(ctx, p.ID)
	if err != nil || got.SyncedAt == nil {
		t.Fatalf("pool not synced after catching up: %+v %v", got, err)
	}
	f.checkNoneLost(t, got, nil)
	if free := f.reservable(t, p.ID); !slices.Equal(free, sorted(old)) {
		t.Fatalf("reservable %v, want %v", free, sorted(old))
	}
}

func sorted(xs []string) []string {
	out := slices.Clone(xs)
	slices.Sort(out)
	return out
}

// Issue 12: a node on another chain (another genesis block) stops the index
// with a clear error, and changes nothing.
func TestIndexRefusesANodeOnAnotherChain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	s := newSource(t, f, "bytomd")
	s.pool(t, asset, program("other chain"))
	other := sim.NewNetwork("another")
	if _, err := other.Mine(3); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := other.Handler()
	go func() { _ = app.Listener(ln) }()
	t.Cleanup(func() { _ = app.Shutdown(); _ = ln.Close() })
	_, err = newSourceAt(t, f, "bytomd", "http://"+ln.Addr().String()).runner.ChainIndex().Pass(ctx)
	if !errors.Is(err, syncer.ErrOtherChain) {
		t.Fatalf("pass against another chain: %v, want ErrOtherChain", err)
	}
	genesis, _ := f.store.Genesis(ctx)
	if blk, _ := f.chain.Block(0); genesis != blk.Hash {
		t.Fatalf("the index's genesis changed to %s", genesis)
	}
}

// waitFor waits up to d for cond to hold.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, d, func() error {
		if !cond() {
			return fmt.Errorf("waiting for %s", what)
		}
		return nil
	})
}

// A pool still backfilling meets blocks a pool ahead of it indexed on a
// branch the chain abandoned since: the index rolls the pool ahead back
// before the one behind writes the new branch, so both reach the tip (the
// pool ahead used to stay stuck at the fork, its cursor on the old branch).
func TestIndexPoolsAtDifferentHeightsSurviveAReorg(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	s := newSource(t, f, "bytomd")
	ahead, behind := program("ahead"), program("behind")
	held, err := f.chain.AddUTXOs(asset, ahead, []uint64{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.chain.AddUTXOs(asset, behind, []uint64{3, 4}); err != nil {
		t.Fatal(err)
	}
	pa := s.pool(t, asset, ahead)
	if _, err := f.chain.Mine(18); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.chain.Spend(held[:1], []sim.Output{{Asset: asset, Program: program("payee"), Amount: 1}}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.chain.Mine(2); err != nil {
		t.Fatal(err)
	}
	s.catchUp(t)
	// The chain abandons the blocks of that spend (the spend with them),
	// then a pool that starts lower joins.
	if _, err := f.chain.Reorg(3, true); err != nil {
		t.Fatal(err)
	}
	pb, _, err := f.store.EnsurePool(context.Background(), asset, behind, storage.PoolOptions{FromHeight: 1})
	if err != nil {
		t.Fatal(err)
	}
	s.catchUp(t)
	for _, p := range []storage.Pool{pa, pb} {
		p, err := f.store.GetPool(context.Background(), p.ID)
		if err != nil {
			t.Fatal(err)
		}
		f.checkNoneLost(t, p, nil)
	}
}
