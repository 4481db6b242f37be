package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/bench/chaos"
	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
)

// bufferdBin is the bufferd executable, built with -race by TestMain.
var bufferdBin string

func TestMain(m *testing.M) {
	bin, remove, err := testenv.BuildBufferd("../..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bufferdBin = bin
	code := m.Run()
	remove()
	os.Exit(testenv.AfterTests(code))
}

// testLog logs the checker's warnings through t.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// report returns the report as text.
func report(rep *chaos.Report) string {
	var b strings.Builder
	if rep != nil {
		_ = rep.Write(&b) // a strings.Builder does not fail
	}
	return b.String()
}

// The short run of the checker: fixed seeds, clients, chain events and
// faults on real processes, every quiet point checked. Any violation fails
// the test with the seed and the failing history.
func TestChaosFixedSeeds(t *testing.T) {
	if testing.Short() {
		t.Skip("runs whole deployments")
	}
	t.Parallel()
	for _, seed := range []uint64{101, 202, 303} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel() // each run has servers of its own
			start := time.Now()
			rep, err := chaos.Run(context.Background(), chaos.Options{
				Seed: seed, Duration: 6 * time.Second, Round: 3 * time.Second, Executable: bufferdBin, Log: testLog(t),
				ProcessLogLevel: "info", // kept only when the run fails
			})
			if err != nil {
				t.Fatalf("seed %d: %v\n%s", seed, err, report(rep))
			}
			if rep.QuietPoints() == 0 || rep.Grants() == 0 || len(rep.Chain()) == 0 {
				t.Fatalf("seed %d did next to nothing:\n%s", seed, report(rep))
			}
			t.Logf("seed %d: %s, %d rounds, %d grants, %d client operations, %d chain events, faults %v",
				seed, time.Since(start).Round(time.Millisecond), rep.Rounds(), rep.Grants(), total(rep.Ops()), total(rep.Chain()), rep.Faults())
		})
	}
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// injected runs one short round and calls inject at its quiet point; the
// checker must report a violation of kind want.
func injected(t *testing.T, want string, o chaos.Options, inject func(ctx context.Context, p chaos.Probe) error) *chaos.Report {
	t.Helper()
	o.Seed, o.Duration, o.Round, o.NoFaults, o.Executable, o.Log = 7, time.Second, 2*time.Second, true, bufferdBin, testLog(t)
	o.WorkDir = t.TempDir() // the run fails on purpose: its logs are not wanted
	o.SetBeforeCheck(func(ctx context.Context, p chaos.Probe) error {
		if p.Round < 0 {
			return nil // the deployment's first quiet point, before any step
		}
		return inject(ctx, p)
	})
	rep, err := chaos.Run(context.Background(), o)
	if !errors.Is(err, chaos.ErrViolation) {
		t.Fatalf("want a violation, got %v\n%s", err, report(rep))
	}
	for _, v := range rep.Violations() {
		if v.Kind == want {
			return rep
		}
	}
	t.Fatalf("no %s violation reported:\n%s", want, report(rep))
	return nil
}

// A second live reservation holding a UTXO, written into the journal behind
// bufferd's back, is reported as doubled; shrinking finds that no step at
// all is needed to show it.
func TestChaosReportsInjectedDoubleHold(t *testing.T) {
	if testing.Short() {
		t.Skip("runs whole deployments")
	}
	t.Parallel()
	rep := injected(t, chaos.KindDoubled, chaos.Options{ShrinkBudget: time.Minute}, func(ctx context.Context, p chaos.Probe) error {
		conn, err := pgx.Connect(ctx, p.DatabaseURL)
		if err != nil {
			return err
		}
		defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
		var hash string
		err = conn.QueryRow(ctx, `SELECT hash FROM utxos u WHERE pool_id = $1 AND state = 'available' AND NOT EXISTS (
			SELECT 1 FROM reservation_utxos ru JOIN reservations r ON r.id = ru.reservation_id
			WHERE ru.hash = u.hash AND r.state IN ('held', 'submitted')) ORDER BY hash LIMIT 1`, p.Pools[0]).Scan(&hash)
		if err != nil {
			return err
		}
		id := fmt.Sprintf("b1%02x%s", p.Pools[0], strings.Repeat("e", 28)) // the shape of lockmgr's ids
		_, err = conn.Exec(ctx, `INSERT INTO reservations (id, pool_id, fence, owner, hashes, state, tx_id, created_at, expires_at, updated_at)
			VALUES ($1, $2, 999999, 'injected', $3, 'held', '', now(), now() + interval '1 hour', now())`, id, p.Pools[0], hash)
		if err != nil {
			return err
		}
		_, err = conn.Exec(ctx, `INSERT INTO reservation_utxos (reservation_id, hash, pool_id) VALUES ($1, $2, $3)`, id, hash, p.Pools[0])
		return err
	})
	if rep.Shortest() == nil {
		t.Fatalf("shrinking found no failing history:\n%s", report(rep))
	}
	for _, e := range rep.Shortest() {
		if e.Index >= 0 {
			t.Fatalf("the shortest failing history should have no step, it has %s:\n%s", e, report(rep))
		}
	}
}

// A UTXO taken out of Redis's free set behind the syncer's back, with the
// sweep (which would repair it) effectively off, is reported as lost.
func TestChaosReportsInjectedLostUTXO(t *testing.T) {
	if testing.Short() {
		t.Skip("runs whole deployments")
	}
	t.Parallel()
	rep := injected(t, chaos.KindLost, chaos.Options{SweepInterval: time.Hour}, func(ctx context.Context, p chaos.Probe) error {
		rdb := redis.NewClient(&redis.Options{Addr: strings.TrimSuffix(strings.TrimPrefix(p.RedisURL, "redis://"), "/0")})
		defer func() { _ = rdb.Close() }()
		free, err := lockmgr.New(rdb, lockmgr.Options{Prefix: p.Prefix}).ListAvailable(ctx, p.Pools[0], false, 0, 1)
		if err != nil || len(free) == 0 {
			return fmt.Errorf("no free utxo to take: %v", err)
		}
		// The free set's members are "<amount, 20 digits>:<hash>" (lockmgr/internal/scripts/prelude.lua).
		member := fmt.Sprintf("%020d:%s", free[0].Amount, free[0].Hash)
		return rdb.ZRem(ctx, fmt.Sprintf("%s{p%d}:free", p.Prefix, p.Pools[0]), member).Err()
	})
	if rep.Lost() == 0 {
		t.Fatalf("the report counts no lost UTXO:\n%s", report(rep))
	}
}
