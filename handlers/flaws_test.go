package handlers

// One test per flaw of the original bufferserver (reference/original-bufferserver.md)
// that the HTTP layer fixes. Flaws 7-9 belong to the syncer and storage.

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
)

// Flaw 1: eight clients doing list -> pick first -> lock all "won" the same UTXO.
// Here each client retries until it wins one, and no UTXO is won twice.
func TestFlaw1DoubleAllocation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 10, 20, 30, 40, 50, 60, 70, 80)
	const clients = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		won  = map[string]int{}
		errs []string
	)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for attempt := 0; attempt < 50; attempt++ {
				body := fmt.Sprintf(`{"asset":%q,"program":%q,"sort":{"by":"amount","order":"desc"}}`, f.pool.Asset, f.pool.Program)
				r := legacyCall(t, f.app, "/dapp/list-utxos", body)
				var page struct {
					Data []legacyUTXO `json:"data"`
				}
				if err := json.Unmarshal(r.Result, &page); err != nil || len(page.Data) == 0 {
					continue
				}
				lock := legacyCall(t, f.app, "/dapp/update-utxo", fmt.Sprintf(`{"hash":%q}`, page.Data[0].Hash))
				if lock.Code == 200 {
					mu.Lock()
					won[page.Data[0].Hash]++
					mu.Unlock()
					return
				}
				if lock.Msg != msgLocked {
					mu.Lock()
					errs = append(errs, lock.Msg)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("unexpected lock failures: %v", errs)
	}
	if len(won) != clients {
		t.Fatalf("%d distinct UTXOs won by %d clients: %v", len(won), clients, won)
	}
	for h, n := range won {
		if n != 1 {
			t.Fatalf("utxo %s won %d times", h, n)
		}
	}
	if got := f.listUTXOs("", "desc"); len(got) != 0 {
		t.Fatalf("held UTXOs still listed: %v", got)
	}
}

// Flaw 2: {} or {"hash":""} locked the first UTXO; empty filters listed everything.
func TestFlaw2EmptyInput(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, 2, 3)
	for _, body := range []string{`{}`, `{"hash":""}`, `{"hash":null}`, `null`} {
		if r := f.legacy("/dapp/update-utxo", body); r.Code != 300 || r.Msg != errBadHash.Error() {
			t.Errorf("update-utxo %s: %+v", body, r)
		}
	}
	if got := f.listUTXOs("", "desc"); len(got) != 3 {
		t.Fatalf("empty update-utxo locked something: %d left", len(got))
	}
	for _, body := range []string{`{}`, `{"asset":""}`, `{"asset":"","program":""}`, fmt.Sprintf(`{"asset":%q}`, f.pool.Asset), fmt.Sprintf(`{"program":%q}`, f.pool.Program)} {
		if r := f.legacy("/dapp/list-utxos", body); r.Code != 300 || r.Result != nil {
			t.Errorf("list-utxos %s: %+v", body, r)
		}
	}
	for _, body := range []string{`{}`, `{"address":""}`, `{"address":"bm1q"}`, fmt.Sprintf(`{"asset":%q}`, f.pool.Asset)} {
		if r := f.legacy("/dapp/list-balances", body); r.Code != 300 || r.Result != nil {
			t.Errorf("list-balances %s: %+v", body, r)
		}
	}
	before := f.poolCount()
	if r := f.legacy("/dapp/update-base", `{}`, "Authorization", "Bearer "+testToken); r.Code != 300 {
		t.Errorf("update-base {}: %+v", r)
	}
	if r := f.legacy("/dapp/update-balance", `{}`); r.Code != 300 {
		t.Errorf("update-balance {}: %+v", r)
	}
	if f.poolCount() != before {
		t.Fatal("empty update-base created a pool")
	}
}

// Flaw 3: sort.order was pasted into ORDER BY.
func TestFlaw3SortOrderInjection(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, 2)
	for _, sort := range []string{
		`{"by":"amount","order":"desc; DROP TABLE utxos; --"}`,
		`{"by":"amount","order":"asc, (SELECT pg_sleep(5))"}`,
		`{"by":"amount","order":"DESC"}`,
		`{"by":"amount; DROP TABLE pools","order":"asc"}`,
		`{"by":"hash","order":"asc"}`,
	} {
		body := fmt.Sprintf(`{"asset":%q,"program":%q,"sort":%s}`, f.pool.Asset, f.pool.Program, sort)
		r := f.legacy("/dapp/list-utxos", body)
		if r.Code != 300 || !strings.HasPrefix(r.Msg, "sort.") {
			t.Errorf("sort %s: %+v", sort, r)
		}
	}
	// Everything is still there.
	if got := f.listUTXOs("", "asc"); len(got) != 2 || got[0].Amount != 1 {
		t.Fatalf("after injection attempts: %v", got)
	}
	if f.poolCount() != 1 {
		t.Fatal("pools table damaged")
	}
}

// Flaw 4: a read had a write side effect anyone could trigger, and durations
// never went back up. Here list-utxos only ever shortens the oldest legacy hold,
// to at most 60 s, never touches v1 holds and never lengthens anything.
func TestFlaw4ListHasNoUnboundedSideEffect(t *testing.T) {
	t.Parallel()
	f := newResFixture(t, 10, 20, 30)
	ctx := testCtx(t)
	v1Hash, legacyOld, legacyNew := f.utxos[0].Hash, f.utxos[1].Hash, f.utxos[2].Hash

	if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: f.pool.ID, Hashes: []string{v1Hash}, Owner: "dapp-user", TTL: 600 * time.Second}); err != nil {
		t.Fatal(err)
	}
	// Listing while something is free touches no hold.
	if got := f.listUTXOs("", "desc"); len(got) != 2 {
		t.Fatalf("list = %v", got)
	}
	if d, _ := f.heldFor(f.pool.ID, v1Hash); d < 590*time.Second {
		t.Fatalf("v1 hold changed by a list with free UTXOs: %v", d)
	}

	if r := f.updateUTXO(legacyOld); r.Code != 200 {
		t.Fatal(r)
	}
	time.Sleep(20 * time.Millisecond) // the clock must move between the two holds for their order to show
	if r := f.updateUTXO(legacyNew); r.Code != 200 {
		t.Fatal(r)
	}

	// A later page finding nothing is not "nothing free": no change.
	if got := f.listUTXOs("?start=100", "desc"); len(got) != 0 {
		t.Fatalf("page 2 = %v", got)
	}
	if d, _ := f.heldFor(f.pool.ID, legacyOld); d < 590*time.Second {
		t.Fatalf("a non-first page shortened a hold: %v", d)
	}

	for i := 0; i < 5; i++ {
		if got := f.listUTXOs("", "desc"); len(got) != 0 {
			t.Fatalf("list with everything held = %v", got)
		}
		dOld, heldOld := f.heldFor(f.pool.ID, legacyOld)
		dNew, heldNew := f.heldFor(f.pool.ID, legacyNew)
		dV1, heldV1 := f.heldFor(f.pool.ID, v1Hash)
		if !heldOld || !heldNew || !heldV1 {
			t.Fatalf("call %d: a hold vanished (%v %v %v)", i, heldOld, heldNew, heldV1)
		}
		if dOld > lockmgr.LegacyShortTTL {
			t.Fatalf("call %d: oldest legacy hold has %v left, want <= 60 s", i, dOld)
		}
		if dNew < 590*time.Second {
			t.Fatalf("call %d: newer legacy hold shortened to %v", i, dNew)
		}
		if dV1 < 590*time.Second {
			t.Fatalf("call %d: v1 hold shortened to %v", i, dV1)
		}
	}
	// The journal has the shortened expiry too, so it never says held
	// while Redis has freed the UTXO.
	var expires []time.Time
	if err := f.store.DB().WithContext(ctx).Raw(`SELECT expires_at FROM reservations WHERE pool_id = ? AND hashes IN ? ORDER BY hashes = ? DESC`,
		f.pool.ID, []string{legacyOld, legacyNew}, legacyOld).Scan(&expires).Error; err != nil || len(expires) != 2 {
		t.Fatalf("journal rows of the legacy holds: %v %v", expires, err)
	}
	if left := time.Until(expires[0]); left > lockmgr.LegacyShortTTL || left <= 0 {
		t.Errorf("journal: oldest legacy hold ends in %v, want within %v like in Redis", left, lockmgr.LegacyShortTTL)
	}
	if left := time.Until(expires[1]); left < 590*time.Second {
		t.Errorf("journal: newer legacy hold ends in %v, want untouched", left)
	}

	// A pool whose only hold is a v1 one: listing never shortens it.
	pool2, utxos2 := f.addPool(randHex(t, 32), "00", 5)
	if _, err := f.locks.Reserve(ctx, lockmgr.Request{PoolID: pool2.ID, Hashes: []string{utxos2[0].Hash}, Owner: "dapp-user", TTL: 300 * time.Second}); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"asset":%q,"program":"00"}`, pool2.Asset)
	for i := 0; i < 3; i++ {
		if r := f.legacy("/dapp/list-utxos", body); r.Code != 200 {
			t.Fatal(r)
		}
	}
	if d, held := f.heldFor(pool2.ID, utxos2[0].Hash); !held || d < 290*time.Second || d > 300*time.Second {
		t.Fatalf("v1-only pool: hold has %v left (held=%v), want ~300 s untouched", d, held)
	}
}

// Flaw 5: anyone could add a base, and duplicates were possible.
func TestFlaw5AdminAuth(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	asset, program := randHex(t, 32), "0014"+randHex(t, 20)
	body := fmt.Sprintf(`{"asset":%q,"program":%q}`, asset, program)
	before := f.poolCount()

	for _, hdr := range [][]string{
		nil,
		{"Authorization", "Bearer wrong"},
		{"Authorization", "Bearer " + testToken + "x"},
		{"Authorization", testToken},
		{"Authorization", "Basic " + testToken},
		{"Authorization", "Bearer "},
	} {
		if r := f.legacy("/dapp/update-base", body, hdr...); r.Code != 300 || r.Msg != msgUnauthorized {
			t.Errorf("update-base with %v: %+v", hdr, r)
		}
		if status, b := do(t, f.app, http.MethodPost, "/v1/pools", body, hdr...); status != http.StatusUnauthorized || !strings.Contains(string(b), `"code":"unauthorized"`) {
			t.Errorf("POST /v1/pools with %v: %d %s", hdr, status, b)
		}
	}
	if f.poolCount() != before {
		t.Fatal("an unauthorized request created a pool")
	}

	// No admin token configured: admin routes are refused whatever is sent.
	open := New(Config{Store: f.store, Locks: f.locks, Logger: slog.New(slog.NewTextHandler(f.logs, nil))})
	for _, hdr := range [][]string{{"Authorization", "Bearer "}, {"Authorization", "Bearer " + testToken}} {
		if r := legacyCall(t, open, "/dapp/update-base", body, hdr...); r.Code != 300 || r.Msg != msgUnauthorized {
			t.Errorf("no token configured, %v: %+v", hdr, r)
		}
	}
	if f.poolCount() != before {
		t.Fatal("a pool was created with no admin token configured")
	}

	// Authorized, twice and in another case: one pool.
	if r := f.legacy("/dapp/update-base", body, "Authorization", "Bearer "+testToken); r.Code != 200 || string(r.Result) != `{"data":null}` {
		t.Fatalf("update-base: %+v", r)
	}
	upper := fmt.Sprintf(`{"asset":%q,"program":%q}`, strings.ToUpper(asset), strings.ToUpper(program))
	if r := f.legacy("/dapp/update-base", upper, "Authorization", "bearer "+testToken); r.Code != 200 {
		t.Fatalf("update-base again: %+v", r)
	}
	if f.poolCount() != before+1 {
		t.Fatalf("pools %d, want %d", f.poolCount(), before+1)
	}
	if _, err := f.store.FindPool(testCtx(t), asset, program); err != nil {
		t.Fatalf("pool not stored in lower case: %v", err)
	}
}

// Flaw 6: update-balance trusted the client. Input is validated and rows are
// stored pending; only the syncer's verification makes them count.
func TestFlaw6UpdateBalanceValidated(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := testCtx(t)
	asset := f.pool.Asset
	tx := randHex(t, 32)
	mk := func(addr, asset, amount, tx string) string {
		return fmt.Sprintf(`{"address":%q,"asset":%q,"amount":%s,"tx_id":%q}`, addr, asset, amount, tx)
	}
	for _, body := range []string{
		mk("bm1qu", asset, "100", ""),
		mk("bm1qu", asset, "100", "deadbeef"),
		mk("bm1qu", asset, "100", strings.Repeat("z", 64)),
		mk("bm1qu", asset, "0", tx),
		mk("bm1qu", asset, `"100"`, tx),
		mk("bm1qu", asset, "1.5", tx),
		mk("bm1qu", asset, "1e30", tx),
		mk("", asset, "100", tx),
		mk("bm1qu", "btm", "100", tx),
	} {
		if r := f.legacy("/dapp/update-balance", body); r.Code != 300 {
			t.Errorf("update-balance %s accepted: %+v", body, r)
		}
	}
	if rows, err := f.store.ListBalances(ctx, "bm1qu", asset); err != nil || len(rows) != 0 {
		t.Fatalf("rejected input stored rows: %v %v", rows, err)
	}

	if r := f.legacy("/dapp/update-balance", mk("bm1qu", strings.ToUpper(asset), "-100", strings.ToUpper(tx))); r.Code != 200 || string(r.Result) != `{"data":null}` {
		t.Fatalf("valid update-balance: %+v", r)
	}
	rows, err := f.store.ListBalances(ctx, "bm1qu", asset)
	if err != nil || len(rows) != 1 {
		t.Fatalf("stored rows %v %v", rows, err)
	}
	if rows[0].State != storage.BalancePending || rows[0].TxID != tx || rows[0].Amount != -100 {
		t.Fatalf("stored %+v, want pending with the lower-case tx id", rows[0])
	}
	// Pending rows are not shown as balances.
	r := f.legacy("/dapp/list-balances", fmt.Sprintf(`{"address":"bm1qu","asset":%q}`, asset))
	if r.Code != 200 || string(r.Result) != `{"data":[]}` {
		t.Fatalf("list-balances shows unverified rows: %s", r.Result)
	}
	// Once the syncer confirms it, it is.
	if err := f.store.DB().WithContext(ctx).Model(&storage.Balance{}).Where("id = ?", rows[0].ID).
		Update("state", storage.BalanceConfirmed).Error; err != nil {
		t.Fatal(err)
	}
	r = f.legacy("/dapp/list-balances", fmt.Sprintf(`{"address":"bm1qu","asset":%q}`, asset))
	if !strings.Contains(string(r.Result), `"amount":-100`) {
		t.Fatalf("confirmed row not listed: %s", r.Result)
	}
}

// Flaw 10: internal and SQL errors reached clients. Here a closed database, a
// dead Redis and a panic all answer with a generic message; details go to the log.
func TestFlaw10NoInternalErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, 2)
	leaky := []string{"sql", "SQL", "database", "closed", "redis", "panic", "runtime", "goroutine", "nil pointer", ".go:"}
	checkClean := func(what string, b []byte) {
		t.Helper()
		for _, w := range leaky {
			if strings.Contains(string(b), w) {
				t.Errorf("%s leaks %q: %s", what, w, b)
			}
		}
	}
	listBody := fmt.Sprintf(`{"asset":%q,"program":%q}`, f.pool.Asset, f.pool.Program)
	legacyCalls := []struct{ path, body string }{
		{"/dapp/list-utxos", listBody},
		{"/dapp/update-utxo", fmt.Sprintf(`{"hash":%q}`, f.utxos[0].Hash)},
		{"/dapp/list-balances", fmt.Sprintf(`{"address":"bm1q","asset":%q}`, f.pool.Asset)},
		{"/dapp/update-base", listBody},
		{"/dapp/update-balance", fmt.Sprintf(`{"address":"bm1q","asset":%q,"amount":1,"tx_id":%q}`, f.pool.Asset, f.utxos[0].Hash)},
	}
	auth := []string{"Authorization", "Bearer " + testToken}

	t.Run("redis down", func(t *testing.T) {
		opt, err := redis.ParseURL(testenv.RedisURL())
		if err != nil {
			t.Fatal(err)
		}
		dead := redis.NewClient(opt)
		_ = dead.Close()
		app := f.newApp(Config{Locks: lockmgr.New(dead, lockmgr.Options{Prefix: f.prefix})})
		for _, c := range legacyCalls[:2] {
			status, b := do(t, app, http.MethodPost, c.path, c.body, auth...)
			if status != 200 || string(b) != `{"code":300,"msg":"service unavailable, retry later"}` {
				t.Errorf("%s: %d %s", c.path, status, b)
			}
			checkClean(c.path, b)
		}
		status, b := do(t, app, http.MethodGet, "/readyz", "")
		// readyz names the failed check, but not its error.
		if status != http.StatusServiceUnavailable || !strings.Contains(string(b), `"redis":"fail"`) || strings.Contains(string(b), "closed") {
			t.Errorf("readyz with redis down: %d %s", status, b)
		}
	})

	t.Run("panic", func(t *testing.T) {
		app := f.newApp(Config{Store: &storage.Store{}}) // no database handle: every store call panics
		status, b := do(t, app, http.MethodPost, "/dapp/list-utxos", listBody)
		if status != 200 || string(b) != `{"code":300,"msg":"internal error"}` {
			t.Errorf("legacy after panic: %d %s", status, b)
		}
		checkClean("legacy panic", b)
		status, b = do(t, app, http.MethodGet, "/v1/pools", "")
		if status != 500 || withoutRequestID(t, b) != problemJSON("internal", "internal error") {
			t.Errorf("v1 after panic: %d %s", status, b)
		}
		checkClean("v1 panic", b)
		if !strings.Contains(f.logs.String(), "panic") {
			t.Error("the panic was not logged")
		}
	})

	t.Run("database closed", func(t *testing.T) {
		db, err := f.store.DB().DB()
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		for _, c := range legacyCalls {
			status, b := do(t, f.app, http.MethodPost, c.path, c.body, auth...)
			if status != 200 || string(b) != `{"code":300,"msg":"service unavailable, retry later"}` {
				t.Errorf("%s: %d %s", c.path, status, b)
			}
			checkClean(c.path, b)
		}
		// v1 answers a storage outage with 503 unavailable and Retry-After
		// (it used to be 500 internal), with the same generic message.
		unavailable := problemJSON("unavailable", "service temporarily unavailable, retry shortly")
		for _, x := range []struct{ method, target, body string }{
			{http.MethodGet, "/v1/pools", ""},
			{http.MethodGet, fmt.Sprintf("/v1/pools/%d", f.pool.ID), ""},
			{http.MethodGet, fmt.Sprintf("/v1/pools/%d/utxos", f.pool.ID), ""},
			{http.MethodGet, fmt.Sprintf("/v1/transactions?pool=%d", f.pool.ID), ""},
			{http.MethodGet, "/v1/status", ""},
			{http.MethodPost, "/v1/pools", listBody},
		} {
			req := httptest.NewRequest(x.method, x.target, bodyReader(x.body))
			req.Header.Set("Authorization", "Bearer "+testToken)
			if x.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := f.app.Test(req, -1)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := readAll(resp)
			if resp.StatusCode != http.StatusServiceUnavailable || withoutRequestID(t, b) != unavailable || resp.Header.Get("Retry-After") == "" {
				t.Errorf("%s %s: %d Retry-After %q %s", x.method, x.target, resp.StatusCode, resp.Header.Get("Retry-After"), b)
			}
			checkClean(x.target, b)
		}
		if logs := f.logs.String(); !strings.Contains(logs, "database is closed") || !strings.Contains(logs, "request_id=") {
			t.Errorf("the cause was not logged with the request id:\n%.2000s", logs)
		}
	})
}
