package handlers

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bufferd/bufferd/metrics"
)

// sample is a line of a scraped /metrics: its name and labels.
type sample struct {
	name   string
	labels map[string]string
	line   string
}

var labelRE = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

// scrape GETs /metrics through the app and parses the text exposition.
func scrape(t *testing.T, app *fiber.App) []sample {
	t.Helper()
	resp, err := app.Test(httptest.NewRequest(http.MethodGet, "/metrics", nil), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var out []sample
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s := sample{line: line, labels: map[string]string{}}
		name, rest, _ := strings.Cut(line, "{")
		if i := strings.IndexByte(name, ' '); i >= 0 {
			name = name[:i]
		}
		s.name = name
		if j := strings.LastIndexByte(rest, '}'); j >= 0 {
			for _, m := range labelRE.FindAllStringSubmatch(rest[:j], -1) {
				s.labels[m[1]] = m[2]
			}
		}
		out = append(out, s)
	}
	return out
}

// hexRE finds anything shaped like a reservation id (32 hex), a UTXO hash or
// tx id (64 hex), or an asset or program.
var hexRE = regexp.MustCompile(`[0-9a-fA-F]{32,}`)

func TestMetricsCountRequestsByRouteTemplate(t *testing.T) {
	f := newResFixture(t, 100, 200, 300)
	reg := prometheus.NewRegistry()
	app := f.newApp(Config{Metrics: reg})
	f.app = app

	outcomes := map[string]float64{}
	for _, o := range metrics.Outcomes {
		outcomes[o] = testutil.ToFloat64(metrics.ReservationOutcomes.WithLabelValues(o))
	}
	reqs := func(method, route, code string) float64 {
		return testutil.ToFloat64(metrics.HTTPRequests.WithLabelValues(method, route, code))
	}
	before := map[string]float64{
		"reserve": reqs("POST", "/v1/reservations", "201"),
		"get":     reqs("GET", "/v1/reservations/:id", "200"),
		"get404":  reqs("GET", "/v1/reservations/:id", "404"),
		"extend":  reqs("POST", "/v1/reservations/:id/extend", "200"),
		"release": reqs("DELETE", "/v1/reservations/:id", "200"),
		"nope":    reqs("GET", metrics.RouteUnmatched, "404"),
		"legacy":  reqs("POST", "/dapp/update-utxo", "200"),
	}

	a := f.reserveOK(fmt.Sprintf(`{"pool":%d,"amount":100}`, f.pool.ID))
	f.getRes(a.ID)
	if status, b := f.call(http.MethodPost, "/v1/reservations/"+a.ID+"/extend", `{"ttl_seconds":60}`); status != 200 {
		t.Fatalf("extend: %d %s", status, b)
	}
	tx := randHex(t, 32)
	if status, b := f.call(http.MethodPost, "/v1/reservations/"+a.ID+"/submit", `{"tx_id":"`+tx+`"}`); status != 200 {
		t.Fatalf("submit: %d %s", status, b)
	}
	// Submitting the same transaction again changes nothing and is not counted.
	if status, b := f.call(http.MethodPost, "/v1/reservations/"+a.ID+"/submit", `{"tx_id":"`+tx+`"}`); status != 200 {
		t.Fatalf("submit again: %d %s", status, b)
	}
	b2 := f.reserveOK(fmt.Sprintf(`{"pool":%d,"amount":200}`, f.pool.ID))
	if status, b := f.call(http.MethodDelete, "/v1/reservations/"+b2.ID, ""); status != http.StatusOK {
		t.Fatalf("release: %d %s", status, b)
	}
	// Releasing again answers 200 too, but is not counted as an outcome.
	if status, b := f.call(http.MethodDelete, "/v1/reservations/"+b2.ID, ""); status != http.StatusOK {
		t.Fatalf("release again: %d %s", status, b)
	}
	status, b := f.call(http.MethodPost, "/v1/reservations", fmt.Sprintf(`{"pool":%d,"amount":1000}`, f.pool.ID))
	wantError(t, "reserve too much", status, b, http.StatusConflict, "no_utxo_available")
	if status, _ := f.call(http.MethodGet, "/v1/reservations/"+randHex(t, 16), ""); status != http.StatusNotFound {
		t.Fatalf("unknown reservation: %d", status)
	}
	if status, _ := f.call(http.MethodGet, "/nope/"+randHex(t, 32), ""); status != http.StatusNotFound {
		t.Fatalf("unknown route: %d", status)
	}
	if r := f.updateUTXO(f.utxos[2].Hash); r.Code != 200 {
		t.Fatalf("legacy update-utxo: %+v", r)
	}
	if r := f.updateUTXO(f.utxos[2].Hash); r.Code != 300 {
		t.Fatalf("legacy update-utxo of a held utxo: %+v", r)
	}

	for what, want := range map[string]float64{
		"reserve": before["reserve"] + 2, "get": before["get"] + 1, "get404": before["get404"] + 1,
		"extend": before["extend"] + 1, "release": before["release"] + 2, "nope": before["nope"] + 1,
		"legacy": before["legacy"] + 2,
	} {
		var got float64
		switch what {
		case "reserve":
			got = reqs("POST", "/v1/reservations", "201")
		case "get":
			got = reqs("GET", "/v1/reservations/:id", "200")
		case "get404":
			got = reqs("GET", "/v1/reservations/:id", "404")
		case "extend":
			got = reqs("POST", "/v1/reservations/:id/extend", "200")
		case "release":
			got = reqs("DELETE", "/v1/reservations/:id", "200")
		case "nope":
			got = reqs("GET", metrics.RouteUnmatched, "404")
		case "legacy":
			got = reqs("POST", "/dapp/update-utxo", "200")
		}
		if got != want {
			t.Errorf("requests %s: %v, want %v", what, got, want)
		}
	}
	for o, delta := range map[string]float64{
		metrics.OutcomeGranted: 3, metrics.OutcomeConflict: 2, metrics.OutcomeExtended: 1,
		metrics.OutcomeSubmitted: 1, metrics.OutcomeReleased: 1, metrics.OutcomeExpired: 0,
	} {
		if got := testutil.ToFloat64(metrics.ReservationOutcomes.WithLabelValues(o)); got != outcomes[o]+delta {
			t.Errorf("outcome %s: %v, want %v", o, got, outcomes[o]+delta)
		}
	}

	// The exposition: every series of the requests above, route templates only,
	// and no id, hash or tx id in any label anywhere.
	samples := scrape(t, app)
	// The counters are process-wide: other tests' apps (with CORS middleware
	// on /v1 and /dapp) count into them too.
	templates := map[string]bool{metrics.RouteUnmatched: true}
	for _, r := range f.newApp(Config{CORSOrigins: "*", LegacyCORSOrigins: "*"}).GetRoutes() {
		templates[r.Path] = true
	}
	var sawReserve, sawLatency, sawOutcome bool
	for _, s := range samples {
		for k, v := range s.labels {
			if hexRE.MatchString(v) {
				t.Errorf("label %s=%q carries an id or hash: %s", k, v, s.line)
			}
		}
		if strings.HasPrefix(s.name, "bufferd_http_") && !templates[s.labels["route"]] {
			t.Errorf("route label %q is not a route template: %s", s.labels["route"], s.line)
		}
		switch {
		case s.name == "bufferd_http_requests_total" && s.labels["route"] == "/v1/reservations" && s.labels["method"] == "POST" && s.labels["code"] == "201":
			sawReserve = true
		case s.name == "bufferd_http_request_duration_seconds_count" && s.labels["route"] == "/v1/reservations/:id/extend":
			sawLatency = true
		case s.name == "bufferd_reservation_outcomes_total" && s.labels["outcome"] == metrics.OutcomeInvalidated:
			sawOutcome = true
		}
	}
	if !sawReserve || !sawLatency || !sawOutcome {
		t.Fatalf("exposition lacks series: reserve %v latency %v outcome %v", sawReserve, sawLatency, sawOutcome)
	}
}

func TestMetricsNotGatherable(t *testing.T) {
	f := newFixture(t, 1)
	// A Registerer that cannot gather: the catalogue is registered, /metrics is 404.
	reg := prometheus.NewRegistry()
	app := f.newApp(Config{Metrics: prometheus.WrapRegistererWithPrefix("x_", reg)})
	if status, _ := do(t, app, http.MethodGet, "/metrics", ""); status != http.StatusNotFound {
		t.Fatalf("/metrics without a gatherer: %d", status)
	}
	families, err := reg.Gather()
	if err != nil || len(families) == 0 || !strings.HasPrefix(families[0].GetName(), "x_bufferd_") {
		t.Fatalf("catalogue not registered through the wrapper: %v %v", len(families), err)
	}
}

func TestV1BodyTooLarge(t *testing.T) {
	f := newResFixture(t, 1)
	base := serve(t, f.app)
	before := testutil.ToFloat64(metrics.HTTPRequests.WithLabelValues("POST", metrics.RouteUnmatched, "413"))
	// A raw connection: the server answers as soon as it reads Content-Length,
	// and an HTTP client still writing the body would see the reset instead.
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "POST /v1/reservations HTTP/1.1\r\nHost: bufferd\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"owner\":\"", bodyLimit+100); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	wantError(t, "big body", resp.StatusCode, b, http.StatusRequestEntityTooLarge, "body_too_large")
	if got := testutil.ToFloat64(metrics.HTTPRequests.WithLabelValues("POST", metrics.RouteUnmatched, "413")); got != before+1 {
		t.Fatalf("413 requests counted %v, want %v", got, before+1)
	}
	if free, _, _ := f.locks.PoolCounts(testCtx(t), f.pool.ID); free != 1 {
		t.Fatalf("a refused body changed the pool: %d free", free)
	}
}

func TestMetricsElsewhere(t *testing.T) {
	f := newFixture(t, 1)
	app := f.newApp(Config{Metrics: prometheus.NewRegistry(), MetricsElsewhere: true})
	if status, _ := do(t, app, http.MethodGet, "/metrics", ""); status != http.StatusNotFound {
		t.Fatalf("/metrics served elsewhere: %d on the API's app", status)
	}
	if status, _ := do(t, app, http.MethodGet, "/livez", ""); status != http.StatusOK {
		t.Fatalf("/livez: %d", status)
	}
}
