package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bufferd/bufferd/handlers"
	"github.com/bufferd/bufferd/internal/testenv"
)

// scrapeMetrics GETs url/metrics and returns the exposition.
func scrapeMetrics(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s/metrics: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

func wantSeries(t *testing.T, what, exposition string, prefixes ...string) {
	t.Helper()
	for _, p := range prefixes {
		if !strings.Contains("\n"+exposition, "\n"+p) {
			t.Errorf("%s /metrics lacks %q", what, p)
		}
	}
}

// hasSeries reports whether the exposition has a sample of metric whose
// labels include label.
func hasSeries(exposition, metric, label string) bool {
	for _, l := range strings.Split(exposition, "\n") {
		if strings.HasPrefix(l, metric+"{") && strings.Contains(l[:strings.IndexByte(l, '}')+1], label) {
			return true
		}
	}
	return false
}

// The dev process wires the protections from its flags, serves the metrics
// of the API, the sync jobs and both connection pools, and is ready.
func TestDevServesMetricsAndAppliesProtections(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	api := "http://" + addr
	p := start(t, nil, "dev", "--data", t.TempDir(), "--addr", addr,
		"--chain-addr", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		"--reserve-rate", "0.01", "--reserve-burst", "2", "--cors-origins", "https://app.example")
	p.waitLine(t, "bufferd dev is ready", 30*time.Second)
	waitHTTP(t, api+"/readyz", 10*time.Second)

	codes := make([]int, 3)
	for i := range codes {
		resp, err := http.Post(api+"/v1/reservations", "application/json",
			strings.NewReader(`{"pool":1,"count":1,"ttl_seconds":30}`))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		codes[i] = resp.StatusCode
	}
	if codes[0] != 201 || codes[1] != 201 || codes[2] != http.StatusTooManyRequests {
		t.Fatalf("three reserves with a burst of 2: %v, want 201 201 429", codes)
	}
	req, _ := http.NewRequest(http.MethodOptions, api+"/v1/reservations", nil)
	req.Header.Set("Origin", "https://app.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}

	m := scrapeMetrics(t, api)
	wantSeries(t, "dev", m,
		`bufferd_http_requests_total{code="429",method="POST",route="/v1/reservations"} 1`,
		`bufferd_reservation_outcomes_total{outcome="granted"} 2`,
		`bufferd_sync_leader 1`,
		// bufferd 2: dev indexes the simulated node (job "index") instead of
		// listing its UTXOs through blockcenter (job "utxo").
		`bufferd_sync_runs_total{job="index",result="success"}`,
		`bufferd_sync_blocks_behind{pool="1"} 0`,
		`bufferd_redis_pool_connections{state="total"}`,
		`go_sql_open_connections{db_name="bufferd"}`,
		`process_cpu_seconds_total`,
	)
	// The pool's freshness, which the README says to alert on, whichever job
	// keeps the pool in step with the chain.
	if !hasSeries(m, "bufferd_sync_last_success_timestamp_seconds", `pool="1"`) {
		t.Errorf("dev /metrics has no bufferd_sync_last_success_timestamp_seconds of pool 1")
	}
	p.stop(t)

	// A bad origin stops the process at start.
	cmd := exec.Command(binary, "dev", "--data", t.TempDir(), "--addr", "127.0.0.1:0", "--chain-addr", "127.0.0.1:0",
		"--cors-origins", "app.example")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not an origin") {
		t.Fatalf("bad origin: %v %s", err, out)
	}
}

// The syncer serves its metrics, the pool statistics included, on
// BUFFERD_METRICS_ADDR, and counts as the leader while it runs.
func TestSyncerServesMetrics(t *testing.T) {
	t.Parallel()
	dbURL := testenv.Postgres(t)
	_, prefix := testenv.Redis(t)
	ops := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	env := []string{
		"BUFFERD_DATABASE_URL=" + dbURL,
		"BUFFERD_REDIS_URL=" + testenv.RedisURL(),
		"BUFFERD_REDIS_PREFIX=" + prefix,
		"BUFFERD_CHAIN_URL=http://127.0.0.1:1", // no chain: the jobs fail, the endpoints serve
		"BUFFERD_CHAIN_TIMEOUT=200ms",
		"BUFFERD_METRICS_ADDR=" + ops,
	}
	migrate := exec.Command(binary, "migrate", "up")
	migrate.Env = append(os.Environ(), env...)
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v %s", err, out)
	}
	p := start(t, env, "syncer")
	waitHTTP(t, "http://"+ops+"/livez", 20*time.Second)
	// bufferd 2: a syncer whose chain source fails is not ready, and says why.
	waitNotReady(t, "http://"+ops+"/readyz", "chain", 20*time.Second)
	var m string
	testenv.Eventually(t, 10*time.Second, testenv.Is(func() bool {
		m = scrapeMetrics(t, "http://"+ops)
		return strings.Contains(m, "\nbufferd_sync_leader 1")
	}))
	wantSeries(t, "syncer", m,
		`bufferd_sync_leader 1`,
		`bufferd_sync_leader_changes_total 1`,
		`bufferd_reservation_outcomes_total{outcome="expired"} 0`,
		`bufferd_fencing_rejections_total 0`,
		`bufferd_redis_pool_connections{state="idle"}`,
		`bufferd_redis_pool_hits_total`,
		`go_sql_max_open_connections{db_name="bufferd"}`,
	)
	p.stop(t)
}

// waitNotReady waits until url answers 503 in the API's readiness shape
// (handlers.Readiness) with check failed.
func waitNotReady(t *testing.T, url, check string, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		var body handlers.Readiness
		if resp.StatusCode == http.StatusServiceUnavailable && json.Unmarshal(b, &body) == nil &&
			body.Status == "unavailable" && body.Checks[check] == "fail" {
			return nil
		}
		return fmt.Errorf("%s did not answer 503 failing check %q: %d %s", url, check, resp.StatusCode, b)
	})
}

// With BUFFERD_API_METRICS_ADDR the API serves /metrics (with
// bufferd_build_info), /livez and /readyz there, and its public address keeps
// /livez and /readyz but no longer answers /metrics.
func TestAPIServesMetricsOnItsOwnPort(t *testing.T) {
	t.Parallel()
	_, prefix := testenv.Redis(t)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	ops := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	env := []string{
		"BUFFERD_DATABASE_URL=" + testenv.Postgres(t),
		"BUFFERD_REDIS_URL=" + testenv.RedisURL(),
		"BUFFERD_REDIS_PREFIX=" + prefix,
		"BUFFERD_ADDR=" + addr,
		"BUFFERD_API_METRICS_ADDR=" + ops,
	}
	migrate := exec.Command(binary, "migrate", "up")
	migrate.Env = append(os.Environ(), env...)
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v %s", err, out)
	}
	p := start(t, env, "api")
	waitHTTP(t, "http://"+addr+"/readyz", 20*time.Second)
	waitHTTP(t, "http://"+ops+"/readyz", 20*time.Second)
	wantSeries(t, "api", scrapeMetrics(t, "http://"+ops), `bufferd_build_info{goversion="go`, `bufferd_http_requests_total{`)
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("public GET /metrics: %d, want 404", resp.StatusCode)
	}
	p.stop(t)
}
