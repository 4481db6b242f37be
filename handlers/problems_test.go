package handlers

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/bufferd/bufferd/client"
	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
)

// problemJSON is the problem answer of code with detail, without its request_id.
func problemJSON(code, detail string) string {
	pt := problemCodes[code]
	b, _ := json.Marshal(problem{Type: problemTypeBase + code, Title: pt.Title, Status: pt.Status, Detail: detail, Code: code})
	return string(b)
}

// withoutRequestID checks that b is a problem with a request_id and returns
// it encoded again without that id.
func withoutRequestID(t *testing.T, b []byte) string {
	t.Helper()
	var p problem
	if err := json.Unmarshal(b, &p); err != nil || p.RequestID == "" {
		t.Errorf("not a problem with a request_id: %s", b)
	}
	p.RequestID = ""
	out, _ := json.Marshal(p)
	return string(out)
}

// Every non-legacy error is an RFC 9457 problem: problem+json, type, title,
// status, detail, and the code and request_id extensions; the title and
// status are the code's own. Unknown routes, 405, 413 and 429 included.
func TestProblemDetails(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	app := f.newApp(Config{RateLimit: 0.001, RateBurst: 1})
	reserve := fmt.Sprintf(`{"pool":%d,"count":1,"ttl_seconds":5}`, f.pool.ID)
	for _, x := range []struct {
		method, target, body string
		status               int
		code, detail         string
	}{
		{"GET", "/v1/pools/424242", "", 404, "pool_not_found", "pool not found"},
		{"GET", "/v1/transactions?pool=424242", "", 404, "pool_not_found", "pool not found"},
		{"GET", "/v1/nothing", "", 404, "not_found", "route not found"},
		{"GET", "/nothing", "", 404, "not_found", "route not found"},
		{"PUT", "/v1/pools", "{}", 405, "method_not_allowed", "method not allowed"},
		{"GET", "/v1/reservations/" + strings.Repeat("0", 32), "", 404, "reservation_not_found", "reservation not found"},
		{"GET", fmt.Sprintf("/v1/pools/%d/utxos?limit=1001", f.pool.ID), "", 400, "bad_request", "limit must be an integer from 1 to 1000"},
		{"POST", "/v1/pools", "{}", 401, "unauthorized", "a valid admin token is required"},
		{"POST", "/v1/reservations", reserve, 201, "", ""},
		{"POST", "/v1/reservations", reserve, 429, "rate_limited", "too many reservation requests from this client, retry later"},
	} {
		what := x.method + " " + x.target
		req := httptest.NewRequest(x.method, x.target, strings.NewReader(x.body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := app.Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != x.status {
			t.Errorf("%s: %d %s; want %d", what, resp.StatusCode, b, x.status)
			continue
		}
		if x.code == "" {
			continue
		}
		if ct := resp.Header.Get("Content-Type"); ct != mimeProblemJSON {
			t.Errorf("%s: Content-Type %q, want %s", what, ct, mimeProblemJSON)
		}
		if got, want := withoutRequestID(t, b), problemJSON(x.code, x.detail); got != want {
			t.Errorf("%s:\n got %s\nwant %s", what, got, want)
		}
		var p problem
		_ = json.Unmarshal(b, &p)
		if p.RequestID != resp.Header.Get("X-Request-ID") {
			t.Errorf("%s: request_id %q, X-Request-ID %q", what, p.RequestID, resp.Header.Get("X-Request-ID"))
		}
		if pt := problemCodes[x.code]; pt.Status != x.status {
			t.Errorf("%s: code %s has status %d in problemCodes", what, x.code, pt.Status)
		}
	}

	// 413: refused before any route runs.
	base := serve(t, f.app)
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/reservations", nil)
	req.ContentLength = bodyLimit + 1
	req.Header.Set("Content-Type", "application/json")
	req.Body = io.NopCloser(strings.NewReader(strings.Repeat(" ", bodyLimit+1)))
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 413 || resp.Header.Get("Content-Type") != mimeProblemJSON ||
			string(b) != problemJSON("body_too_large", "request body too large") { // no request id yet: refused before the middleware
			t.Errorf("413: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
	} // else: the server may close before the body is sent; sendHead covers it in TestOpenAPIEveryRoute
}

// One name per error: the codes of problemCodes are those of openapi.yaml's
// ProblemCode (its enum and its x-problem-types table, with the same status
// and title), and every code a response of the document names is one of them.
func TestProblemCodesMatchSpec(t *testing.T) {
	t.Parallel()
	doc, err := openAPI()
	if err != nil {
		t.Fatal(err)
	}
	schema := doc.Components.Schemas["ProblemCode"]
	if schema == nil || schema.Value == nil {
		t.Fatal("openapi.yaml has no ProblemCode schema")
	}
	var enum []string
	for _, v := range schema.Value.Enum {
		enum = append(enum, v.(string))
	}
	slices.Sort(enum)
	codes := slices.Sorted(maps.Keys(problemCodes))
	if !slices.Equal(enum, codes) {
		t.Errorf("ProblemCode enum %v\nproblemCodes    %v", enum, codes)
	}
	raw, err := json.Marshal(schema.Value.Extensions["x-problem-types"])
	if err != nil {
		t.Fatal(err)
	}
	var table map[string]problemType
	if err := json.Unmarshal(raw, &table); err != nil {
		t.Fatalf("x-problem-types: %v", err)
	}
	if !maps.Equal(table, problemCodes) {
		t.Errorf("x-problem-types %v\nproblemCodes    %v", table, problemCodes)
	}

	// Codes named by the responses (code: {enum: [...]}).
	js, err := json.Marshal(doc.Paths)
	if err != nil {
		t.Fatal(err)
	}
	comp, _ := json.Marshal(doc.Components.Responses)
	for _, b := range [][]byte{js, comp} {
		var walk func(v any)
		walk = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				if c, ok := v["code"].(map[string]any); ok {
					if e, ok := c["enum"].([]any); ok {
						for _, code := range e {
							if s, ok := code.(string); ok {
								if _, known := problemCodes[s]; !known {
									t.Errorf("the document names code %q, unknown to problemCodes", s)
								}
							}
						}
					}
				}
				for _, x := range v {
					walk(x)
				}
			case []any:
				for _, x := range v {
					walk(x)
				}
			}
		}
		var v any
		_ = json.Unmarshal(b, &v)
		walk(v)
	}
}

// Legacy routes keep the legacy envelope everywhere: an unknown /dapp path
// and a wrong method answer HTTP 404 (as the original, gin, did for both)
// with {"code":300,"msg":"route not found"}, never a v1 problem.
func TestLegacyNoRoute(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, x := range []struct{ method, target string }{
		{"POST", "/dapp/nothing"},
		{"GET", "/dapp/list-utxos"},
		{"PUT", "/dapp/update-utxo"},
		{"GET", "/dapp"},
		{"POST", "/DAPP/Nothing"},
	} {
		req := httptest.NewRequest(x.method, x.target, strings.NewReader("{}"))
		resp, err := f.app.Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 404 || string(b) != `{"code":300,"msg":"route not found"}` ||
			resp.Header.Get("Content-Type") != legacyContentType {
			t.Errorf("%s %s: %d %q %s", x.method, x.target, resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
	}
}

// With its Redis killed, the legacy routes that need Redis say the service
// is unavailable (code 300, HTTP 200 as always), not "internal error".
func TestLegacyRedisDown(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t)
	rdb := srv.Client()
	t.Cleanup(func() { _ = rdb.Close() })
	f := newFixtureOn(t, migrated.Postgres(t), rdb, "legacydown", 1, 2)
	list := fmt.Sprintf(`{"asset":%q,"program":%q}`, f.pool.Asset, f.pool.Program)
	lock := fmt.Sprintf(`{"hash":%q}`, f.utxos[0].Hash)

	srv.Kill()
	app := f.newApp(Config{Locks: lockmgr.New(rdb, lockmgr.Options{Prefix: "legacydown"})})
	for _, x := range []struct{ path, body string }{{"/dapp/list-utxos", list}, {"/dapp/update-utxo", lock}} {
		status, b := do(t, app, http.MethodPost, x.path, x.body)
		if status != 200 || string(b) != `{"code":300,"msg":"service unavailable, retry later"}` {
			t.Errorf("%s with Redis down: %d %s", x.path, status, b)
		}
	}
}

// The server answers with the client module's codes, all of them: one
// vocabulary for both sides.
func TestProblemCodesAreTheClients(t *testing.T) {
	if len(client.Codes) != len(problemCodes) {
		t.Errorf("the client knows %d codes, the server %d", len(client.Codes), len(problemCodes))
	}
	for _, code := range client.Codes {
		if _, ok := problemCodes[code]; !ok {
			t.Errorf("the client knows %q, which the server never answers", code)
		}
	}
}
