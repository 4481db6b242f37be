package bench

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/handlers"
	"github.com/bufferd/bufferd/internal/connset"
	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

// serve serves app on a free loopback port until the test ends, then
// closes every connection it accepted: a client's pooled connection that
// never sent a request is not one the server's shutdown closes.
func serve(t *testing.T, app *fiber.App) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted connset.Set
	go func() { _ = app.Listener(accepted.Listener(ln)) }()
	t.Cleanup(func() {
		_ = app.ShutdownWithTimeout(time.Second)
		accepted.CloseAll()
	})
	return "http://" + ln.Addr().String()
}

// deployment starts in this process what `bufferd bench --local 2` starts as
// processes: the simulated chain, two APIs with their journals, a syncer
// woken by submits, and the floor; on real PostgreSQL and Redis.
func deployment(t *testing.T) Target {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db := testenv.Postgres(t)
	if err := storage.MigrateUp(ctx, db); err != nil {
		t.Fatal(err)
	}
	rdb, prefix := testenv.Redis(t)
	target := Target{AdminToken: "bench-admin", DatabaseURL: db, RedisURL: testenv.RedisURL()}
	target.Chain = serve(t, sim.New().Handler())
	target.Floor = serve(t, FloorApp(rdb, prefix))

	store, err := storage.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	for range 2 {
		journal := storage.NewJournal(store, storage.JournalOptions{})
		t.Cleanup(journal.Close)
		locks := lockmgr.New(rdb, lockmgr.Options{Prefix: prefix, Journal: journal})
		app := handlers.New(handlers.Config{Store: store, Locks: locks, AdminToken: target.AdminToken, Logger: log,
			Metrics: prometheus.NewRegistry()})
		target.APIs = append(target.APIs, serve(t, app))
	}
	locks := lockmgr.New(rdb, lockmgr.Options{Prefix: prefix})
	runner := syncer.Jobs{Store: store, Locks: locks, Chain: chain.NewBlockcenter(target.Chain),
		Rebuild: syncer.NewRebuilder(store, locks, rdb, prefix, log), Interval: 100 * time.Millisecond,
		MaxBackoff: time.Second, Log: log}.ForTerm(0)
	runner.Wake = locks.WatchSubmits(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = runner.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return target
}

// A tiny run of every scenario against real servers: each is measured,
// both duplicate checks run and find nothing, and a double grant forged
// into the journal afterwards is found.
func TestSmokeEveryScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every scenario against real servers")
	}
	target := deployment(t)
	ctx := context.Background()
	rep, err := Run(ctx, target, Options{Duration: 700 * time.Millisecond, PoolSize: 300, MemoryReservations: 200,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	md := rep.Markdown()
	for _, name := range Scenarios {
		r := rep.result(name)
		if !r.measured() || r.Cycles+r.Grants == 0 {
			t.Errorf("scenario %s did not run: %+v", name, r)
			continue
		}
		if len(r.ClientDuplicates)+len(r.JournalDuplicates) > 0 {
			t.Errorf("scenario %s: duplicates %v %v", name, r.ClientDuplicates, r.JournalDuplicates)
		}
		if n := r.Errors(); n > 0 {
			t.Errorf("scenario %s: %d errors", name, n)
		}
	}
	if !rep.journalChecked || rep.journalRows == 0 {
		t.Errorf("journal checked %v, %d rows", rep.journalChecked, rep.journalRows)
	}
	if c := rep.result("c"); c != nil && c.Op(opReservable).OK() == 0 {
		t.Errorf("no submit -> reservable latency measured")
	}
	if m := rep.memory(); m == nil || m.Reservations != 200 || m.RedisAfter == 0 || m.JournalAfter <= m.JournalBefore {
		t.Errorf("memory: %+v", m)
	}
	for _, want := range []string{"| reserve+release request rate", "| zero duplicate grants in every scenario | 0 client-side",
		"; 0 in the journal", "| submit -> change reservable p99 < 1 s | p50", "Memory: 200 live reservations", "| a: reserve + release",
		"| reserve (in the APIs) |", "| update-utxo (in the APIs) |", "| journal commit (in the APIs) |"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}

	// Forge a second reservation of a UTXO of the memory scenario, made
	// 10 ms after the first (which ended when its pool was retired, later).
	pool := rep.result("memory").Pools[0]
	rows, err := readJournal(ctx, target.DatabaseURL, []int64{pool})
	if err != nil || len(rows) != 200 {
		t.Fatalf("readJournal: %d rows, %v", len(rows), err)
	}
	victim := rows[0]
	store, err := storage.Open(ctx, target.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = store.Close() }()
	forged := storage.Reservation{ID: strings.Repeat("f", 32), PoolID: pool, Fence: 1_000_000, Hashes: victim.Hashes[0],
		State: storage.ResHeld, CreatedAt: victim.CreatedAt.Add(10 * time.Millisecond), ExpiresAt: victim.ExpiresAt}
	if err := store.RecordReservation(ctx, forged); err != nil {
		t.Fatal(err)
	}
	rows, err = readJournal(ctx, target.DatabaseURL, []int64{pool})
	if err != nil {
		t.Fatal(err)
	}
	dups := CheckJournal(rows, journalTolerance)
	if len(dups) != 1 || !strings.Contains(dups[0].B, forged.ID) || dups[0].Hash != victim.Hashes[0] {
		for _, r := range rows {
			if r.Hashes[0] == victim.Hashes[0] {
				t.Logf("%+v end %s", r, r.end())
			}
		}
		t.Errorf("CheckJournal after forging = %v, want the forged row", dups)
	}
}
