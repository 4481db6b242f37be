package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bufferd/bufferd/storage"
)

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// apiErr is a v1 problem details answer.
type apiErr struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Code      string `json:"code"`
	RequestID string `json:"request_id"`
}

func TestV1CreatePool(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	asset, program := randHex(t, 32), "0014"+randHex(t, 20)
	body := fmt.Sprintf(`{"asset":%q,"program":%q}`, strings.ToUpper(asset), program)
	auth := []string{"Authorization", "Bearer " + testToken}

	status, b := do(t, f.app, http.MethodPost, "/v1/pools", body, auth...)
	if status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, b)
	}
	created := decode[poolJSON](t, b)
	if created.ID <= 0 || created.Asset != asset || created.Program != program {
		t.Fatalf("created %+v", created)
	}
	// A new pool offers unconfirmed outputs by default, starts at the index's
	// default depth (from_height 0) and is not synced until the syncer has it.
	if want := fmt.Sprintf(`{"id":%d,"asset":"%s","program":"%s","unconfirmed":true,"from_height":0,"synced":false}`,
		created.ID, asset, program); string(b) != want {
		t.Fatalf("body %s, want %s", b, want)
	}
	status, b2 := do(t, f.app, http.MethodPost, "/v1/pools", body, auth...)
	if status != http.StatusOK || !bytes.Equal(b2, b) {
		t.Fatalf("again: %d %s, want 200 %s", status, b2, b)
	}

	before := f.poolCount()
	for _, bad := range []string{`{}`, `{"asset":"zz","program":"00"}`, fmt.Sprintf(`{"asset":%q,"program":"0"}`, asset), `{`,
		`[]`, fmt.Sprintf(`{"asset":%q,"program":"51"}{}`, asset)} {
		status, b := do(t, f.app, http.MethodPost, "/v1/pools", bad, auth...)
		e := decode[apiErr](t, b)
		if status != http.StatusBadRequest || e.Code != "bad_request" || e.Detail == "" {
			t.Errorf("bad body %s: %d %s", bad, status, b)
		}
	}
	status, b = do(t, f.app, http.MethodPost, "/v1/pools", body)
	if e := decode[apiErr](t, b); status != http.StatusUnauthorized || e.Code != "unauthorized" {
		t.Fatalf("no token: %d %s", status, b)
	}
	if f.poolCount() != before {
		t.Fatal("a refused POST /v1/pools created a pool")
	}
}

// TestV1CreatePoolOptions: POST /v1/pools takes from_height and unconfirmed,
// stores them, and shows them; bad values are a 400 that creates nothing.
// Before this version both fields were ignored.
func TestV1CreatePoolOptions(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := testCtx(t)
	auth := []string{"Authorization", "Bearer " + testToken}
	asset, program := randHex(t, 32), "0014"+randHex(t, 20)

	before := f.poolCount()
	for _, bad := range []string{
		`"from_height":-1`, `"from_height":"100"`, `"from_height":1.5`, `"from_height":9223372036854775808`, `"from_height":true`,
		`"unconfirmed":"false"`, `"unconfirmed":0`, `"unconfirmed":[]`,
		`"from_height":100,"from_height":200`, `"fromHeight":100`, `"start_height":100`,
	} {
		body := fmt.Sprintf(`{"asset":%q,"program":%q,%s}`, asset, program, bad)
		status, b := do(t, f.app, http.MethodPost, "/v1/pools", body, auth...)
		wantError(t, "create "+body, status, b, http.StatusBadRequest, "bad_request")
	}
	if f.poolCount() != before {
		t.Fatal("a refused POST /v1/pools created a pool")
	}

	body := fmt.Sprintf(`{"asset":%q,"program":%q,"from_height":123456,"unconfirmed":false}`, asset, program)
	status, b := do(t, f.app, http.MethodPost, "/v1/pools", body, auth...)
	if status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, b)
	}
	created := decode[poolJSON](t, b)
	if created.FromHeight != 123456 || created.Unconfirmed || created.Synced || created.Asset != asset {
		t.Fatalf("created %s", b)
	}
	stored, err := f.store.GetPool(ctx, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.FromHeight != 123456 || stored.Unconfirmed || stored.SyncedAt != nil {
		t.Fatalf("stored %+v", stored)
	}
	// Registering it again keeps its settings, whatever the request says.
	again := fmt.Sprintf(`{"asset":%q,"program":%q,"from_height":5,"unconfirmed":true}`, asset, program)
	if status, b2 := do(t, f.app, http.MethodPost, "/v1/pools", again, auth...); status != http.StatusOK || !bytes.Equal(b2, b) {
		t.Fatalf("again: %d %s, want 200 %s", status, b2, b)
	}
	// null is absent: the defaults.
	other := fmt.Sprintf(`{"asset":%q,"program":"51","from_height":null,"unconfirmed":null}`, asset)
	status, b = do(t, f.app, http.MethodPost, "/v1/pools", other, auth...)
	if p := decode[poolJSON](t, b); status != http.StatusCreated || p.FromHeight != 0 || !p.Unconfirmed {
		t.Fatalf("create with nulls: %d %s", status, b)
	}
	// The list and the pool show the options, and whether the pool is synced:
	// a pool read before the syncer had it shows synced once it does.
	_, b = do(t, f.app, http.MethodGet, fmt.Sprintf("/v1/pools/%d", created.ID), "")
	if p := decode[poolDetail](t, b); p.FromHeight != 123456 || p.Unconfirmed || p.Synced {
		t.Fatalf("pool before its sync %s", b)
	}
	if err := f.store.MarkSynced(ctx, created.ID); err != nil {
		t.Fatal(err)
	}
	_, b = do(t, f.app, http.MethodGet, "/v1/pools", "")
	list := decode[struct {
		Pools []poolListItem `json:"pools"`
	}](t, b)
	found := false
	for _, p := range list.Pools {
		if p.ID == created.ID {
			found = true
			if p.FromHeight != 123456 || p.Unconfirmed || !p.Synced {
				t.Fatalf("listed %+v", p)
			}
		}
	}
	if !found {
		t.Fatalf("pool %d not listed: %s", created.ID, b)
	}
	_, b = do(t, f.app, http.MethodGet, fmt.Sprintf("/v1/pools/%d", created.ID), "")
	if p := decode[poolDetail](t, b); p.FromHeight != 123456 || p.Unconfirmed || !p.Synced {
		t.Fatalf("pool %s", b)
	}
}

func TestV1ListAndGetPool(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 10, 20, 30, 40)
	ctx := testCtx(t)
	other, _ := f.addPool(randHex(t, 32), "51", 7)

	// One UTXO spent on chain.
	if _, err := f.store.ReconcilePool(ctx, f.pool, f.utxos[1:]); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	if err := f.store.DB().WithContext(ctx).Create(&storage.SyncCursor{
		PoolID: f.pool.ID, Job: "utxo", Height: 1234, BlockHash: strings.Repeat("b", 64), Epoch: 3,
		LastSuccess: &now, LastError: "", UpdatedAt: now,
	}).Error; err != nil {
		t.Fatal(err)
	}

	status, b := do(t, f.app, http.MethodGet, "/v1/pools", "")
	if status != 200 {
		t.Fatalf("list: %d %s", status, b)
	}
	list := decode[struct {
		Pools []poolListItem `json:"pools"`
	}](t, b)
	if len(list.Pools) != 2 {
		t.Fatalf("pools %s", b)
	}
	for _, p := range list.Pools {
		switch p.ID {
		case f.pool.ID:
			if p.Asset != f.pool.Asset || p.Counts.Available != 3 || p.Counts.Spent != 1 || !p.Unconfirmed || !p.Synced || p.FromHeight != 0 {
				t.Errorf("pool %+v", p)
			}
		case other.ID:
			if p.Counts.Available != 1 {
				t.Errorf("other pool %+v", p)
			}
		default:
			t.Errorf("unknown pool %+v", p)
		}
	}

	status, b = do(t, f.app, http.MethodGet, fmt.Sprintf("/v1/pools/%d", f.pool.ID), "")
	if status != 200 {
		t.Fatalf("get: %d %s", status, b)
	}
	var got struct {
		ID      int64          `json:"id"`
		Asset   string         `json:"asset"`
		Program string         `json:"program"`
		Counts  storage.Counts `json:"counts"`
		Sync    map[string]struct {
			Height      int64      `json:"height"`
			BlockHash   string     `json:"block_hash"`
			Epoch       int64      `json:"epoch"`
			LastSuccess *time.Time `json:"last_success"`
			LastError   string     `json:"last_error"`
		} `json:"sync"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != f.pool.ID || got.Program != f.pool.Program || got.Counts != (storage.Counts{Available: 3, Spent: 1}) ||
		!strings.Contains(string(b), `"unconfirmed":true,"from_height":0,"synced":true,`) ||
		!strings.Contains(string(b), `"counts":{"available":3,"reserved":0,"spent":1,"invalidated":0,"immature":0}`) {
		t.Fatalf("pool %s", b)
	}
	cur, ok := got.Sync["utxo"]
	if !ok || cur.Height != 1234 || cur.Epoch != 3 || cur.LastSuccess == nil || !cur.LastSuccess.Equal(now) {
		t.Fatalf("sync %s", b)
	}

	// The other pool has no cursor: an empty object, not null.
	_, b = do(t, f.app, http.MethodGet, fmt.Sprintf("/v1/pools/%d", other.ID), "")
	if !strings.Contains(string(b), `"sync":{}`) {
		t.Fatalf("other pool %s", b)
	}

	for target, want := range map[string]int{
		"/v1/pools/999999":               404,
		"/v1/pools/0":                    400,
		"/v1/pools/-1":                   400,
		"/v1/pools/abc":                  400,
		"/v1/pools/99999999999999999999": 400,
		"/v1/pools/999999/utxos":         404,
		"/v1/nothing":                    404,
	} {
		status, b := do(t, f.app, http.MethodGet, target, "")
		e := decode[apiErr](t, b)
		wantCode := map[int]string{400: "bad_request", 404: "pool_not_found"}[want]
		if target == "/v1/nothing" {
			wantCode = "not_found"
		}
		if status != want || e.Code != wantCode {
			t.Errorf("%s: %d %s, want %d %s", target, status, b, want, wantCode)
		}
	}
}

func TestV1PoolUTXOs(t *testing.T) {
	t.Parallel()
	amounts := make([]uint64, 25)
	for i := range amounts {
		amounts[i] = uint64(i + 1)
	}
	f := newFixture(t, amounts...)
	ctx := testCtx(t)
	// Two spent.
	if _, err := f.store.ReconcilePool(ctx, f.pool, f.utxos[2:]); err != nil {
		t.Fatal(err)
	}

	type page struct {
		UTXOs      []utxoJSON `json:"utxos"`
		NextCursor string     `json:"next_cursor"`
	}
	walk := func(query string, limit int) ([]utxoJSON, int) {
		t.Helper()
		var all []utxoJSON
		cursor, pages := "", 0
		for {
			target := fmt.Sprintf("/v1/pools/%d/utxos?limit=%d&cursor=%s%s", f.pool.ID, limit, cursor, query)
			status, b := do(t, f.app, http.MethodGet, target, "")
			if status != 200 {
				t.Fatalf("%s: %d %s", target, status, b)
			}
			p := decode[page](t, b)
			if len(p.UTXOs) > limit {
				t.Fatalf("page of %d > limit %d", len(p.UTXOs), limit)
			}
			all = append(all, p.UTXOs...)
			pages++
			if p.NextCursor == "" {
				return all, pages
			}
			if pages > 30 {
				t.Fatal("no end")
			}
			cursor = p.NextCursor
		}
	}

	all, pages := walk("", 10)
	if len(all) != 25 || pages != 3 {
		t.Fatalf("walked %d utxos in %d pages", len(all), pages)
	}
	seen := map[string]bool{}
	for _, u := range all {
		if seen[u.Hash] {
			t.Fatalf("duplicate %s", u.Hash)
		}
		seen[u.Hash] = true
		if u.Asset != f.pool.Asset || !u.Confirmed {
			t.Fatalf("utxo %+v", u)
		}
	}
	avail, _ := walk("&state=available", 5)
	spent, pages := walk("&state=spent", 5)
	if len(avail) != 23 || len(spent) != 2 || pages != 1 {
		t.Fatalf("available %d spent %d (pages %d)", len(avail), len(spent), pages)
	}
	for _, u := range spent {
		if u.State != storage.StateSpent || (u.Hash != f.utxos[0].Hash && u.Hash != f.utxos[1].Hash) {
			t.Fatalf("spent %+v", u)
		}
	}
	// An exactly full last page has no next cursor.
	if _, pages := walk("&state=available", 23); pages != 1 {
		t.Fatalf("23 of 23 took %d pages", pages)
	}

	status, b := do(t, f.app, http.MethodGet, fmt.Sprintf("/v1/pools/%d/utxos", f.pool.ID), "")
	if p := decode[page](t, b); status != 200 || len(p.UTXOs) != 25 || p.NextCursor != "" {
		t.Fatalf("defaults: %d %s", status, b)
	}
	for _, q := range []string{"state=gone", "limit=0", "limit=1001", "limit=x", "cursor=abc", "cursor=-4", "cursor=0"} {
		status, b := do(t, f.app, http.MethodGet, fmt.Sprintf("/v1/pools/%d/utxos?%s", f.pool.ID, q), "")
		if e := decode[apiErr](t, b); status != 400 || e.Code != "bad_request" {
			t.Errorf("%s: %d %s", q, status, b)
		}
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	status, b := do(t, f.app, http.MethodGet, "/livez", "")
	if status != 200 || string(b) != `{"status":"ok"}` {
		t.Fatalf("livez %d %s", status, b)
	}
	status, b = do(t, f.app, http.MethodGet, "/readyz", "")
	if status != 200 || !strings.Contains(string(b), `"status":"ok"`) {
		t.Fatalf("readyz %d %s", status, b)
	}

	notReady := f.newApp(Config{Ready: func(context.Context) error { return errors.New("syncer: not caught up") }})
	status, b = do(t, notReady, http.MethodGet, "/readyz", "")
	if status != http.StatusServiceUnavailable || strings.Contains(string(b), "caught up") {
		t.Fatalf("readyz with a failing check: %d %s", status, b)
	}
	ready := f.newApp(Config{Ready: func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			return errors.New("no deadline")
		}
		return nil
	}})
	if status, b := do(t, ready, http.MethodGet, "/readyz", ""); status != 200 {
		t.Fatalf("readyz with a passing check: %d %s", status, b)
	}

	// Postgres gone.
	db, err := f.store.DB().DB()
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	if status, b := do(t, f.app, http.MethodGet, "/readyz", ""); status != http.StatusServiceUnavailable || !strings.Contains(string(b), `"postgres":"fail"`) {
		t.Fatalf("readyz with postgres closed: %d %s", status, b)
	}
	if status, _ := do(t, f.app, http.MethodGet, "/livez", ""); status != 200 {
		t.Fatal("livez depends on postgres")
	}
}
