package e2e

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
)

// Shape of the fault workloads: 6 clients each keep up to 4 reservations of a
// pool of 100, so a free UTXO is always there and every refusal is the fault's.
const (
	faultClients = 6
	faultKeep    = 4
	faultUTXOs   = 100
	// recoveryLimit is how soon after a fault ends reserves must be granted again.
	recoveryLimit = 5 * time.Second
)

// window is a span of a workload's time, while a server was down, in which
// every reserve answered must have been answered 503.
type window struct{ from, to time.Duration }

// settle is how long after a server is killed an answer may still be a grant
// decided before the kill.
const settle = 200 * time.Millisecond

func TestRedisFlushMidWorkload(t *testing.T) {
	redisFault(t, func(s *stack, srv *testenv.RedisServer, w *workload) *window {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Client().FlushAll(ctx).Err(); err != nil {
			t.Fatalf("FLUSHALL: %v", err)
		}
		// Every API replica and the syncer watch for a lost pool and rebuild
		// it, so the gap has no fixed end the test could know.
		return nil
	})
}

func TestRedisKillRestartMidWorkload(t *testing.T) {
	redisFault(t, func(s *stack, srv *testenv.RedisServer, w *workload) *window {
		srv.Kill()
		dark := &window{from: w.now() + settle}
		// Long enough for the APIs' Redis clients to give up their retries
		// and answer within the outage, twice: a reserve that fails on a
		// dead Redis took about 1.8 s to answer 503 here (bufferd 2 also
		// tries to undo the grant after the script failed), so with 2 s
		// every reserve sent after the kill could hang until the restart.
		time.Sleep(3 * time.Second) // the fault lasts: Redis stays down that long
		dark.to = w.now()
		srv.Restart()
		return dark
	})
}

// redisFault runs a workload over 2 APIs and the syncer sharing a private
// Redis, applies fault in the middle and checks that the fault never made the
// service give one UTXO to two live reservations, that reserves got 503 (and
// nothing granted) while Redis had lost the pool, that the service recovered
// by itself, that fences kept growing and that every acknowledged reservation
// survived, in Redis and in the journal.
func redisFault(t *testing.T, fault func(*stack, *testenv.RedisServer, *workload) *window) {
	if testing.Short() {
		t.Skip("runs a workload across a Redis fault")
	}
	srv := testenv.StartRedis(t)
	s := startStack(t, stackConfig{APIs: 2, UTXOs: faultUTXOs, RedisURL: srv.URL()})
	w := startWorkload(s, faultClients, faultKeep)
	defer w.cancel()

	w.waitGrants(t, 0, 20)
	faultStart := w.now()
	dark := fault(s, srv, w)
	faultEnd := w.now()
	recovered, ok := w.firstGrantAfter(faultEnd, recoveryLimit)
	if ok {
		w.waitGrants(t, faultEnd, 20)
	}
	w.halt()
	t.Logf("fault from %s to %s; reserves: %s; releases: %s", faultStart.Round(time.Millisecond),
		faultEnd.Round(time.Millisecond), statusCounts(w.reserves), statusCounts(w.releases))
	if !ok {
		t.Fatalf("no reserve was granted within %s after the fault ended", recoveryLimit)
	}
	t.Logf("first grant %s after the fault ended", (recovered - faultEnd).Round(time.Millisecond))

	checkFaultAnswers(t, w, faultStart, faultEnd, dark)
	checkOneHolder(t, w.grants)
	checkFences(t, w.grants, faultStart, faultEnd)
	checkLiveAfter(t, s, w.grants)
	checkJournal(t, s, w.grants)
}

// checkFaultAnswers fails the test unless every reserve was answered 201 or
// 503 and every release 200 or 503, every 503 with a Retry-After header (a
// release refused as unknown would mean an acknowledged reservation was lost;
// a retried release whose failed first try took effect answers 200 again,
// since release is idempotent, so 410 is wrong even then: nothing of the
// workload expires), some reserve sent after the fault began got
// 503 (or, for a fault without a dark window, the pool was rebuilt between
// faultStart and faultEnd: see rebuiltAcross), and, when the fault has a dark
// window (a server down), every reserve sent and answered within it (at least
// one) got 503. A reserve sent before the window may still be answered 201
// inside it: Redis decided it before the fault, and its journal commit can
// take longer than settle on a loaded machine.
func checkFaultAnswers(t *testing.T, w *workload, faultStart, faultEnd time.Duration, dark *window) {
	t.Helper()
	checkGrantsKnown(t, w)
	after503, inDark, dark503, noRetryAfter := 0, 0, 0, 0
	for _, a := range append(append([]attempt(nil), w.reserves...), w.releases...) {
		if a.Status == http.StatusServiceUnavailable && a.RetryAfter == "" {
			noRetryAfter++
		}
	}
	if noRetryAfter > 0 {
		t.Errorf("%d answers 503 had no Retry-After header", noRetryAfter)
	}
	for _, a := range w.reserves {
		if a.Status != http.StatusCreated && a.Status != http.StatusServiceUnavailable {
			t.Errorf("reserve sent at %s answered %d %s %s, want 201 or 503", a.Call, a.Status, a.Code, a.Err)
		}
		if a.Call >= faultStart && a.Status == http.StatusServiceUnavailable {
			after503++
		}
		if dark != nil && a.Call >= dark.from && a.Ret <= dark.to {
			inDark++
			if a.Status == http.StatusServiceUnavailable {
				dark503++
			}
		}
	}
	for _, a := range w.releases {
		if a.Status != http.StatusOK && a.Status != http.StatusServiceUnavailable {
			t.Errorf("release sent at %s (retry %v) answered %d %s %s, want 200 or 503", a.Call, a.Retry, a.Status, a.Code, a.Err)
		}
	}
	if dark == nil {
		// A fault without a fixed gap (FLUSHALL): the replicas may rebuild
		// the pool before any reserve reaches it, so a 503 is not certain;
		// the rebuild itself is, and its fence gap proves it happened.
		t.Logf("%d reserves sent after the fault began were answered 503", after503)
		if after503 == 0 && !rebuiltAcross(w.grants, faultStart, faultEnd) {
			t.Errorf("no reserve sent after the fault began was answered 503, and no fence after it is %d above those before: the fault was not seen", lockmgr.FenceGap)
		}
		return
	}
	if after503 == 0 {
		t.Errorf("no reserve sent after the fault began was answered 503: the gap was not seen")
	}
	t.Logf("%d reserves sent and answered while the server was down (%s..%s): %d x 503",
		inDark, dark.from.Round(time.Millisecond), dark.to.Round(time.Millisecond), dark503)
	if inDark == 0 || dark503 != inDark {
		t.Errorf("want every reserve sent and answered while the server was down (%d, at least one) answered 503, got %d", inDark, dark503)
	}
}

func TestPostgresDownFailsClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a workload across PostgreSQL pauses and kills")
	}
	pg := testenv.StartPostgres(t)
	db := testenv.CreateDatabase(t, pg.URL())
	// The private server runs without durability; a commit acknowledged just
	// before a kill must survive it here, so commits wait for their WAL write.
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	execSQL(t, pg.URL(), "ALTER DATABASE "+strings.TrimPrefix(u.Path, "/")+" SET synchronous_commit = on")

	s := startStack(t, stackConfig{APIs: 2, UTXOs: faultUTXOs, DatabaseURL: db})
	w := startWorkload(s, faultClients, faultKeep)
	defer w.cancel()
	w.waitGrants(t, 0, 20)

	// A paused server: the journal writes hang, then go through.
	pauseFrom := w.now()
	pg.Stop()
	time.Sleep(1500 * time.Millisecond) // the fault lasts
	pg.Cont()
	pauseEnd := w.now()
	rec1, ok1 := w.firstGrantAfter(pauseEnd, 15*time.Second)
	if ok1 {
		w.waitGrants(t, pauseEnd, 20)
	}

	// A killed server: the journal writes fail at once, until it is back.
	killFrom := w.now()
	pg.Kill()
	dark := &window{from: w.now() + settle}
	time.Sleep(1500 * time.Millisecond) // the fault lasts
	dark.to = w.now()
	pg.Restart()
	killEnd := w.now()
	rec2, ok2 := w.firstGrantAfter(killEnd, 15*time.Second)
	if ok2 {
		w.waitGrants(t, killEnd, 20)
	}
	w.halt()
	t.Logf("paused %s..%s, killed %s..%s; reserves: %s; releases: %s", pauseFrom.Round(time.Millisecond), pauseEnd.Round(time.Millisecond),
		killFrom.Round(time.Millisecond), killEnd.Round(time.Millisecond), statusCounts(w.reserves), statusCounts(w.releases))
	if !ok1 || !ok2 {
		t.Fatalf("no grant within 15s after the pause (%v) or after the restart (%v)", ok1, ok2)
	}
	t.Logf("first grant %s after the pause, %s after the restart", (rec1 - pauseEnd).Round(time.Millisecond), (rec2 - killEnd).Round(time.Millisecond))

	checkFaultAnswers(t, w, pauseFrom, pauseEnd, dark)
	checkOneHolder(t, w.grants)
	checkFences(t, w.grants, killFrom, killEnd)
	checkLiveAfter(t, s, w.grants)
	checkJournal(t, s, w.grants)
}

// execSQL runs one statement on the database url names.
func execSQL(t *testing.T, dbURL, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// rebuiltAcross reports whether every grant sent after to is at least
// lockmgr.FenceGap above every grant answered before from: a rebuild of the
// pool in between lifted its fence.
func rebuiltAcross(grants []*grantRec, from, to time.Duration) bool {
	maxBefore, minAfter, nBefore, _ := fencesAround(grants, from, to)
	return nBefore > 0 && minAfter >= maxBefore+lockmgr.FenceGap
}
