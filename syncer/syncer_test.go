package syncer_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

var asset = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"

func program(name string) string {
	s := sha256.Sum256([]byte(name))
	return "0020" + hex.EncodeToString(s[:])
}

type fixture struct {
	store  *storage.Store
	rdb    *redis.Client
	prefix string
	locks  *lockmgr.Manager
	chain  *sim.Chain
	client *chain.Blockcenter
	url    string // of the simulated chain
}

// newFixture runs the simulated chain on a loopback port and gives a migrated
// database and an isolated Redis prefix.
func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	store, err := storage.Open(ctx, migrated.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	rdb, prefix := testenv.Redis(t)
	ch := sim.New()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := ch.Handler()
	go func() { _ = app.Listener(ln) }()
	// Closing the listener too ends a Serve that began after Shutdown ran.
	t.Cleanup(func() { _ = app.Shutdown(); _ = ln.Close() })
	// Runs before the shutdown: the server waits for a client's idle
	// keep-alive connection until its read timeout (30 s) otherwise.
	t.Cleanup(http.DefaultTransport.(*http.Transport).CloseIdleConnections)
	journal := storage.NewJournal(store, storage.JournalOptions{})
	t.Cleanup(journal.Close)
	return &fixture{
		store: store, rdb: rdb, prefix: prefix, chain: ch,
		locks:  lockmgr.New(rdb, lockmgr.Options{Prefix: prefix, Journal: journal}),
		client: chain.NewBlockcenter("http://"+ln.Addr().String(), chain.WithPageSize(1000)),
		url:    "http://" + ln.Addr().String(),
	}
}

func (f *fixture) pool(t testing.TB, prog string) storage.Pool {
	t.Helper()
	p, _, err := f.store.EnsurePool(context.Background(), asset, prog)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *fixture) job() *syncer.UTXOSync {
	return &syncer.UTXOSync{Store: f.store, Locks: f.locks, Chain: f.client, Lister: f.client,
		Apply:   &syncer.Applier{Store: f.store, Locks: f.locks},
		Rebuild: syncer.NewRebuilder(f.store, f.locks, f.rdb, f.prefix, nil)}
}

func amounts(n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(1000 + i)
	}
	return out
}

// The original fetched only the first 1000 UTXOs of a base and marked the rest
// spent (flaw 7); and it wrote row by row (flaw 9).
func TestLargePoolSyncsCompletelyWithConstantStatements(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	prog := program("large")
	hashes, err := f.chain.AddUTXOs(asset, prog, amounts(5000))
	if err != nil {
		t.Fatal(err)
	}
	p := f.pool(t, prog)
	res, err := f.job().SyncPool(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Added) != 5000 {
		t.Fatalf("added %d, want 5000", len(res.Added))
	}
	counts, err := f.store.PoolCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[p.ID].Available != 5000 || counts[p.ID].Spent != 0 {
		t.Fatalf("counts %+v", counts[p.ID])
	}
	free, _, err := f.locks.PoolCounts(ctx, p.ID)
	if err != nil || free != 5000 {
		t.Fatalf("redis free = %d, %v", free, err)
	}

	// No change on chain: nothing is written.
	res, err = f.job().SyncPool(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Added)+len(res.Revived)+len(res.Spent)+res.Confirmed != 0 {
		t.Fatalf("unchanged chain changed rows: %+v", res)
	}
	idle := res.Statements

	// One UTXO spent with its change back into the pool: a constant number of statements.
	_, outs, err := f.chain.Spend([]string{hashes[10]}, []sim.Output{{Asset: asset, Program: prog, Amount: 700}}, false)
	if err != nil {
		t.Fatal(err)
	}
	res, err = f.job().SyncPool(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Spent) != 1 || res.Spent[0] != hashes[10] || len(res.Added) != 1 || res.Added[0].Hash != outs[0] {
		t.Fatalf("one spend: %+v", res)
	}
	one := res.Statements

	// A hundred spends cost the same number of statements as one.
	var ins []string
	var newOuts []sim.Output
	for i := 100; i < 200; i++ {
		ins = append(ins, hashes[i])
		newOuts = append(newOuts, sim.Output{Asset: asset, Program: prog, Amount: uint64(9000 + i)})
	}
	if _, _, err := f.chain.Spend(ins, newOuts, false); err != nil {
		t.Fatal(err)
	}
	res, err = f.job().SyncPool(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Spent) != 100 || len(res.Added) != 100 {
		t.Fatalf("hundred spends: spent %d added %d", len(res.Spent), len(res.Added))
	}
	if res.Statements != one {
		t.Fatalf("statements: 1 change -> %d, 100 changes -> %d; want equal", one, res.Statements)
	}
	if idle >= one {
		t.Fatalf("an idle sync issued %d statements, a changing one %d", idle, one)
	}
	t.Logf("statements per sync: idle %d, 1 change %d, 100 changes %d", idle, one, res.Statements)

	// Redis follows: the spent UTXO cannot be reserved, its change can.
	if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: []string{hashes[10]}}); !errors.Is(err, lockmgr.ErrUnknownUTXO) {
		t.Fatalf("spent utxo reservable: %v", err)
	}
	if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: []string{outs[0]}}); err != nil {
		t.Fatalf("change output not reservable: %v", err)
	}
}

// A failed transaction moves no issued asset (status_fail moves only BTM):
// its outputs go and its inputs come back.
func TestFailedTransactionOutputsGoAndInputsComeBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	prog := contract + "51"
	hashes, err := f.chain.AddUTXOs(gold, prog, amounts(3))
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := f.store.EnsurePool(ctx, gold, prog)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.job().SyncPool(ctx, p); err != nil {
		t.Fatal(err)
	}
	_, outs, err := f.chain.Spend([]string{hashes[0]}, []sim.Output{{Asset: gold, Program: prog, Amount: 5}}, true)
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.job().SyncPool(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Added) != 1 || res.Added[0].Hash != outs[0] || len(res.Spent) != 1 {
		t.Fatalf("pending failing tx: %+v", res)
	}
	if _, err := f.chain.Mine(1); err != nil {
		t.Fatal(err)
	}
	res, err = f.job().SyncPool(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Spent) != 1 || res.Spent[0] != outs[0] || len(res.Revived) != 1 || res.Revived[0].Hash != hashes[0] {
		t.Fatalf("after the tx failed: %+v", res)
	}

	if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: []string{hashes[0]}}); err != nil {
		t.Fatalf("revived input not reservable: %v", err)
	}
	if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: p.ID, Hashes: []string{outs[0]}}); !errors.Is(err, lockmgr.ErrUnknownUTXO) {
		t.Fatalf("output of a failed tx reservable: %v", err)
	}
}

func TestRedisLossReloadsThePoolView(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	prog := program("flush")
	if _, err := f.chain.AddUTXOs(asset, prog, amounts(50)); err != nil {
		t.Fatal(err)
	}
	p := f.pool(t, prog)
	if _, err := f.job().SyncPool(ctx, p); err != nil {
		t.Fatal(err)
	}
	iter := f.rdb.Scan(ctx, 0, f.prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		f.rdb.Del(ctx, iter.Val())
	}
	if free, _, _ := f.locks.PoolCounts(ctx, p.ID); free != 0 {
		t.Fatalf("flush left %d", free)
	}
	if _, err := f.job().SyncPool(ctx, p); err != nil {
		t.Fatal(err)
	}
	if free, _, _ := f.locks.PoolCounts(ctx, p.ID); free != 50 {
		t.Fatalf("after reload free = %d, want 50", free)
	}
}

// failingSource fails for one program and passes the rest through.
type failingSource struct {
	*chain.Blockcenter
	program string
}

func (s failingSource) ListUTXOs(ctx context.Context, f chain.Filter) ([]chain.UTXO, error) {
	if f.Program == s.program {
		return nil, errors.New("blockcenter is having a bad day")
	}
	return s.Blockcenter.ListUTXOs(ctx, f)
}

// The original aborted the whole tick when one base failed (flaw 8).
func TestOneFailingPoolDoesNotStopTheOthers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	bad, good := program("bad"), program("good")
	if _, err := f.chain.AddUTXOs(asset, good, amounts(5)); err != nil {
		t.Fatal(err)
	}
	pb := f.pool(t, bad)
	pg := f.pool(t, good)
	job := f.job()
	job.Lister = failingSource{Blockcenter: f.client, program: bad}
	r := syncer.NewUTXORunner(job, f.store, time.Hour, 2*time.Hour)
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	counts, err := f.store.PoolCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts[pg.ID].Available != 5 {
		t.Fatalf("good pool not synced: %+v", counts[pg.ID])
	}
	if r.Failures(pb.ID) != 1 {
		t.Fatalf("bad pool failures = %d", r.Failures(pb.ID))
	}
	// Backing off: the next tick does not retry the failing pool yet.
	if err := r.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if r.Failures(pb.ID) != 1 {
		t.Fatalf("bad pool retried without backoff: failures = %d", r.Failures(pb.ID))
	}
	cursors, err := f.store.Cursors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sawErr, sawOK bool
	for _, c := range cursors {
		if c.PoolID == pb.ID && c.LastError != "" {
			sawErr = true
		}
		if c.PoolID == pg.ID && c.LastSuccess != nil && c.LastError == "" {
			sawOK = true
		}
	}
	if !sawErr || !sawOK {
		t.Fatalf("cursors do not record the outcome: %+v", cursors)
	}
}
