package handlers

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/metrics"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

// exerciseStatusRoutes is TestOpenAPIEveryRoute's part for GET / and
// GET /v1/reservations, with the database up.
func exerciseStatusRoutes(c *oaChecker, f *fixture) {
	auth := []string{"Authorization", "Bearer " + testToken}
	c.send(f.app, exchange{method: "GET", target: "/", status: 200})
	first := c.send(f.app, exchange{method: "GET", target: "/v1/reservations?limit=1&state=live", header: auth, status: 200})
	next := decode[resListBody](c.t, first.body).NextCursor
	if next == "" {
		c.t.Fatalf("GET /v1/reservations: no next_cursor: %s", first.body)
	}
	c.send(f.app, exchange{method: "GET", target: fmt.Sprintf("/v1/reservations?pool=%d&owner=alice&cursor=%s", f.pool.ID, next), header: auth, status: 200})
	c.send(f.app, exchange{method: "GET", target: "/v1/reservations", status: 401, invalid: true})
	c.send(f.app, exchange{method: "GET", target: "/v1/reservations?state=burnt", header: auth, status: 400, invalid: true})
	c.send(f.app, exchange{method: "GET", target: "/v1/reservations?cursor=%2B%2B", header: auth, status: 400, invalid: true})
	c.send(f.app, exchange{method: "GET", target: "/v1/reservations?pool=999999", header: auth, status: 404})
}

// exerciseStatusRoutesDown is its part once PostgreSQL is gone: the page
// still answers, saying so; the list answers 503.
func exerciseStatusRoutesDown(c *oaChecker, f *fixture) {
	// Once what the page read while the database was up is older than
	// statusTTL, the page says the database is down.
	testenv.Eventually(c.t, 10*statusTTL, func() error {
		page := c.send(f.app, exchange{method: "GET", target: "/", status: 200})
		if !strings.Contains(string(page.body), `id="unavailable"`) {
			return fmt.Errorf("the page does not say PostgreSQL is down: %s", page.body)
		}
		return nil
	})
	c.send(f.app, exchange{method: "GET", target: "/v1/reservations", header: []string{"Authorization", "Bearer " + testToken}, status: 503})
}

var (
	nonceRE       = regexp.MustCompile(`script-src 'nonce-([A-Za-z0-9_-]+)'`)
	liveCellRE    = regexp.MustCompile(`(?s)<tr data-pool="(\d+)">.*?<td class="num available">(\d+)</td>.*?<td class="num live">(\d+)</td>`)
	reservationRE = regexp.MustCompile(`[0-9a-f]{32}`)
)

// statusCells returns the available and live counts each pool row of the page shows.
func statusCells(t *testing.T, page string) map[string][2]string {
	t.Helper()
	out := map[string][2]string{}
	for _, m := range liveCellRE.FindAllStringSubmatch(page, -1) {
		out[m[1]] = [2]string{m[2], m[3]}
	}
	return out
}

// TestStatusPage renders the page over a real Redis and PostgreSQL: the
// pools, their counts and chart, the leader, the sync lag, the live
// reservations with their age but without their ids or owners, the health
// of both stores, and the security headers.
func TestStatusPage(t *testing.T) {
	f := newResFixture(t, 10, 20, 30)
	ctx := testCtx(t)
	get := func(app *fiber.App) (http.Header, string) {
		t.Helper()
		resp, err := app.Test(httptest.NewRequest("GET", "/", nil), -1)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /: %d %s %v", resp.StatusCode, b, err)
		}
		return resp.Header, string(b)
	}

	h, page := get(f.app)
	id := fmt.Sprint(f.pool.ID)
	if cells := statusCells(t, page); cells[id] != [2]string{"3", "0"} {
		t.Fatalf("before any reservation: %v\n%s", cells, page)
	}
	for _, want := range []string{f.pool.Asset, f.pool.Program, `id="redis">ok`, `id="postgres">ok`, `href="docs"`, `href="metrics"`,
		`none elected yet`, "<svg", `<span id="live-total">0</span>`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	csp := h.Get("Content-Security-Policy")
	m := nonceRE.FindStringSubmatch(csp)
	if m == nil || !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe-inline") {
		t.Fatalf("Content-Security-Policy %q", csp)
	}
	if !strings.Contains(page, `<script nonce="`+m[1]+`">`) || strings.Count(page, "<script") != 1 {
		t.Error("the inline script does not carry the policy's nonce")
	}
	if h.Get("X-Content-Type-Options") != "nosniff" || !strings.HasPrefix(h.Get("Content-Type"), "text/html") ||
		h.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", h)
	}
	if _, again := get(f.app); strings.Contains(again, m[1]) {
		t.Error("the nonce is reused")
	}

	// A reservation, a leader and a sync position.
	status, body := f.call("POST", "/v1/reservations", fmt.Sprintf(`{"pool":%d,"count":2,"owner":"secret-owner"}`, f.pool.ID))
	if status != http.StatusCreated {
		t.Fatalf("reserve: %d %s", status, body)
	}
	res := decode[resBody](t, body)
	if _, err := f.store.NewTerm(ctx, syncer.LeaderJob, "replica-7"); err != nil {
		t.Fatal(err)
	}
	last := time.Now().Add(-3 * time.Second)
	for _, cur := range []storage.SyncCursor{
		{PoolID: 0, Job: syncer.JobChain, Height: 50, LastSuccess: &last},
		{PoolID: f.pool.ID, Job: storage.JobIndex, Height: 43, LastSuccess: &last, LastError: "pq: relation secret_table does not exist"},
	} {
		if err := f.store.SaveCursor(ctx, cur); err != nil {
			t.Fatal(err)
		}
	}
	// The page reads its data at most once a second.
	waitFor(t, 5*time.Second, "the page to show the reservation", func() bool {
		_, page = get(f.app)
		return statusCells(t, page)[id] == [2]string{"1", "1"} && strings.Contains(page, "replica-7")
	})
	for _, want := range []string{`<span id="live-total">1</span>`, `<code id="leader">replica-7</code>`, `<strong>7</strong> blocks behind`,
		"index: height 43", "(failing)", `<span class="granted">1</span>`, "<td>held</td>"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, secret := range []string{res.ID, "secret-owner", "secret_table", res.UTXOs[0].Hash} {
		if strings.Contains(page, secret) {
			t.Errorf("the public page shows %q", secret)
		}
	}
	if ids := reservationRE.FindAllString(strings.ReplaceAll(page, f.pool.Asset, ""), -1); len(ids) > 0 {
		for _, s := range ids {
			if strings.Contains(f.pool.Program, s) {
				continue
			}
			t.Errorf("the page shows an id-like string %q", s)
		}
	}

	// Viewers within a second share one read of the stores.
	updatedRE := regexp.MustCompile(`<strong id="updated">([^<]+)</strong>`)
	fresh := f.newApp(Config{})
	_, p1 := get(fresh)
	_, p2 := get(fresh)
	if u1, u2 := updatedRE.FindStringSubmatch(p1), updatedRE.FindStringSubmatch(p2); u1 == nil || u2 == nil || u1[1] != u2[1] {
		t.Errorf("two views in a row read the stores twice: %v %v", u1, u2)
	}

	// Redis unreachable: the page says so and shows the rest from PostgreSQL.
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = dead.Close() })
	deadLocks := lockmgr.New(dead, lockmgr.Options{Prefix: f.prefix})
	t.Cleanup(func() { _ = deadLocks.Close() })
	if _, page := get(f.newApp(Config{Locks: deadLocks})); !strings.Contains(page, `id="redis">unreachable`) ||
		!strings.Contains(page, `id="postgres">ok`) || statusCells(t, page)[id] != [2]string{"1", "1"} {
		t.Errorf("with Redis down: %s", page)
	}

	// Metrics served elsewhere: no link to them.
	if _, page := get(f.newApp(Config{MetricsElsewhere: true})); strings.Contains(page, `href="metrics"`) {
		t.Error("a link to /metrics that this listener does not serve")
	}
}

// TestBarsOf checks the chart's geometry: bars inside the box, the tallest
// filling it, an empty interval a line.
func TestBarsOf(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	counts := make([]int64, chartBars)
	counts[chartBars-1], counts[0] = 10, 5
	bars, peak, total := barsOf(counts, now)
	if len(bars) != chartBars || peak != 10 || total != 15 {
		t.Fatalf("%d bars, peak %d, total %d", len(bars), peak, total)
	}
	last, first, empty := bars[chartBars-1], bars[0], bars[1]
	if last.H != chartH-2 || last.Y != 2 || first.H != (chartH-2)/2 || empty.H != 1 || empty.Y != chartH-1 {
		t.Errorf("bars %+v %+v %+v", first, empty, last)
	}
	if last.X+last.W > chartW || last.Title != "11:58-12:00 UTC: 10" {
		t.Errorf("last bar %+v", last)
	}
	if bars, peak, _ := barsOf(nil, now); len(bars) != chartBars || peak != 0 {
		t.Errorf("no history: %d bars", len(bars))
	}
}

// TestStatusPageMetricsLabel checks the request metrics of the route at "/":
// the page is counted under "/", and an unknown path stays "unmatched"
// although the middlewares' mount path, "/", is now also a route's.
func TestStatusPageMetricsLabel(t *testing.T) {
	f := newFixture(t, 10)
	count := func(route, status string) float64 {
		return testutil.ToFloat64(metrics.HTTPRequests.WithLabelValues("GET", route, status))
	}
	page, unmatched, wrongly := count("/", "200"), count(metrics.RouteUnmatched, "404"), count("/", "404")
	if status, _ := do(t, f.app, "GET", "/", ""); status != http.StatusOK {
		t.Fatalf("GET /: %d", status)
	}
	if status, _ := do(t, f.app, "GET", "/nope/"+randHex(t, 8), ""); status != http.StatusNotFound {
		t.Fatalf("GET /nope: %d", status)
	}
	if count("/", "200") != page+1 || count(metrics.RouteUnmatched, "404") != unmatched+1 || count("/", "404") != wrongly {
		t.Errorf("page %v -> %v, unmatched %v -> %v, \"/\" 404 %v -> %v", page, count("/", "200"),
			unmatched, count(metrics.RouteUnmatched, "404"), wrongly, count("/", "404"))
	}
}
