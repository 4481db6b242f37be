package handlers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/gofiber/fiber/v2"

	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

// oaChecker sends real requests to an app and validates each request and each
// response against the OpenAPI document, recording which operations it saw.
type oaChecker struct {
	t      *testing.T
	doc    *openapi3.T
	router routers.Router
	seen   map[string]bool // "METHOD /path/{template}"
	bases  map[*fiber.App]string
}

func newOAChecker(t *testing.T) *oaChecker {
	t.Helper()
	doc, err := openAPI()
	if err != nil {
		t.Fatalf("openapi document: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	return &oaChecker{t: t, doc: doc, router: router, seen: map[string]bool{}, bases: map[*fiber.App]string{}}
}

// The page at /docs is validated as text; kin-openapi has no text/html decoder of its own.
func init() { openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder) }

// exchange is one request and the status it must get.
type exchange struct {
	method, target, body string
	header               []string // name, value, name, value...
	status               int
	// invalid marks a request that breaks the document on purpose: request
	// validation must refuse it (and the server too, which status checks).
	invalid bool
	// oversized marks a body over the limit. app.Test reports those as its own
	// error, so the request goes over a loopback connection, and only its head:
	// the server refuses it from Content-Length, and a body it never reads
	// would race its close (a reset instead of the answer).
	oversized bool
}

// bearerAuth accepts exactly the test token, as the server does.
func bearerAuth(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if in.SecurityScheme.Type != "http" || in.SecurityScheme.Scheme != "bearer" {
		return fmt.Errorf("unexpected security scheme %q", in.SecuritySchemeName)
	}
	if in.RequestValidationInput.Request.Header.Get("Authorization") != "Bearer "+testToken {
		return errors.New("no valid bearer token")
	}
	return nil
}

// response is what the app answered.
type response struct {
	status int
	header http.Header
	body   []byte
}

// send runs x through app and validates both sides; it returns the answer.
func (c *oaChecker) send(app *fiber.App, x exchange) response {
	c.t.Helper()
	what := x.method + " " + x.target
	var resp *http.Response
	var err error
	if x.oversized {
		resp, err = c.sendHead(app, x)
	} else {
		req := httptest.NewRequest(x.method, x.target, bodyReader(x.body))
		setHeaders(req, x)
		resp, err = app.Test(req, -1)
	}
	if err != nil {
		c.t.Fatalf("%s: %v", what, err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		c.t.Fatalf("%s: read body: %v", what, err)
	}
	got := response{status: resp.StatusCode, header: resp.Header, body: body}
	if got.status != x.status {
		c.t.Fatalf("%s: HTTP %d %s; want %d", what, got.status, body, x.status)
	}

	input := c.requestInput(x)
	err = openapi3filter.ValidateRequest(context.Background(), input)
	switch {
	case x.invalid && err == nil:
		c.t.Errorf("%s %s: the document accepts a request the test means to be invalid", what, x.body)
	case !x.invalid && err != nil:
		c.t.Errorf("%s %s: request does not match the document: %v", what, truncate(x.body, 200), err)
	}
	if err := c.validateResponse(input, got); err != nil {
		c.t.Errorf("%s: response %d %s does not match the document: %v", what, got.status, truncate(string(body), 300), err)
	}
	return got
}

// sendHead sends the head of x (its Content-Length included, its body not)
// to app served on a loopback listener, and reads the answer.
func (c *oaChecker) sendHead(app *fiber.App, x exchange) (*http.Response, error) {
	base, ok := c.bases[app]
	if !ok {
		base = serve(c.t, app)
		c.bases[app] = base
	}
	req, err := http.NewRequest(x.method, base+x.target, nil)
	if err != nil {
		return nil, err
	}
	setHeaders(req, x)
	conn, err := net.DialTimeout("tcp", req.URL.Host, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.t.Cleanup(func() { _ = conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return nil, err
	}
	var head strings.Builder
	fmt.Fprintf(&head, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", x.method, req.URL.RequestURI(), req.URL.Host, len(x.body))
	if err := req.Header.Write(&head); err != nil {
		return nil, err
	}
	head.WriteString("\r\n")
	if _, err := io.WriteString(conn, head.String()); err != nil {
		return nil, err
	}
	return http.ReadResponse(bufio.NewReader(conn), req)
}

// requestInput finds x's operation in the document and records it as seen.
func (c *oaChecker) requestInput(x exchange) *openapi3filter.RequestValidationInput {
	c.t.Helper()
	req := httptest.NewRequest(x.method, x.target, bodyReader(x.body))
	setHeaders(req, x)
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		c.t.Fatalf("%s %s: no operation in the document: %v", x.method, x.target, err)
	}
	c.seen[x.method+" "+route.Path] = true
	return &openapi3filter.RequestValidationInput{
		Request:    req,
		PathParams: params,
		Route:      route,
		Options:    &openapi3filter.Options{AuthenticationFunc: bearerAuth, MultiError: true},
	}
}

// validateResponse checks an answer against the operation of input; a status
// the operation does not document is an error.
func (c *oaChecker) validateResponse(input *openapi3filter.RequestValidationInput, r response) error {
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: input,
		Status:                 r.status,
		Header:                 r.header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	return openapi3filter.ValidateResponse(context.Background(), out.SetBodyBytes(r.body))
}

func bodyReader(body string) io.Reader {
	if body == "" {
		return nil
	}
	return strings.NewReader(body)
}

func setHeaders(req *http.Request, x exchange) {
	if x.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(x.header); i += 2 {
		req.Header.Set(x.header[i], x.header[i+1])
	}
}

// fiberParamRE matches a fiber path parameter (":id").
var fiberParamRE = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// appOperations lists the app's routes as "METHOD /path/{param}", leaving out
// middleware and the HEAD route fiber adds for every GET.
func appOperations(app *fiber.App) []string {
	routes := app.GetRoutes(true)
	gets := map[string]bool{}
	for _, r := range routes {
		if r.Method == fiber.MethodGet {
			gets[r.Path] = true
		}
	}
	var out []string
	for _, r := range routes {
		if r.Method == fiber.MethodHead && gets[r.Path] {
			continue
		}
		op := r.Method + " " + fiberParamRE.ReplaceAllString(r.Path, "{$1}")
		if !slices.Contains(out, op) {
			out = append(out, op)
		}
	}
	slices.Sort(out)
	return out
}

// docOperations lists the document's operations as "METHOD /path".
func docOperations(doc *openapi3.T) []string {
	var out []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, method+" "+path)
		}
	}
	slices.Sort(out)
	return out
}

// coverageProblems reports every route the app serves that the document lacks
// or the test did not exercise, and every documented operation the app does
// not serve.
func coverageProblems(app *fiber.App, doc *openapi3.T, seen map[string]bool) []string {
	served := appOperations(app)
	documented := docOperations(doc)
	var out []string
	for _, op := range served {
		switch {
		case !slices.Contains(documented, op):
			out = append(out, op+": served but not in the document")
		case !seen[op]:
			out = append(out, op+": not exercised by the test")
		}
	}
	for _, op := range documented {
		if !slices.Contains(served, op) {
			out = append(out, op+": documented but not served")
		}
	}
	return out
}

// truncate cuts s to at most n bytes for a message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// TestOpenAPIEveryRoute sends real requests to every route (successes and
// error cases) and validates each request and response against the document.
func TestOpenAPIEveryRoute(t *testing.T) {
	f := newResFixture(t, 10, 20, 30, 40, 50, 60, 70, 80)
	c := newOAChecker(t)
	ctx := testCtx(t)
	app := f.app
	auth := []string{"Authorization", "Bearer " + testToken}
	pool := f.pool
	hash := func(i int) string { return f.utxos[i].Hash }
	unknownHash := strings.Repeat("ab", 32)
	unknownRes := strings.Repeat("0", 32)

	// Data that makes every schema show up: a sync cursor and a confirmed balance row.
	last := time.Now().UTC()
	if err := f.store.SaveCursor(ctx, storage.SyncCursor{PoolID: pool.ID, Job: "utxo", Height: 42,
		BlockHash: strings.Repeat("c", 64), Epoch: 1, LastSuccess: &last}); err != nil {
		t.Fatal(err)
	}
	address := "bm1qexampleaddress0000000000000000000000"
	if err := f.store.AddBalance(ctx, storage.Balance{Address: address, Asset: pool.Asset, Amount: -15, TxID: randHex(t, 32)}); err != nil {
		t.Fatal(err)
	}
	rows, err := f.store.ListBalances(ctx, address, pool.Asset)
	if err != nil || len(rows) != 1 {
		t.Fatalf("balances %v %v", rows, err)
	}
	if err := f.store.SetBalanceState(ctx, []int64{rows[0].ID}, storage.BalanceConfirmed, false); err != nil {
		t.Fatal(err)
	}

	// Operations.
	c.send(app, exchange{method: "GET", target: "/livez", status: 200})
	c.send(app, exchange{method: "GET", target: "/readyz", status: 200})
	notReady := f.newApp(Config{Ready: func(context.Context) error { return errors.New("not yet") }})
	c.send(notReady, exchange{method: "GET", target: "/readyz", status: 503})
	spec := c.send(app, exchange{method: "GET", target: "/openapi.json", status: 200})
	var served map[string]any
	if err := json.Unmarshal(spec.body, &served); err != nil || served["openapi"] != "3.0.3" {
		t.Fatalf("openapi.json: %v %.100s", err, spec.body)
	}
	page := c.send(app, exchange{method: "GET", target: "/docs", status: 200})
	if !strings.Contains(string(page.body), "/v1/reservations/{id}/extend") {
		t.Error("/docs does not show the extend route")
	}
	c.send(app, exchange{method: "GET", target: "/metrics", status: 200})

	// Legacy.
	c.send(app, exchange{method: "HEAD", target: "/dapp", status: 200})
	listBody := fmt.Sprintf(`{"asset":%q,"program":%q,"sort":{"by":"amount","order":"asc"}}`, pool.Asset, pool.Program)
	c.send(app, exchange{method: "POST", target: "/dapp/list-utxos?start=0&limit=2", body: listBody, status: 200})
	c.send(app, exchange{method: "POST", target: "/dapp/list-utxos", body: listBody, status: 200})
	c.send(app, exchange{method: "POST", target: "/dapp/list-utxos", status: 200, invalid: true,
		body: fmt.Sprintf(`{"asset":%q,"program":%q,"sort":{"order":"asc; DROP TABLE utxos"}}`, pool.Asset, pool.Program)})
	c.send(app, exchange{method: "POST", target: "/dapp/list-utxos?limit=0", body: listBody, status: 200, invalid: true})

	c.send(app, exchange{method: "POST", target: "/dapp/list-balances", status: 200,
		body: fmt.Sprintf(`{"address":%q,"asset":%q}`, address, pool.Asset)})
	c.send(app, exchange{method: "POST", target: "/dapp/list-balances", status: 200, invalid: true,
		body: fmt.Sprintf(`{"address":"","asset":%q}`, pool.Asset)})

	newAsset, newProgram := randHex(t, 32), "0014"+randHex(t, 20)
	apBody := fmt.Sprintf(`{"asset":%q,"program":%q}`, newAsset, newProgram)
	c.send(app, exchange{method: "POST", target: "/dapp/update-base", body: apBody, header: auth, status: 200})
	c.send(app, exchange{method: "POST", target: "/dapp/update-base", body: apBody, status: 200, invalid: true})
	c.send(app, exchange{method: "POST", target: "/dapp/update-base", body: `{"asset":"xyz","program":"00"}`, header: auth, status: 200, invalid: true})

	c.send(app, exchange{method: "POST", target: "/dapp/update-utxo", body: fmt.Sprintf(`{"hash":%q}`, hash(0)), status: 200})
	locked := c.send(app, exchange{method: "POST", target: "/dapp/update-utxo", body: fmt.Sprintf(`{"hash":%q}`, hash(0)), status: 200})
	if !strings.Contains(string(locked.body), msgLocked) {
		t.Fatalf("second update-utxo: %s", locked.body)
	}
	c.send(app, exchange{method: "POST", target: "/dapp/update-utxo", body: fmt.Sprintf(`{"hash":%q}`, unknownHash), status: 200})
	c.send(app, exchange{method: "POST", target: "/dapp/update-utxo", body: `{}`, status: 200, invalid: true})

	c.send(app, exchange{method: "POST", target: "/dapp/update-balance", status: 200,
		body: fmt.Sprintf(`{"address":%q,"asset":%q,"amount":25,"tx_id":%q}`, address, pool.Asset, randHex(t, 32))})
	c.send(app, exchange{method: "POST", target: "/dapp/update-balance", status: 200, invalid: true,
		body: fmt.Sprintf(`{"address":%q,"asset":%q,"amount":0,"tx_id":%q}`, address, pool.Asset, randHex(t, 32))})

	// v1 pools.
	v1Asset, v1Program := randHex(t, 32), "51"
	v1Body := fmt.Sprintf(`{"asset":%q,"program":%q}`, v1Asset, v1Program)
	c.send(app, exchange{method: "POST", target: "/v1/pools", body: v1Body, header: auth, status: 201})
	c.send(app, exchange{method: "POST", target: "/v1/pools", body: v1Body, header: auth, status: 200})
	unauth := c.send(app, exchange{method: "POST", target: "/v1/pools", body: v1Body, status: 401, invalid: true})
	if unauth.header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	c.send(app, exchange{method: "POST", target: "/v1/pools", body: `{"asset":"zz","program":"0"}`, header: auth, status: 400, invalid: true})
	// The pool's settings: from_height and unconfirmed, and bad values of them.
	optBody := fmt.Sprintf(`{"asset":%q,"program":"52","from_height":1000,"unconfirmed":false}`, v1Asset)
	if p := decode[poolJSON](t, c.send(app, exchange{method: "POST", target: "/v1/pools", body: optBody, header: auth, status: 201}).body); p.FromHeight != 1000 || p.Unconfirmed || p.Synced {
		t.Fatalf("created with options: %+v", p)
	}
	for _, bad := range []string{`"from_height":-1`, `"from_height":"1000"`, `"unconfirmed":"no"`, `"start":1`} {
		c.send(app, exchange{method: "POST", target: "/v1/pools", header: auth, status: 400, invalid: true,
			body: fmt.Sprintf(`{"asset":%q,"program":"53",%s}`, v1Asset, bad)})
	}
	// A valid body padded past the limit: the document allows it, the size does not.
	c.send(app, exchange{method: "POST", target: "/v1/pools", body: v1Body + strings.Repeat(" ", bodyLimit), header: auth, status: 413, oversized: true})

	c.send(app, exchange{method: "GET", target: "/v1/pools", status: 200})
	c.send(app, exchange{method: "GET", target: fmt.Sprintf("/v1/pools/%d", pool.ID), status: 200})
	c.send(app, exchange{method: "GET", target: "/v1/pools/999999999", status: 404})
	c.send(app, exchange{method: "GET", target: "/v1/pools/abc", status: 400, invalid: true})

	first := c.send(app, exchange{method: "GET", target: fmt.Sprintf("/v1/pools/%d/utxos?state=available&limit=2", pool.ID), status: 200})
	next := decode[utxoPage](t, first.body).NextCursor
	if next == "" {
		t.Fatalf("first page has no next_cursor: %s", first.body)
	}
	c.send(app, exchange{method: "GET", target: fmt.Sprintf("/v1/pools/%d/utxos?cursor=%s", pool.ID, next), status: 200})
	c.send(app, exchange{method: "GET", target: fmt.Sprintf("/v1/pools/%d/utxos?state=burnt", pool.ID), status: 400, invalid: true})
	c.send(app, exchange{method: "GET", target: fmt.Sprintf("/v1/pools/%d/utxos?limit=1001", pool.ID), status: 400, invalid: true})
	c.send(app, exchange{method: "GET", target: "/v1/pools/999999999/utxos", status: 404})

	// v1 reservations.
	reserve := func(body string, status int, header ...string) response {
		t.Helper()
		return c.send(app, exchange{method: "POST", target: "/v1/reservations", body: body, header: header, status: status})
	}
	byCount := decode[resBody](t, reserve(fmt.Sprintf(`{"pool":%d,"count":1,"ttl_seconds":60,"owner":"alice"}`, pool.ID), 201).body)
	byAmount := decode[resBody](t, reserve(fmt.Sprintf(`{"asset":%q,"program":%q,"amount":55,"combine":true}`, pool.Asset, pool.Program), 201).body)
	byHash := decode[resBody](t, reserve(fmt.Sprintf(`{"pool":%d,"hashes":[%q],"wait_seconds":0}`, pool.ID, hash(7)), 201).body)
	idem := []string{"Idempotency-Key", "order-42"}
	idemBody := fmt.Sprintf(`{"pool":%d,"count":1}`, pool.ID)
	reserve(idemBody, 201, idem...)
	replay := reserve(idemBody, 200, idem...)
	if replay.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay without Idempotent-Replayed: %v", replay.header)
	}
	reserve(fmt.Sprintf(`{"pool":%d,"hashes":[%q]}`, pool.ID, hash(0)), 409)     // held by the legacy lock
	reserve(fmt.Sprintf(`{"pool":%d,"hashes":[%q]}`, pool.ID, unknownHash), 404) // utxo_not_found
	reserve(`{"pool":999999999,"count":1}`, 404)                                 // pool_not_found
	reserve(fmt.Sprintf(`{"pool":%d,"amount":1000000}`, pool.ID), 409)           // no_utxo_available
	// An amount as a decimal string: best fit 40.
	if r := decode[resBody](t, reserve(fmt.Sprintf(`{"pool":%d,"amount":"35"}`, pool.ID), 201).body); len(r.UTXOs) != 1 || r.UTXOs[0].Amount != 40 {
		t.Fatalf("amount as a string: %+v", r)
	}
	// The same key with another request: 422, nothing reserved.
	reused := c.send(app, exchange{method: "POST", target: "/v1/reservations", body: fmt.Sprintf(`{"pool":%d,"count":2}`, pool.ID),
		header: idem, status: 422})
	if e := decode[apiErr](t, reused.body); e.Code != "idempotency_key_reused" {
		t.Fatalf("key reused: %s", reused.body)
	}
	// The same key while its first request is still in flight: 409 with Retry-After.
	gate := newGateJournal(t, f.store)
	t.Cleanup(gate.open)
	gated := f.newApp(Config{Locks: f.newLocks(gate)})
	inFlight := []string{"Idempotency-Key", "order-43"}
	firstDone := make(chan int, 1)
	go func() {
		req := newJSONRequest(t, "/v1/reservations", idemBody)
		req.Header.Set(inFlight[0], inFlight[1])
		resp, err := gated.Test(req, -1)
		if err != nil {
			firstDone <- 0
			return
		}
		_ = resp.Body.Close()
		firstDone <- resp.StatusCode
	}()
	gate.waitEntered(t)
	inUse := c.send(gated, exchange{method: "POST", target: "/v1/reservations", body: idemBody, header: inFlight, status: 409})
	if e := decode[apiErr](t, inUse.body); e.Code != "idempotency_key_in_use" || inUse.header.Get("Retry-After") == "" {
		t.Fatalf("key in use: %v %s", inUse.header, inUse.body)
	}
	gate.open()
	if status := <-firstDone; status != http.StatusCreated {
		t.Fatalf("the gated first request answered %d", status)
	}
	for _, bad := range []string{
		`{"count":1}`, // no pool
		fmt.Sprintf(`{"pool":%d,"asset":%q,"program":"51","count":1}`, pool.ID, pool.Asset), // pool twice
		fmt.Sprintf(`{"pool":%d,"count":1,"amount":5}`, pool.ID),                            // two modes
		fmt.Sprintf(`{"pool":%d,"count":1,"combine":true}`, pool.ID),                        // combine without amount
		fmt.Sprintf(`{"pool":%d,"count":1,"ttl_seconds":3601}`, pool.ID),
		fmt.Sprintf(`{"pool":%d,"count":1,"owner":"legacy"}`, pool.ID),
		fmt.Sprintf(`{"pool":%d,"count":1,"color":"red"}`, pool.ID),
		fmt.Sprintf(`{"pool":%d,"hashes":[%q,%q]}`, pool.ID, hash(1), hash(1)),
	} {
		c.send(app, exchange{method: "POST", target: "/v1/reservations", body: bad, status: 400, invalid: true})
	}
	c.send(app, exchange{method: "POST", target: "/v1/reservations", body: idemBody, status: 400, invalid: true,
		header: []string{"Idempotency-Key", strings.Repeat("k", 129)}})
	c.send(app, exchange{method: "POST", target: "/v1/reservations", body: idemBody + strings.Repeat(" ", bodyLimit), status: 413, oversized: true})

	// One reservation a client may make at once: 429 with Retry-After for the next.
	limited := f.newApp(Config{RateLimit: 0.01, RateBurst: 1})
	c.send(limited, exchange{method: "POST", target: "/v1/reservations", body: fmt.Sprintf(`{"pool":%d,"amount":1000000}`, pool.ID), status: 409})
	c.send(limited, exchange{method: "POST", target: "/v1/reservations", body: fmt.Sprintf(`{"pool":%d,"count":1}`, pool.ID), status: 429})
	if r := c.send(limited, exchange{method: "POST", target: "/dapp/update-utxo", body: fmt.Sprintf(`{"hash":%q}`, hash(1)), status: 200}); !strings.Contains(string(r.body), `"code":300`) {
		t.Fatalf("rate-limited update-utxo: %s", r.body)
	}

	// A pool Redis lost: 503 rebuilding with Retry-After.
	lost, _ := f.addPool(randHex(t, 32), "52", 5)
	if err := f.rdb.Del(ctx, fmt.Sprintf("%s{p%d}:ready", f.prefix, lost.ID)).Err(); err != nil {
		t.Fatal(err)
	}
	reserve(fmt.Sprintf(`{"pool":%d,"count":1}`, lost.ID), 503)

	resPath := func(id string) string { return "/v1/reservations/" + id }
	c.send(app, exchange{method: "GET", target: resPath(byCount.ID), status: 200})
	c.send(app, exchange{method: "GET", target: resPath(unknownRes), status: 404})
	c.send(app, exchange{method: "GET", target: resPath("not-an-id"), status: 404, invalid: true})

	extend := func(id, body string, status int, invalid bool) {
		t.Helper()
		c.send(app, exchange{method: "POST", target: resPath(id) + "/extend", body: body, status: status, invalid: invalid})
	}
	extend(byCount.ID, `{"ttl_seconds":120}`, 200, false)
	extend(byCount.ID, `{"ttl_seconds":0}`, 400, true)
	extend(byCount.ID, `{}`, 400, true)
	extend(unknownRes, `{"ttl_seconds":120}`, 404, false)

	tx := randHex(t, 32)
	submit := func(id, body string, status int, invalid bool) {
		t.Helper()
		c.send(app, exchange{method: "POST", target: resPath(id) + "/submit", body: body, status: status, invalid: invalid})
	}
	submit(byAmount.ID, fmt.Sprintf(`{"tx_id":%q}`, tx), 200, false)
	submit(byAmount.ID, fmt.Sprintf(`{"tx_id":%q}`, tx), 200, false) // the same tx again: a no-op
	submit(byAmount.ID, fmt.Sprintf(`{"tx_id":%q}`, randHex(t, 32)), 409, false)
	submit(byAmount.ID, `{"tx_id":"abc"}`, 400, true)
	submit(unknownRes, fmt.Sprintf(`{"tx_id":%q}`, tx), 404, false)
	extend(byAmount.ID, `{"ttl_seconds":120}`, 409, false) // reservation_submitted
	c.send(app, exchange{method: "GET", target: resPath(byAmount.ID), status: 200})

	released := c.send(app, exchange{method: "DELETE", target: resPath(byHash.ID), status: 200})
	if again := c.send(app, exchange{method: "DELETE", target: resPath(byHash.ID), status: 200}); !bytes.Equal(again.body, released.body) {
		t.Fatalf("release again: %s, first %s", again.body, released.body)
	}
	c.send(app, exchange{method: "DELETE", target: resPath(byAmount.ID), status: 409}) // reservation_submitted
	c.send(app, exchange{method: "DELETE", target: resPath(unknownRes), status: 404})
	c.send(app, exchange{method: "DELETE", target: resPath("not-an-id"), status: 404, invalid: true})
	c.send(app, exchange{method: "GET", target: resPath(byHash.ID), status: 200}) // released, from the journal
	extend(byHash.ID, `{"ttl_seconds":120}`, 410, false)
	submit(byHash.ID, fmt.Sprintf(`{"tx_id":%q}`, tx), 410, false)

	c.send(app, exchange{method: "GET", target: "/v1/status", status: 200})
	exerciseStatusRoutes(c, f) // status_test.go

	// A block: it spends the legacy-held UTXO and the submitted reservation's
	// (which is settled spent), and creates an immature coinbase output and
	// one of the largest amount. The chain's tip is 7 blocks further.
	spender := randHex(t, 32)
	block := spendBlock(pool.ID, 43, map[string]string{hash(0): spender, byAmount.UTXOs[0].Hash: tx},
		storage.CrawledTx{TxID: spender,
			Inputs:  []storage.TxIO{{Address: address, Asset: pool.Asset, Amount: 10, UTXO: hash(0)}},
			Outputs: []storage.TxIO{{Address: address, Asset: pool.Asset, Amount: 1<<64 - 1}}})
	coinbase, big := randHex(t, 32), randHex(t, 32)
	block.Outputs = []storage.IndexedOutput{
		{PoolID: pool.ID, Hash: coinbase, Asset: pool.Asset, Amount: 5, TxID: randHex(t, 32), Height: 43, ValidHeight: 143, State: storage.StateImmature},
		{PoolID: pool.ID, Hash: big, Asset: pool.Asset, Amount: 1<<64 - 1, TxID: spender, Height: 43, State: storage.StateAvailable},
	}
	f.applyBlock(block)
	if err := f.store.SaveCursor(ctx, storage.SyncCursor{PoolID: 0, Job: syncer.JobChain, Height: 50,
		BlockHash: strings.Repeat("e", 64), LastSuccess: &last}); err != nil {
		t.Fatal(err)
	}
	c.send(app, exchange{method: "DELETE", target: resPath(byAmount.ID), status: 410}) // settled spent
	if g := decode[resBody](t, c.send(app, exchange{method: "GET", target: resPath(byAmount.ID), status: 200}).body); g.State != "spent" {
		t.Fatalf("settled reservation: %+v", g)
	}
	detail := c.send(app, exchange{method: "GET", target: fmt.Sprintf("/v1/pools/%d", pool.ID), status: 200})
	if d := decode[poolDetail](t, detail.body); d.Counts.Immature != 1 || d.Sync["index"].BlocksBehind == nil ||
		*d.Sync["index"].BlocksBehind != 7 || d.Sync["utxo"].BlocksBehind != nil || !d.Synced {
		t.Fatalf("pool after the block: %s", detail.body)
	}
	st := c.send(app, exchange{method: "GET", target: "/v1/status", status: 200})
	if !strings.Contains(string(st.body), `"chain":{"tip_height":50,`) || !strings.Contains(string(st.body), `"blocks_behind":7`) {
		t.Fatalf("status after the block: %s", st.body)
	}
	imm := c.send(app, exchange{method: "GET", target: fmt.Sprintf("/v1/pools/%d/utxos?state=immature", pool.ID), status: 200})
	if p := decode[utxoPage](t, imm.body); len(p.UTXOs) != 1 || p.UTXOs[0].Hash != coinbase || p.UTXOs[0].Height != 43 ||
		p.UTXOs[0].ValidHeight != 143 || !p.UTXOs[0].Confirmed {
		t.Fatalf("immature utxos: %s", imm.body)
	}
	all := c.send(app, exchange{method: "GET", target: fmt.Sprintf("/v1/pools/%d/utxos", pool.ID), status: 200})
	if !strings.Contains(string(all.body), fmt.Sprintf(`{"hash":%q,"asset":%q,"amount":18446744073709551615,"state":"available","confirmed":true,"height":43,"valid_height":0}`, big, pool.Asset)) {
		t.Fatalf("utxos: %s", all.body)
	}

	// The recorded transaction, listed, filtered by address, and bad queries.
	txPath := fmt.Sprintf("/v1/transactions?pool=%d", pool.ID)
	c.send(app, exchange{method: "GET", target: txPath, status: 200})
	c.send(app, exchange{method: "GET", target: txPath + "&address=" + address + "&limit=1", status: 200})
	c.send(app, exchange{method: "GET", target: "/v1/transactions", status: 400, invalid: true})
	c.send(app, exchange{method: "GET", target: txPath + "&cursor=x", status: 400, invalid: true})
	c.send(app, exchange{method: "GET", target: "/v1/transactions?pool=999999", status: 404})

	// PostgreSQL gone: every route answers 503 with Retry-After.
	db, err := f.store.DB().DB()
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	c.send(app, exchange{method: "GET", target: "/readyz", status: 503})
	c.send(app, exchange{method: "GET", target: "/v1/pools", status: 503})
	c.send(app, exchange{method: "GET", target: fmt.Sprintf("/v1/pools/%d", pool.ID), status: 503})
	c.send(app, exchange{method: "GET", target: fmt.Sprintf("/v1/pools/%d/utxos", pool.ID), status: 503})
	c.send(app, exchange{method: "GET", target: txPath, status: 503})
	c.send(app, exchange{method: "POST", target: "/v1/pools", body: v1Body, header: auth, status: 503})
	c.send(app, exchange{method: "GET", target: "/v1/status", status: 503})
	exerciseStatusRoutesDown(c, f) // status_test.go
	c.send(app, exchange{method: "GET", target: resPath(byCount.ID), status: 503})
	// A release takes effect in Redis: the journal learns it later.
	c.send(app, exchange{method: "DELETE", target: resPath(byCount.ID), status: 200})
	c.send(app, exchange{method: "DELETE", target: resPath(unknownRes), status: 503})
	reserve(fmt.Sprintf(`{"pool":%d,"count":1}`, pool.ID), 503)

	for _, p := range coverageProblems(app, c.doc, c.seen) {
		t.Error(p)
	}
}

// TestOpenAPIValidationCanFail shows that the checks above reject what does
// not match the document: wrong bodies, statuses and headers, and routes
// missing from it.
func TestOpenAPIValidationCanFail(t *testing.T) {
	c := newOAChecker(t)
	okID := strings.Repeat("a", 32)
	hash := strings.Repeat("b", 64)
	reservation := func(mutate func(m map[string]any)) []byte {
		m := map[string]any{
			"id": okID, "fence": 1, "pool": 3, "owner": "", "state": "held",
			"utxos":      []any{map[string]any{"hash": hash, "asset": hash, "amount": 10}},
			"expires_at": "2030-01-02T03:04:05.000Z",
		}
		mutate(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	reserveReq := exchange{method: "POST", target: "/v1/reservations", body: `{"pool":3,"count":1}`}
	jsonHeader := http.Header{"Content-Type": []string{"application/json"}}
	releaseReq := exchange{method: "DELETE", target: "/v1/reservations/" + okID}
	released := func(mutate func(m map[string]any)) []byte {
		return reservation(func(m map[string]any) {
			m["state"], m["created_at"], m["updated_at"] = "released", "2030-01-02T03:04:05.000Z", "2030-01-02T03:04:06.000Z"
			mutate(m)
		})
	}
	poolsReq := exchange{method: "GET", target: "/v1/pools"}
	poolList := func(mutate func(p map[string]any)) []byte {
		p := map[string]any{"id": 3, "asset": hash, "program": "51", "unconfirmed": true, "from_height": 0, "synced": true,
			"counts": map[string]any{"available": 1, "reserved": 0, "immature": 0, "spent": 0, "invalidated": 0}}
		mutate(p)
		b, err := json.Marshal(map[string]any{"pools": []any{p}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	utxosReq := exchange{method: "GET", target: "/v1/pools/3/utxos"}
	utxoPageOf := func(mutate func(u map[string]any)) []byte {
		u := map[string]any{"hash": hash, "asset": hash, "amount": uint64(1<<64 - 1), "state": "immature", "confirmed": true,
			"height": 7, "valid_height": 107}
		mutate(u)
		b, err := json.Marshal(map[string]any{"utxos": []any{u}, "next_cursor": ""})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	statusReq := exchange{method: "GET", target: "/v1/status"}
	statusOf := func(mutate func(m map[string]any)) []byte {
		cur := map[string]any{"height": 5, "block_hash": "", "epoch": 1, "last_success": nil, "last_error": "",
			"updated_at": "2030-01-02T03:04:05Z", "blocks_behind": 2}
		m := map[string]any{"leader": nil, "chain": map[string]any{"tip_height": 7, "tip_hash": hash, "last_success": nil,
			"last_error": "", "updated_at": "2030-01-02T03:04:05Z"}, "pools": []any{map[string]any{"id": 3, "sync": map[string]any{"index": cur}}}}
		mutate(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	errBody := func(code string) []byte {
		return []byte(`{"type":"https://bufferd.dev/problems/` + code + `","title":"T","status":` +
			strconv.Itoa(problemCodes[code].Status) + `,"detail":"x","code":"` + code + `"}`)
	}
	problemHeader := http.Header{"Content-Type": {mimeProblemJSON}}

	cases := []struct {
		name string
		x    exchange
		resp response
		ok   bool
	}{
		{"a good reservation", reserveReq, response{201, jsonHeader, reservation(func(map[string]any) {})}, true},
		{"unknown state", reserveReq, response{201, jsonHeader, reservation(func(m map[string]any) { m["state"] = "borrowed" })}, false},
		{"submitted in a reserve answer", reserveReq, response{201, jsonHeader, reservation(func(m map[string]any) { m["state"] = "submitted" })}, false},
		{"missing fence", reserveReq, response{201, jsonHeader, reservation(func(m map[string]any) { delete(m, "fence") })}, false},
		{"short hash", reserveReq, response{201, jsonHeader, reservation(func(m map[string]any) {
			m["utxos"] = []any{map[string]any{"hash": "abc", "asset": hash, "amount": 10}}
		})}, false},
		{"extra field", reserveReq, response{201, jsonHeader, reservation(func(m map[string]any) { m["secret"] = "x" })}, false},
		{"bad time", reserveReq, response{201, jsonHeader, reservation(func(m map[string]any) { m["expires_at"] = "tomorrow" })}, false},
		{"undocumented status", reserveReq, response{418, problemHeader, errBody("teapot")}, false},
		{"503 without Retry-After", reserveReq, response{503, http.Header{"Content-Type": {mimeProblemJSON}, "X-Request-Id": {"r1"}},
			errBody("unavailable")}, false},
		{"503 without X-Request-ID", reserveReq, response{503, http.Header{"Content-Type": {mimeProblemJSON}, "Retry-After": {"1"}},
			errBody("unavailable")}, false},
		{"503 with Retry-After", reserveReq, response{503, http.Header{"Content-Type": {mimeProblemJSON}, "Retry-After": {"1"}, "X-Request-Id": {"r1"}},
			errBody("unavailable")}, true},
		{"503 with an error code of another status", reserveReq, response{503, http.Header{"Content-Type": {mimeProblemJSON}, "Retry-After": {"1"}, "X-Request-Id": {"r1"}},
			errBody("no_utxo_available")}, false},
		{"409 with a code of another route", reserveReq, response{409, problemHeader, errBody("tx_mismatch")}, false},
		{"replay without Idempotent-Replayed", reserveReq, response{200, jsonHeader, reservation(func(map[string]any) {})}, false},
		{"replay of a released reservation", reserveReq, response{200, http.Header{"Content-Type": {"application/json"}, "Idempotent-Replayed": {"true"}},
			reservation(func(m map[string]any) { m["state"] = "released" })}, true},
		{"the largest amount", reserveReq, response{201, jsonHeader, reservation(func(m map[string]any) {
			m["utxos"] = []any{map[string]any{"hash": hash, "asset": hash, "amount": uint64(1<<64 - 1)}}
		})}, true},
		{"a negative amount", reserveReq, response{201, jsonHeader, reservation(func(m map[string]any) {
			m["utxos"] = []any{map[string]any{"hash": hash, "asset": hash, "amount": -1}}
		})}, false},
		{"an amount as a string in an answer", reserveReq, response{201, jsonHeader, reservation(func(m map[string]any) {
			m["utxos"] = []any{map[string]any{"hash": hash, "asset": hash, "amount": "10"}}
		})}, false},
		{"422 key reused", reserveReq, response{422, problemHeader, errBody("idempotency_key_reused")}, true},
		{"422 with another code", reserveReq, response{422, problemHeader, errBody("bad_request")}, false},
		{"409 key in use", reserveReq, response{409, http.Header{"Content-Type": {mimeProblemJSON}, "Retry-After": {"1"}},
			errBody("idempotency_key_in_use")}, true},
		{"release answered 204", releaseReq, response{204, http.Header{}, nil}, false},
		{"release answered released", releaseReq, response{200, jsonHeader, released(func(map[string]any) {})}, true},
		{"release answered held", releaseReq, response{200, jsonHeader, released(func(m map[string]any) { m["state"] = "held" })}, false},
		{"release answered without times", releaseReq, response{200, jsonHeader, released(func(m map[string]any) { delete(m, "updated_at") })}, false},
		{"release refused as submitted", releaseReq, response{409, problemHeader, errBody("reservation_submitted")}, true},
		{"release refused as locked", releaseReq, response{409, problemHeader, errBody("utxo_locked")}, false},
		{"release of an ended reservation", releaseReq, response{410, http.Header{"Content-Type": {mimeProblemJSON}, "X-Request-Id": {"r1"}},
			errBody("reservation_ended")}, true},
		{"a pool", poolsReq, response{200, jsonHeader, poolList(func(map[string]any) {})}, true},
		{"a pool without synced", poolsReq, response{200, jsonHeader, poolList(func(p map[string]any) { delete(p, "synced") })}, false},
		{"a pool with a negative from_height", poolsReq, response{200, jsonHeader, poolList(func(p map[string]any) { p["from_height"] = -1 })}, false},
		{"counts without immature", poolsReq, response{200, jsonHeader, poolList(func(p map[string]any) {
			p["counts"] = map[string]any{"available": 1, "reserved": 0, "spent": 0, "invalidated": 0}
		})}, false},
		{"pools 503 without Retry-After", poolsReq, response{503, http.Header{"Content-Type": {mimeProblemJSON}, "X-Request-Id": {"r1"}},
			errBody("unavailable")}, false},
		{"pools 503 rebuilding", poolsReq, response{503, http.Header{"Content-Type": {mimeProblemJSON}, "Retry-After": {"1"}, "X-Request-Id": {"r1"}},
			errBody("rebuilding")}, false},
		{"pools 503", poolsReq, response{503, http.Header{"Content-Type": {mimeProblemJSON}, "Retry-After": {"1"}, "X-Request-Id": {"r1"}},
			errBody("unavailable")}, true},
		{"an immature utxo", utxosReq, response{200, jsonHeader, utxoPageOf(func(map[string]any) {})}, true},
		{"a utxo without valid_height", utxosReq, response{200, jsonHeader, utxoPageOf(func(u map[string]any) { delete(u, "valid_height") })}, false},
		{"a utxo past the largest amount", utxosReq, response{200, jsonHeader, []byte(`{"utxos":[{"hash":"` + hash + `","asset":"` + hash +
			`","amount":18446744073709551616000,"state":"available","confirmed":true,"height":0,"valid_height":0}],"next_cursor":""}`)}, false},
		{"a status", statusReq, response{200, jsonHeader, statusOf(func(map[string]any) {})}, true},
		{"a status before any chain pass", statusReq, response{200, jsonHeader, statusOf(func(m map[string]any) { m["chain"] = nil })}, true},
		{"a status without chain", statusReq, response{200, jsonHeader, statusOf(func(m map[string]any) { delete(m, "chain") })}, false},
		{"a negative blocks_behind", statusReq, response{200, jsonHeader, statusOf(func(m map[string]any) {
			m["pools"].([]any)[0].(map[string]any)["sync"].(map[string]any)["index"].(map[string]any)["blocks_behind"] = -1
		})}, false},
		{"legacy envelope with both code 200 and no result",
			exchange{method: "POST", target: "/dapp/update-utxo", body: fmt.Sprintf(`{"hash":%q}`, hash)},
			response{200, jsonHeader, []byte(`{"code":200,"msg":""}`)}, false},
		{"legacy failure without a message",
			exchange{method: "POST", target: "/dapp/update-utxo", body: fmt.Sprintf(`{"hash":%q}`, hash)},
			response{200, jsonHeader, []byte(`{"code":300,"msg":""}`)}, false},
		{"legacy success",
			exchange{method: "POST", target: "/dapp/update-utxo", body: fmt.Sprintf(`{"hash":%q}`, hash)},
			response{200, jsonHeader, []byte(`{"code":200,"msg":"","result":{"data":null}}`)}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			input := c.requestInput(tc.x)
			if err := openapi3filter.ValidateRequest(context.Background(), input); err != nil {
				t.Fatalf("request: %v", err)
			}
			err := c.validateResponse(input, tc.resp)
			if tc.ok && err != nil {
				t.Fatalf("valid response refused: %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatalf("invalid response %d %s accepted", tc.resp.status, tc.resp.body)
			}
		})
	}

	t.Run("requests", func(t *testing.T) {
		for _, x := range []exchange{
			{method: "POST", target: "/v1/reservations", body: `{"pool":3}`},
			{method: "POST", target: "/v1/reservations", body: `{"pool":3,"count":1,"amount":2}`},
			{method: "POST", target: "/v1/reservations", body: `{"pool":3,"amount":0}`},
			{method: "POST", target: "/v1/reservations", body: `{"pool":3,"amount":1.5}`},
			{method: "POST", target: "/v1/reservations", body: `{"pool":3,"amount":"0"}`},
			{method: "POST", target: "/v1/reservations", body: `{"pool":3,"amount":"-5"}`},
			{method: "POST", target: "/v1/reservations", body: `{"pool":3,"amount":"x"}`},
			{method: "POST", target: "/v1/reservations", body: `{"pool":3,"amount":"1e3"}`},
			{method: "POST", target: "/v1/pools", header: []string{"Authorization", "Bearer " + testToken},
				body: fmt.Sprintf(`{"asset":%q,"program":"51","from_height":-1}`, hash)},
			{method: "POST", target: "/v1/pools", header: []string{"Authorization", "Bearer " + testToken},
				body: fmt.Sprintf(`{"asset":%q,"program":"51","unconfirmed":"yes"}`, hash)},
			{method: "POST", target: "/v1/pools", header: []string{"Authorization", "Bearer " + testToken},
				body: fmt.Sprintf(`{"asset":%q,"program":"51","color":"red"}`, hash)},
			{method: "POST", target: "/v1/reservations/" + okID + "/submit", body: `{"tx_id":"` + hash + `","x":1}`},
			{method: "POST", target: "/v1/pools", body: fmt.Sprintf(`{"asset":%q,"program":"51"}`, hash)}, // no token
			{method: "GET", target: "/v1/pools/0"},
		} {
			if err := openapi3filter.ValidateRequest(context.Background(), c.requestInput(x)); err == nil {
				t.Errorf("%s %s %s: accepted", x.method, x.target, x.body)
			}
		}
	})

	t.Run("valid requests", func(t *testing.T) {
		for _, x := range []exchange{
			{method: "POST", target: "/v1/reservations", body: `{"pool":3,"amount":18446744073709551615}`},
			{method: "POST", target: "/v1/reservations", body: `{"pool":3,"amount":"18446744073709551615","combine":true}`},
			{method: "POST", target: "/v1/pools", header: []string{"Authorization", "Bearer " + testToken},
				body: fmt.Sprintf(`{"asset":%q,"program":"51","from_height":350000,"unconfirmed":false}`, hash)},
		} {
			if err := openapi3filter.ValidateRequest(context.Background(), c.requestInput(x)); err != nil {
				t.Errorf("%s %s %s: refused: %v", x.method, x.target, x.body, err)
			}
		}
	})

	t.Run("coverage", func(t *testing.T) {
		app := New(Config{})
		app.Get("/v1/secret/:key", func(c *fiber.Ctx) error { return nil })
		problems := coverageProblems(app, c.doc, map[string]bool{})
		if !slices.Contains(problems, "GET /v1/secret/{key}: served but not in the document") {
			t.Errorf("an undocumented route went unnoticed: %v", problems)
		}
		if !slices.Contains(problems, "DELETE /v1/reservations/{id}: not exercised by the test") {
			t.Errorf("an unexercised route went unnoticed: %v", problems)
		}
		bare := fiber.New()
		bare.Get("/livez", func(c *fiber.Ctx) error { return nil })
		if problems := coverageProblems(bare, c.doc, map[string]bool{"GET /livez": true}); !slices.Contains(problems, "POST /v1/reservations: documented but not served") {
			t.Errorf("a documented but missing route went unnoticed: %v", problems)
		}
	})
}

// TestDocsPage checks /docs is one self-contained page generated from the document.
func TestDocsPage(t *testing.T) {
	sp, err := loadSpec()
	if err != nil {
		t.Fatal(err)
	}
	page := string(sp.html)
	for _, op := range docOperations(sp.doc) {
		method, path, _ := strings.Cut(op, " ")
		if !strings.Contains(page, `<span class="method `+method+`">`+method+`</span><code>`+path+`</code>`) {
			t.Errorf("/docs does not show %s", op)
		}
	}
	for name := range sp.doc.Components.Schemas {
		if !strings.Contains(page, `id="schema-`+name+`"`) {
			t.Errorf("/docs has no section for schema %s", name)
		}
	}
	// References link to their schema; nothing is loaded from elsewhere.
	if !strings.Contains(page, `<a href="#schema-Hash64">#/components/schemas/Hash64</a>`) {
		t.Error("schema references are not linked")
	}
	for _, external := range []string{"<script", "<link", "<img", "src=", "url(", "@import", `href="http`, `href="//`} {
		if strings.Contains(page, external) {
			t.Errorf("/docs is not self-contained: it contains %q", external)
		}
	}
	for _, tag := range []string{"reservations", "pools", "legacy", "operations", "status"} {
		if !strings.Contains(page, `id="tag-`+tag+`"`) {
			t.Errorf("/docs has no group for tag %s", tag)
		}
	}
	// Document text is escaped, not interpreted.
	if strings.Contains(page, "<Bearer") || !strings.Contains(page, "Authorization: Bearer &lt;admin token&gt;") {
		t.Error("description text is not HTML-escaped")
	}

	// The served JSON is the document.
	var doc map[string]any
	if err := json.Unmarshal(sp.json, &doc); err != nil {
		t.Fatal(err)
	}
	paths, _ := doc["paths"].(map[string]any)
	if len(paths) != sp.doc.Paths.Len() || !bytes.Contains(sp.json, []byte(`"/v1/reservations/{id}/submit"`)) {
		t.Errorf("openapi.json has %d paths, the document %d", len(paths), sp.doc.Paths.Len())
	}
}
