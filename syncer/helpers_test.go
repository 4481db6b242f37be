package syncer_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

// Helpers shared by the test files written after syncer_test.go and
// lifecycle_test.go.

// pass runs one pass of the source's chain index and returns what it did.
func (s *source) pass(t testing.TB) syncer.IndexResult {
	t.Helper()
	if s.runner.ChainIndex() == nil {
		t.Fatalf("%s source has no index", s.name)
	}
	res, err := s.runner.ChainIndex().Pass(context.Background())
	if err != nil {
		t.Fatalf("index pass: %v", err)
	}
	return res
}

// utxoState is the chain state PostgreSQL has for one UTXO.
func utxoState(t testing.TB, f *fixture, hash string) string {
	t.Helper()
	us, err := f.store.GetUTXOs(context.Background(), []string{hash})
	if err != nil || len(us) != 1 {
		t.Fatalf("utxo %s: %v %v", hash, us, err)
	}
	return us[0].State
}

// migrated is the package's migrated database, which tests clone.
var migrated = testenv.NewTemplate(storage.MigrateUp)

// freshStore is another migrated, empty database.
func freshStore(t testing.TB) *storage.Store {
	t.Helper()
	s, err := storage.Open(context.Background(), migrated.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// freshIndex indexes f's chain from height 1 into a new database and a new
// Redis prefix, for the pools (asset, program) given, until they reach the
// tip; it returns the database, the lock manager and the new pools.
func freshIndex(t *testing.T, f *fixture, pools ...[2]string) (*storage.Store, *lockmgr.Manager, []storage.Pool) {
	t.Helper()
	ctx := context.Background()
	store := freshStore(t)
	rdb, prefix := testenv.Redis(t)
	journal := storage.NewJournal(store, storage.JournalOptions{})
	t.Cleanup(journal.Close)
	locks := lockmgr.New(rdb, lockmgr.Options{Prefix: prefix, Journal: journal})
	var out []storage.Pool
	for _, p := range pools {
		pool, _, err := store.EnsurePool(ctx, p[0], p[1], storage.PoolOptions{FromHeight: 1})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pool)
	}
	r := syncer.Jobs{Store: store, Locks: locks, Chain: chain.NewBytomd(f.url),
		Rebuild:  syncer.NewRebuilder(store, locks, rdb, prefix, nil),
		Interval: time.Hour, MaxBackoff: time.Hour}.ForTerm(0)
	for i := 0; ; i++ {
		if _, err := r.ChainIndex().Pass(ctx); err != nil {
			t.Fatalf("fresh index: %v", err)
		}
		synced := true
		for j, p := range out {
			got, err := store.GetPool(ctx, p.ID)
			if err != nil {
				t.Fatal(err)
			}
			out[j] = got
			synced = synced && got.SyncedAt != nil
		}
		if synced {
			return store, locks, out
		}
		if i == 100 {
			t.Fatal("the fresh index does not reach the tip")
		}
	}
}

// historyOf renders a pool's recorded transactions (GET /v1/transactions)
// and its UTXOs in the states given, without ids and timestamps, sorted, so
// that two databases can be compared.
func historyOf(t testing.TB, s *storage.Store, poolID int64, states ...string) string {
	t.Helper()
	ctx := context.Background()
	txs, err := s.ListTransactions(ctx, poolID, "", 0, storage.MaxListLimit)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, tx := range txs {
		lines = append(lines, fmt.Sprintf("tx %s h%d %s fail=%v in=%s out=%s", tx.TxID, tx.Height, tx.BlockHash,
			tx.StatusFail, tx.Inputs, tx.Outputs))
	}
	us, err := s.PoolUTXOsByState(ctx, poolID, states...)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		lines = append(lines, fmt.Sprintf("utxo %s %d %s confirmed=%v h%d valid=%d created=%s spent_tx=%s spent_h%d",
			u.Hash, u.Amount, u.State, u.Confirmed, u.Height, u.ValidHeight, u.CreatedTx, u.SpentTx, u.SpentHeight))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// unjournalled is a lock manager on f's Redis that records nothing: its
// grants are the ones a process that died before journalling leaves.
func (f *fixture) unjournalled() *lockmgr.Manager {
	return lockmgr.New(f.rdb, lockmgr.Options{Prefix: f.prefix})
}

// run runs the runner until the test ends (or stop is called). stop
// cancels it and waits for Run to return, with its error; done is closed
// when Run returned.
func run(t testing.TB, r *syncer.Runner) (stop func() error, done <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	over := make(chan struct{})
	var err error
	go func() {
		defer close(over)
		err = r.Run(ctx)
	}()
	stop = func() error {
		cancel()
		<-over
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop, over
}

// reserveWhenLoaded reserves, retrying while the pool is not in Redis yet
// (the runner's first pass loads it).
func reserveWhenLoaded(t testing.TB, f *fixture, req lockmgr.Request) *lockmgr.Reservation {
	t.Helper()
	var res *lockmgr.Reservation
	var err error
	_ = testenv.Poll(10*time.Second, func() error {
		res, err = f.locks.Reserve(context.Background(), req)
		if errors.Is(err, lockmgr.ErrRebuilding) {
			return err
		}
		return nil // reserved, or refused for good
	})
	if err != nil {
		t.Fatalf("reserve: %v", err)
	}
	return res
}

// runnerFor is the runner of f's chain read as kind ("bytomd": indexed,
// "blockcenter": listed), like newSource's, for benchmarks too.
func runnerFor(f *fixture, kind string) *syncer.Runner {
	var src chain.Source = chain.NewBlockcenter(f.url, chain.WithPageSize(1000))
	if kind == "bytomd" {
		src = chain.NewBytomd(f.url)
	}
	return syncer.Jobs{Store: f.store, Locks: f.locks, Chain: src,
		Rebuild:  syncer.NewRebuilder(f.store, f.locks, f.rdb, f.prefix, nil),
		Interval: time.Hour, MaxBackoff: time.Hour}.ForTerm(0)
}

// catchUp runs index passes until every pool's index cursor is at the
// chain's tip (a pass stops after about two seconds of blocks) and returns
// what they did in all.
func (s *source) catchUp(t testing.TB) syncer.IndexResult {
	t.Helper()
	var all syncer.IndexResult
	for i := 0; ; i++ {
		res := s.pass(t)
		all.Tip, all.TipHash = res.Tip, res.TipHash
		all.Blocks += res.Blocks
		all.Reorgs += res.Reorgs
		all.Pending = res.Pending
		all.Touched += res.Touched
		cur, err := s.f.store.IndexCursors(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		done := true
		for _, c := range cur {
			done = done && c.Height == int64(res.Tip) && c.BlockHash == res.TipHash
		}
		if done {
			return all
		}
		if i == 50 {
			t.Fatalf("the index does not catch up: %+v", cur)
		}
	}
}
