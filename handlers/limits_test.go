package handlers

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
)

func TestRateLimiterTokenBucket(t *testing.T) {
	l := newRateLimiter(2, 4) // 2 a second, bursts of 4
	t0 := time.Unix(1_000_000, 0)
	for i := range 4 {
		if ok, _ := l.take("a", t0); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := l.take("a", t0)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("past the burst: ok=%v wait=%v, want refused for 500ms", ok, wait)
	}
	if ok, _ := l.take("b", t0); !ok {
		t.Fatal("another client was limited")
	}
	if ok, _ := l.take("a", t0.Add(499*time.Millisecond)); ok {
		t.Fatal("a token before it was earned")
	}
	if ok, _ := l.take("a", t0.Add(500*time.Millisecond)); !ok {
		t.Fatal("the earned token was refused")
	}
	// A long pause refills to the burst, not beyond.
	later := t0.Add(time.Hour)
	for i := range 4 {
		if ok, _ := l.take("a", later); !ok {
			t.Fatalf("after a pause, request %d refused", i+1)
		}
	}
	if ok, _ := l.take("a", later); ok {
		t.Fatal("the bucket filled beyond the burst")
	}
	// The sweep at "later" forgot b, full again; a is tracked anew.
	if n := l.size(); n != 1 {
		t.Fatalf("tracking %d clients, want 1", n)
	}
	// A bucket still refilling survives a sweep (forgetting it would reset it).
	slow := newRateLimiter(0.001, 1) // refills in 1000 s
	slow.take("x", t0)
	slow.take("y", t0.Add(sweepEvery))
	if n := slow.size(); n != 2 {
		t.Fatalf("slow limiter tracks %d clients after a sweep, want 2", n)
	}
	if ok, _ := slow.take("x", t0.Add(sweepEvery)); ok {
		t.Fatal("the sweep reset a client in debt")
	}
	if newRateLimiter(0, 10) != nil || newRateLimiter(-1, 10) != nil {
		t.Fatal("a rate of 0 or less must mean no limiter")
	}
	if l := newRateLimiter(1, 0); l.burst != 1 {
		t.Fatalf("burst 0 became %v, want 1", l.burst)
	}
}

func TestReserveIsRateLimitedPerClient(t *testing.T) {
	f := newResFixture(t, 1, 2, 3, 4, 5, 6, 7, 8)
	f.app = f.newApp(Config{RateLimit: 0.001, RateBurst: 3, ProxyHeader: "X-Real-IP"})
	reserve := func(ip string) (int, []byte, http.Header) {
		req := newJSONRequest(t, "/v1/reservations", fmt.Sprintf(`{"pool":%d,"count":1,"ttl_seconds":60}`, f.pool.ID))
		req.Header.Set("X-Real-IP", ip)
		resp, err := f.app.Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b, resp.Header
	}
	var first resBody
	for i := range 3 {
		status, b, _ := reserve("192.0.2.1")
		if status != http.StatusCreated {
			t.Fatalf("reserve %d within the burst: %d %s", i+1, status, b)
		}
		if i == 0 {
			first = decode[resBody](t, b)
		}
	}
	status, b, h := reserve("192.0.2.1")
	wantError(t, "reserve past the burst", status, b, http.StatusTooManyRequests, "rate_limited")
	if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("Retry-After %q", h.Get("Retry-After"))
	}
	// Another client is not affected.
	if status, b, _ := reserve("192.0.2.2"); status != http.StatusCreated {
		t.Fatalf("another client: %d %s", status, b)
	}
	// The legacy reserve shares the client's bucket and answers in its envelope.
	req := newJSONRequest(t, "/dapp/update-utxo", fmt.Sprintf(`{"hash":%q}`, f.utxos[7].Hash))
	req.Header.Set("X-Real-IP", "192.0.2.1")
	resp, err := f.app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	lb, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || string(lb) != `{"code":300,"msg":"too many requests"}` {
		t.Fatalf("legacy update-utxo past the burst: %d %s", resp.StatusCode, lb)
	}
	if r := legacyCall(t, f.app, "/dapp/update-utxo", fmt.Sprintf(`{"hash":%q}`, f.utxos[7].Hash), "X-Real-IP", "192.0.2.3"); r.Code != 200 {
		t.Fatalf("legacy update-utxo from another client: %+v", r)
	}
	// Only reserving is limited: the limited client can still use its reservation.
	if status, b := do(t, f.app, http.MethodPost, "/v1/reservations/"+first.ID+"/extend", `{"ttl_seconds":60}`, "X-Real-IP", "192.0.2.1"); status != 200 {
		t.Fatalf("extend by a limited client: %d %s", status, b)
	}
	if status, b := do(t, f.app, http.MethodGet, "/v1/pools", "", "X-Real-IP", "192.0.2.1"); status != 200 {
		t.Fatalf("list pools by a limited client: %d %s", status, b)
	}
}

func TestReserveIsNotLimitedWhenOff(t *testing.T) {
	f := newResFixture(t, 1)
	for i := range 30 {
		status, b := f.call(http.MethodPost, "/v1/reservations", fmt.Sprintf(`{"pool":%d,"count":1}`, f.pool.ID))
		if status == http.StatusTooManyRequests {
			t.Fatalf("request %d limited with no limit configured: %s", i+1, b)
		}
	}
}

func TestCORS(t *testing.T) {
	f := newFixture(t, 1)
	app := f.newApp(Config{CORSOrigins: "https://app.example, https://other.example", LegacyCORSOrigins: "*"})
	preflight := func(app *fiber.App, path, origin string) *http.Response {
		req := httptest.NewRequest(http.MethodOptions, path, nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", http.MethodPost)
		req.Header.Set("Access-Control-Request-Headers", "content-type,idempotency-key")
		resp, err := app.Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp
	}
	resp := preflight(app, "/v1/reservations", "https://app.example")
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") ||
		!strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "idempotency-key") ||
		resp.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("v1 preflight from an allowed origin: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := preflight(app, "/v1/reservations", "https://evil.example"); resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("v1 preflight from another origin allowed: %v", resp.Header)
	}
	if resp := preflight(app, "/dapp/update-utxo", "https://evil.example"); resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("legacy preflight: %d %v", resp.StatusCode, resp.Header)
	}
	// A real request gets the header and sees Retry-After and the request id.
	req := httptest.NewRequest(http.MethodGet, "/v1/pools", nil)
	req.Header.Set("Origin", "https://other.example")
	resp, err := app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://other.example" ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Retry-After") {
		t.Fatalf("v1 GET with an allowed origin: %d %v", resp.StatusCode, resp.Header)
	}
	// Not configured: no CORS headers at all.
	plain := f.newApp(Config{LegacyCORSOrigins: "none"})
	for _, path := range []string{"/v1/reservations", "/dapp/update-utxo"} {
		if resp := preflight(plain, path, "https://app.example"); resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("%s: CORS without configuration: %v", path, resp.Header)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := []Config{
		{},
		{CORSOrigins: "*", LegacyCORSOrigins: "*", RateLimit: 50, RateBurst: 100},
		{CORSOrigins: "https://app.example, http://localhost:3000", LegacyCORSOrigins: "https://app.example/"},
		{CORSOrigins: "none", LegacyCORSOrigins: "NONE"},
	}
	for _, c := range good {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	bad := []Config{
		{CORSOrigins: "app.example"},
		{CORSOrigins: "https://app.example/path"},
		{CORSOrigins: "https://*.example"},
		{LegacyCORSOrigins: "ftp://files.example"},
		{CORSOrigins: "https://a.example,*"},
		{RateLimit: -1},
		{RateBurst: -1},
	}
	for _, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
