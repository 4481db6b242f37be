package syncer_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

// indexRunner is a runner indexing f's chain through a proxy (to cut the
// node off or slow it down), polling every poll.
func indexRunner(t *testing.T, f *fixture, poll time.Duration) (*syncer.Runner, *testenv.Proxy) {
	t.Helper()
	proxy := testenv.StartProxy(t, strings.TrimPrefix(f.url, "http://"))
	r := syncer.Jobs{Store: f.store, Locks: f.locks, Chain: chain.NewBytomd("http://" + proxy.Addr()),
		Rebuild:  syncer.NewRebuilder(f.store, f.locks, f.rdb, f.prefix, nil),
		Interval: time.Hour, MaxBackoff: 4 * poll, IndexPoll: poll}.ForTerm(0)
	return r, proxy
}

// waitLoaded waits until the runner offers the pool.
func waitLoaded(t *testing.T, f *fixture, pool int64) {
	t.Helper()
	waitFor(t, 10*time.Second, "the pool to be loaded", func() bool {
		ok, err := f.locks.Loaded(context.Background(), pool)
		return err == nil && ok
	})
}

// Run with a chain index returns within a second of its context's end,
// whether the index is waiting for its next poll or in the middle of a pass
// over a slow node.
func TestRunWithAnIndexStopsWhenItsContextEnds(t *testing.T) {
	for _, when := range []string{"between passes", "during a pass"} {
		t.Run(when, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := newFixture(t)
			prog := program("stop " + when)
			if _, err := f.chain.AddUTXOs(asset, prog, amounts(2)); err != nil {
				t.Fatal(err)
			}
			p, _, err := f.store.EnsurePool(ctx, asset, prog, storage.PoolOptions{FromHeight: 1})
			if err != nil {
				t.Fatal(err)
			}
			poll := time.Minute
			if when == "during a pass" {
				poll = 10 * time.Millisecond
			}
			r, proxy := indexRunner(t, f, poll)
			stop, done := run(t, r)
			waitLoaded(t, f, p.ID)
			if when == "during a pass" {
				// Every call to the node now takes more than half a second.
				if _, err := f.chain.Mine(5); err != nil {
					t.Fatal(err)
				}
				proxy.SetLatency(300 * time.Millisecond)
				// Lets the slowed calls of a pass get under way: nothing
				// signals a pass in flight.
				time.Sleep(400 * time.Millisecond)
			}
			select {
			case <-done:
				t.Fatal("Run returned before its context ended")
			default:
			}
			stopped := make(chan error, 1)
			go func() { stopped <- stop() }()
			select {
			case err := <-stopped:
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
			case <-time.After(10 * time.Second): // far below the poll and the slowed pass's length
				t.Fatal("Run did not return when its context ended")
			}
			if when == "during a pass" {
				// The pass was abandoned, not finished.
				cur, err := f.store.Cursor(ctx, 0, syncer.JobChain)
				if err != nil || cur.Height >= int64(f.chain.Tip().Height) {
					t.Fatalf("the chain cursor %+v, %v reached the tip %d: the pass ran to its end", cur, err, f.chain.Tip().Height)
				}
			}
		})
	}
}

// A node that does not answer makes ChainError non-empty (readiness fails)
// and the chain cursor show the error, without stopping Run; when it
// answers again the index catches up and the error clears.
func TestRunnerSurvivesAnUnreachableNode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	prog := program("unreachable")
	hashes, err := f.chain.AddUTXOs(asset, prog, amounts(3))
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := f.store.EnsurePool(ctx, asset, prog, storage.PoolOptions{FromHeight: 1})
	if err != nil {
		t.Fatal(err)
	}
	r, proxy := indexRunner(t, f, 20*time.Millisecond)
	_, done := run(t, r)
	waitLoaded(t, f, p.ID)
	waitFor(t, 5*time.Second, "a pass to succeed", func() bool { return r.ChainError() == "" })

	proxy.Refuse(true)
	proxy.DropAll()
	waitFor(t, 5*time.Second, "the chain error", func() bool { return r.ChainError() != "" })
	t.Logf("chain error: %s", r.ChainError())
	waitFor(t, 5*time.Second, "the chain cursor to show the error and keep the last success", func() bool {
		cur, err := f.store.Cursor(ctx, 0, syncer.JobChain)
		return err == nil && cur.LastError != "" && cur.LastSuccess != nil && cur.Height > 0
	})
	// The chain moves on meanwhile.
	added, err := f.chain.AddUTXOs(asset, prog, []uint64{77})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.chain.Spend(hashes[:1], []sim.Output{{Asset: asset, Program: program("payee"), Amount: 1}}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // a few 20 ms polls against the refusing node: what must not happen has no event
	select {
	case <-done:
		t.Fatal("Run returned while the node was unreachable")
	default:
	}
	if r.ChainError() == "" {
		t.Fatal("the chain error cleared while the node is unreachable")
	}
	if free := f.reservable(t, p.ID); slices.Contains(free, added[0]) || !slices.Contains(free, hashes[0]) {
		t.Fatalf("the pool changed while the node was unreachable: %v", free)
	}

	proxy.Refuse(false)
	waitFor(t, 10*time.Second, "the index to catch up", func() bool {
		free := f.reservable(t, p.ID)
		return r.ChainError() == "" && slices.Contains(free, added[0]) && !slices.Contains(free, hashes[0])
	})
	tip := f.chain.Tip()
	waitFor(t, 5*time.Second, "the chain cursor to clear", func() bool {
		cur, err := f.store.Cursor(ctx, 0, syncer.JobChain)
		return err == nil && cur.LastError == "" && cur.Height == int64(tip.Height) && cur.BlockHash == tip.BlockHash
	})
	select {
	case <-done:
		t.Fatal("Run returned")
	default:
	}
	f.checkNoneLost(t, p, nil)
}

// The runner sweeps the pools it indexes every SweepInterval: a UTXO Redis
// lost is offered again without any chain event.
func TestRunnerSweepsTheIndexedPools(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	prog := program("runner sweep")
	hashes, err := f.chain.AddUTXOs(asset, prog, amounts(3))
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := f.store.EnsurePool(ctx, asset, prog, storage.PoolOptions{FromHeight: 1})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := indexRunner(t, f, 20*time.Millisecond)
	r.SetSweepInterval(50 * time.Millisecond)
	run(t, r)
	waitLoaded(t, f, p.ID)
	waitFor(t, 5*time.Second, "the pool offered", func() bool { return len(f.reservable(t, p.ID)) == 3 })
	if err := f.rdb.HDel(ctx, f.poolKey(p.ID, "utxo"), hashes[0]).Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.rdb.ZRem(ctx, f.poolKey(p.ID, "free"), fmt.Sprintf("%020d:%s", 1000, hashes[0])).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the sweep to offer the UTXO again", func() bool {
		return slices.Contains(f.reservable(t, p.ID), hashes[0])
	})
}
