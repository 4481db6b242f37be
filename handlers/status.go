package handlers

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

// The status page's chart: reservations granted per interval, over the last hour.
const (
	chartStep  = 2 * time.Minute
	chartBars  = 30
	chartW     = 180
	chartH     = 36
	publicLive = 20 // live reservations the page lists (without ids or owners)
	statusTTL  = time.Second
)

//go:embed status.html.tmpl
var statusTemplate string

var statusTmpl = template.Must(template.New("status").Parse(statusTemplate))

// statusView is what the status page shows. Everything in it is public: no
// reservation id, owner or error text.
type statusView struct {
	Nonce     string
	UpdatedAt string
	Metrics   bool // GET /metrics is served here
	Redis     healthView
	Postgres  healthView
	// Unavailable is set when PostgreSQL could not be read: the sections
	// below are empty.
	Unavailable bool
	Leader      *leaderView
	Chain       *chainView
	Pools       []poolView
	LiveTotal   int64
	Live        []liveView
	ChartLabel  string
}

type healthView struct {
	OK      bool
	Latency string
}

type leaderView struct {
	ID    string
	Epoch int64
	Since string
}

type chainView struct {
	TipHeight   int64
	LastSuccess string
	Failing     bool
}

type poolView struct {
	ID          int64
	Asset       string
	Program     string
	Synced      bool
	Counts      storage.Counts
	Live        int64
	Granted     int64 // over the chart's hour
	Bars        []chartBar
	Sync        []syncView
	ChartMax    int64
	ChartHeight int
	ChartWidth  int
}

type chartBar struct {
	X, Y, W, H int
	Title      string
}

type syncView struct {
	Job         string
	Height      int64
	Behind      *int64
	LastSuccess string
	Failing     bool
}

type liveView struct {
	Pool      int64
	State     string
	Age       string
	ExpiresIn string
	UTXOs     int
}

// statusPage serves GET /: the read-only status page (statusView), with a
// small inline script that reloads its live part every 2 s and, once an
// admin token is pasted (kept in sessionStorage), lists the live
// reservations from GET /v1/reservations. metrics tells whether this
// listener serves GET /metrics. Its data is read at most once per
// statusTTL, whatever the number of viewers, so exposing it costs the
// stores little.
func (s *server) statusPage(metrics bool) fiber.Handler {
	var (
		mu   sync.Mutex
		last statusView
		at   time.Time
	)
	return func(c *fiber.Ctx) error {
		nonce, err := cspNonce()
		if err != nil {
			return s.internal(c, err)
		}
		mu.Lock()
		if time.Since(at) >= statusTTL {
			last, at = s.statusData(c, time.Now()), time.Now()
		}
		v := last
		mu.Unlock()
		v.Nonce, v.Metrics = nonce, metrics
		var b strings.Builder
		if err := statusTmpl.Execute(&b, v); err != nil {
			return s.internal(c, fmt.Errorf("status page: %w", err))
		}
		c.Set(fiber.HeaderContentSecurityPolicy, "default-src 'none'; script-src 'nonce-"+nonce+"'; style-src 'nonce-"+nonce+
			"'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
		c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
		c.Set(fiber.HeaderXFrameOptions, "DENY")
		c.Set(fiber.HeaderCacheControl, "no-store")
		c.Type("html", "utf-8")
		return c.SendString(b.String())
	}
}

// cspNonce returns a fresh CSP nonce.
func cspNonce() (string, error) {
	var b [18]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("handlers: nonce: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil // no character html/template escapes
}

// statusData gathers the page's data. Failures are logged and shown as
// such, never with their text.
func (s *server) statusData(c *fiber.Ctx, now time.Time) statusView {
	v := statusView{UpdatedAt: now.UTC().Format("2006-01-02 15:04:05 UTC"),
		ChartLabel: fmt.Sprintf("Reservations granted per %d min, last %d min", int(chartStep.Minutes()), int((chartStep * chartBars).Minutes()))}
	v.Redis = s.probe(c, s.pingRedis)
	v.Postgres = s.probe(c, s.pingPostgres)
	if !v.Postgres.OK {
		v.Unavailable = true
		return v
	}
	ctx, cancel := reqContext(c)
	defer cancel()
	fail := func(what string, err error) statusView {
		s.log.Warn("status page", "request_id", requestID(c), "read", what, "err", err)
		return statusView{UpdatedAt: v.UpdatedAt, ChartLabel: v.ChartLabel, Redis: v.Redis, Postgres: v.Postgres, Unavailable: true}
	}
	pools, err := s.store.ListPools(ctx)
	if err != nil {
		return fail("pools", err)
	}
	counts, err := s.store.PoolCounts(ctx)
	if err != nil {
		return fail("counts", err)
	}
	cursors, err := s.store.Cursors(ctx)
	if err != nil {
		return fail("cursors", err)
	}
	liveCounts, live, err := s.store.LiveReservations(ctx, publicLive)
	if err != nil {
		return fail("live reservations", err)
	}
	history, err := s.store.GrantHistory(ctx, now, chartStep, chartBars)
	if err != nil {
		return fail("history", err)
	}
	switch term, err := s.store.CurrentTerm(ctx, syncer.LeaderJob); {
	case err == nil:
		v.Leader = &leaderView{ID: term.LeaderID, Epoch: term.Epoch, Since: ago(now, term.Since)}
	case !errors.Is(err, storage.ErrNotFound):
		return fail("term", err)
	}
	if cur := chainCursor(cursors); cur != nil {
		v.Chain = &chainView{TipHeight: cur.Height, LastSuccess: agoPtr(now, cur.LastSuccess), Failing: cur.LastError != ""}
	}
	jobsOf := syncOf(cursors)
	for _, p := range pools {
		pv := poolView{ID: p.ID, Asset: p.Asset, Program: p.Program, Synced: p.SyncedAt != nil, Counts: counts[p.ID],
			Live: liveCounts[p.ID], ChartHeight: chartH, ChartWidth: chartW}
		pv.Bars, pv.ChartMax, pv.Granted = barsOf(history[p.ID], now)
		jobs := jobsOf[p.ID]
		for _, job := range slices.Sorted(maps.Keys(jobs)) {
			j := jobs[job]
			pv.Sync = append(pv.Sync, syncView{Job: job, Height: j.Height, Behind: j.BlocksBehind,
				LastSuccess: agoPtr(now, j.LastSuccess), Failing: j.LastError != ""})
		}
		v.Pools = append(v.Pools, pv)
	}
	for _, n := range liveCounts {
		v.LiveTotal += n
	}
	for _, r := range live {
		v.Live = append(v.Live, liveView{Pool: r.PoolID, State: r.State, Age: ago(now, r.CreatedAt),
			ExpiresIn: ago(r.ExpiresAt, now), UTXOs: len(storage.SplitHashes(r.Hashes))})
	}
	return v
}

// probe runs one health check with its latency.
func (s *server) probe(c *fiber.Ctx, fn func(ctx context.Context) error) healthView {
	ctx, cancel := context.WithTimeout(c.UserContext(), probeTimeout)
	defer cancel()
	start := time.Now()
	if err := fn(ctx); err != nil {
		s.log.Warn("status page: health check failed", "request_id", requestID(c), "err", err)
		return healthView{}
	}
	return healthView{OK: true, Latency: time.Since(start).Round(100 * time.Microsecond).String()}
}

// barsOf lays counts out as the bars of an SVG chart of chartW x chartH,
// oldest first; it returns the bars, the largest count and the total.
func barsOf(counts []int64, now time.Time) ([]chartBar, int64, int64) {
	if len(counts) == 0 {
		counts = make([]int64, chartBars)
	}
	var peak, total int64
	for _, n := range counts {
		peak, total = max(peak, n), total+n
	}
	w := chartW / len(counts)
	bars := make([]chartBar, len(counts))
	for i, n := range counts {
		h := 1 // an empty interval still shows as a line
		if peak > 0 {
			h = max(h, int(n*int64(chartH-2)/peak))
		}
		from := now.Add(-time.Duration(len(counts)-i) * chartStep).UTC()
		bars[i] = chartBar{X: i * w, Y: chartH - h, W: max(1, w-1), H: h,
			Title: fmt.Sprintf("%s-%s UTC: %d", from.Format("15:04"), from.Add(chartStep).Format("15:04"), n)}
	}
	return bars, peak, total
}

// ago renders how long before now t was, coarsely ("3m 12s").
func ago(now, t time.Time) string {
	d := max(0, now.Sub(t)).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm %ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func agoPtr(now time.Time, t *time.Time) string {
	if t == nil {
		return "never"
	}
	return ago(now, *t) + " ago"
}
