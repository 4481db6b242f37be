package handlers

// Regression tests of issue 13 through the HTTP API on real Redis and
// PostgreSQL: case 3 (a submitted reservation cannot be released), case 7
// (PostgreSQL unreachable; a release whose answer was lost) and exact
// uint64 amounts.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

// TestReleaseOfASubmittedReservationIsRefused (case 3): DELETE of a
// submitted reservation answers 409 reservation_submitted on any API
// instance, changes nothing, and its UTXOs are offered to nobody until the
// chain settles it. Before this version the DELETE answered 204 and freed
// UTXOs the submitted transaction spends.
func TestReleaseOfASubmittedReservationIsRefused(t *testing.T) {
	t.Parallel()
	f := newResFixture(t, 10, 20, 30)
	replica := f.replica()
	r := f.reserveOK(fmt.Sprintf(`{"pool":%d,"count":2,"owner":"dave"}`, f.pool.ID))
	tx := randHex(t, 32)
	if status, b := f.call(http.MethodPost, "/v1/reservations/"+r.ID+"/submit", fmt.Sprintf(`{"tx_id":%q}`, tx)); status != http.StatusOK {
		t.Fatalf("submit: %d %s", status, b)
	}

	before := f.snapshot()
	for _, app := range []*fiber.App{f.app, replica, f.app} {
		status, b := do(t, app, http.MethodDelete, "/v1/reservations/"+r.ID, "")
		wantError(t, "release submitted", status, b, http.StatusConflict, "reservation_submitted")
	}
	// Nobody else gets its UTXOs, by any route.
	hashes := fmt.Sprintf(`[%q,%q]`, r.UTXOs[0].Hash, r.UTXOs[1].Hash)
	for _, app := range []*fiber.App{f.app, replica} {
		for _, h := range []string{fmt.Sprintf("[%q]", r.UTXOs[0].Hash), fmt.Sprintf("[%q]", r.UTXOs[1].Hash), hashes} {
			status, b := do(t, app, http.MethodPost, "/v1/reservations", fmt.Sprintf(`{"pool":%d,"hashes":%s}`, f.pool.ID, h))
			wantError(t, "reserve a submitted utxo", status, b, http.StatusConflict, "utxo_locked")
		}
		status, b := do(t, app, http.MethodPost, "/v1/reservations", fmt.Sprintf(`{"pool":%d,"count":2}`, f.pool.ID))
		wantError(t, "reserve two", status, b, http.StatusConflict, "no_utxo_available")
		if r := legacyCall(t, app, "/dapp/update-utxo", fmt.Sprintf(`{"hash":%q}`, r.UTXOs[0].Hash)); r.Code != 300 || r.Msg != msgLocked {
			t.Fatalf("legacy lock of a submitted utxo: %+v", r)
		}
	}
	if got := hashesOf(f.listUTXOs("", "desc")); len(got) != 1 || contains(got, r.UTXOs[0].Hash) || contains(got, r.UTXOs[1].Hash) {
		t.Fatalf("legacy list shows %v", got)
	}
	if after := f.snapshot(); !before.equal(after) {
		t.Fatal("a refused release of a submitted reservation changed state")
	}
	if g := f.getRes(r.ID); g.State != "submitted" || g.TxID != tx {
		t.Fatalf("after the refused releases: %+v", g)
	}

	// The chain mines the transaction: the reservation is spent, a release is
	// 410, and its UTXOs are gone for good.
	ctx := testCtx(t)
	synced, err := f.store.ReconcilePool(ctx, f.pool, withoutHash(withoutHash(f.utxos, r.UTXOs[0].Hash), r.UTXOs[1].Hash))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&syncer.Applier{Store: f.store, Locks: f.locks}).Apply(ctx, f.pool.ID, synced.Touched()); err != nil {
		t.Fatal(err)
	}
	if g := f.getRes(r.ID); g.State != "spent" {
		t.Fatalf("after the chain: %+v", g)
	}
	status, b := do(t, replica, http.MethodDelete, "/v1/reservations/"+r.ID, "")
	wantError(t, "release spent", status, b, http.StatusGone, "reservation_ended")
	status, b = do(t, replica, http.MethodPost, "/v1/reservations", fmt.Sprintf(`{"pool":%d,"hashes":%s}`, f.pool.ID, hashes))
	wantError(t, "reserve spent utxos", status, b, http.StatusNotFound, "utxo_not_found")
}

// v1Get sends GET target to app and returns the status, the Retry-After
// header and the body.
func v1Get(t testing.TB, app *fiber.App, target string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://bufferd"+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := app.Test(req, -1)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	b, err := readAll(resp)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), b
}

// TestPostgresUnreachable (case 7): with PostgreSQL paused or down, the
// routes that read it answer 503 unavailable with Retry-After, never 500,
// on every API instance, and serve again once it is back; a release is
// carried out all the same (it needs only Redis) and the journal learns it
// once PostgreSQL is back. The test runs its own PostgreSQL server: it stops
// and kills it.
func TestPostgresUnreachable(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	rdb, prefix := testenv.Redis(t)
	f := newFixtureOn(t, testenv.CreateDatabase(t, pg.URL()), rdb, prefix, 10, 20, 30).withJournal()
	replica := f.replica()
	ctx := testCtx(t)
	held := f.reserveOK(fmt.Sprintf(`{"pool":%d,"count":1}`, f.pool.ID))
	other := f.reserveOK(fmt.Sprintf(`{"pool":%d,"count":1}`, f.pool.ID))
	f.applyBlock(spendBlock(f.pool.ID, 7, map[string]string{f.utxos[2].Hash: randHex(t, 32)}))
	if err := f.store.SaveCursor(ctx, storage.SyncCursor{PoolID: 0, Job: syncer.JobChain, Height: 9}); err != nil {
		t.Fatal(err)
	}
	targets := []string{
		"/v1/pools",
		fmt.Sprintf("/v1/pools/%d", f.pool.ID),
		fmt.Sprintf("/v1/pools/%d/utxos", f.pool.ID),
		"/v1/status",
		fmt.Sprintf("/v1/transactions?pool=%d", f.pool.ID),
	}
	apps := []*fiber.App{f.app, replica}
	serving := func(what string) {
		t.Helper()
		for _, app := range apps {
			for _, target := range targets {
				if status, _, b := v1Get(t, app, target); status != http.StatusOK {
					t.Fatalf("%s: GET %s: %d %s", what, target, status, b)
				}
			}
		}
	}
	// unavailable checks every route on every instance at once: each answers
	// 503 unavailable with Retry-After within the request bound.
	unavailable := func(what string) {
		t.Helper()
		type answer struct {
			target, retry string
			status        int
			body          []byte
			took          time.Duration
		}
		var wg sync.WaitGroup
		answers := make(chan answer, len(apps)*(len(targets)+1))
		for _, app := range apps {
			for _, target := range targets {
				wg.Add(1)
				go func() {
					defer wg.Done()
					start := time.Now()
					req, _ := http.NewRequest(http.MethodGet, "http://bufferd"+target, nil)
					resp, err := app.Test(req, -1)
					if err != nil {
						answers <- answer{target: target, body: []byte(err.Error())}
						return
					}
					b, _ := readAll(resp)
					answers <- answer{target, resp.Header.Get("Retry-After"), resp.StatusCode, b, time.Since(start)}
				}()
			}
		}
		wg.Wait()
		close(answers)
		for a := range answers {
			var e apiErr
			if json.Unmarshal(a.body, &e) != nil || a.status != http.StatusServiceUnavailable || e.Code != "unavailable" || a.retry == "" {
				t.Errorf("%s: GET %s: %d Retry-After %q %s; want 503 unavailable with Retry-After", what, a.target, a.status, a.retry, a.body)
			}
			if a.took > requestTimeout+5*time.Second {
				t.Errorf("%s: GET %s took %v", what, a.target, a.took)
			}
		}
	}
	serving("before")

	pg.Stop()
	unavailable("paused")
	// A release needs only Redis: it is answered and its UTXO is free at
	// once; the journal learns it when PostgreSQL answers again.
	released := func(what string, app *fiber.App, r resBody) {
		t.Helper()
		status, b := do(t, app, http.MethodDelete, "/v1/reservations/"+r.ID, "")
		if got := decode[resBody](t, b); status != http.StatusOK || got.ID != r.ID || got.State != "released" {
			t.Fatalf("%s: %d %s", what, status, b)
		}
		if _, stillHeld := f.heldFor(f.pool.ID, r.UTXOs[0].Hash); stillHeld {
			t.Fatalf("%s: released UTXO still held", what)
		}
	}
	released("release with postgres paused", f.app, held)
	pg.Cont()
	serving("resumed")
	if row := f.journalRow(held.ID); row.State != storage.ResReleased {
		t.Fatalf("journal after the outage: %+v", row)
	}

	// (The server runs without fsync: checkpoint so that the kill keeps the rows.)
	if err := f.store.DB().WithContext(ctx).Exec(`CHECKPOINT`).Error; err != nil {
		t.Fatal(err)
	}
	pg.Kill()
	unavailable("down")
	released("release with postgres down", replica, other)
	pg.Restart()
	waitFor(t, 30*time.Second, "the API to serve again", func() bool {
		status, _, _ := v1Get(t, f.app, "/v1/pools")
		status2, _, _ := v1Get(t, replica, "/v1/pools")
		return status == http.StatusOK && status2 == http.StatusOK
	})
	serving("restarted")
	if row := f.journalRow(other.ID); row.State != storage.ResReleased {
		t.Fatalf("journal after the restart: %+v", row)
	}
	// The release, retried now, answers the final state.
	released("release after the outage", replica, other)
}

// TestReleaseWithALostAnswer (case 7): a DELETE that was carried out but
// whose answer never reached the client (the connection died on the way
// back) answers 200 with the final state when retried, on the same or
// another API instance, not 410 as before this version; and the retry
// releases nothing else.
func TestReleaseWithALostAnswer(t *testing.T) {
	t.Parallel()
	f := newResFixture(t, 10, 20, 30)
	replica := f.replica()
	base := serve(t, f.app)
	proxy := testenv.StartProxy(t, strings.TrimPrefix(base, "http://"))
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

	for i, retryOn := range []*fiber.App{f.app, replica} {
		r := f.reserveOK(fmt.Sprintf(`{"pool":%d,"count":1}`, f.pool.ID))
		other := f.reserveOK(fmt.Sprintf(`{"pool":%d,"count":1}`, f.pool.ID))
		proxy.LoseReplies(1)
		req, err := http.NewRequest(http.MethodDelete, "http://"+proxy.Addr()+"/v1/reservations/"+r.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := hc.Do(req); err == nil {
			if b, err := readAll(resp); err == nil {
				t.Fatalf("round %d: the answer was not lost: %d %s", i, resp.StatusCode, b)
			}
		}
		// The release took effect although the client never heard of it.
		if row := f.journalRow(r.ID); row.State != storage.ResReleased {
			t.Fatalf("round %d: journal after the lost answer: %+v", i, row)
		}
		status, b := do(t, retryOn, http.MethodDelete, "/v1/reservations/"+r.ID, "")
		got := decode[resBody](t, b)
		if status != http.StatusOK || got.ID != r.ID || got.State != "released" || len(got.UTXOs) != 1 || got.UTXOs[0] != r.UTXOs[0] {
			t.Fatalf("round %d: retried release: %d %s", i, status, b)
		}
		if _, held := f.heldFor(f.pool.ID, r.UTXOs[0].Hash); held {
			t.Fatalf("round %d: released UTXO still held", i)
		}
		if g := f.getRes(other.ID); g.State != "held" {
			t.Fatalf("round %d: another reservation after the retry: %+v", i, g)
		}
		if status, b := f.call(http.MethodDelete, "/v1/reservations/"+other.ID, ""); status != http.StatusOK {
			t.Fatalf("round %d: release the other: %d %s", i, status, b)
		}
	}
}

// TestExactAmounts: amounts up to 2^64-1 go through the v1 and legacy
// routes exactly, as JSON numbers or (in a reserve request) decimal
// strings, including those a double cannot hold (2^53+1); a bad amount is a
// 400 (legacy: code 300) that changes nothing.
func TestExactAmounts(t *testing.T) {
	t.Parallel()
	const (
		maxAmount = 1<<64 - 1
		odd       = 1<<53 + 1 // the first integer a double cannot hold
	)
	amounts := []uint64{maxAmount, maxAmount - 1, odd - 1, odd, odd + 1, 5}
	f := newResFixture(t, amounts...)
	p := f.pool.ID
	byHash := map[string]uint64{}
	for _, u := range f.utxos {
		byHash[u.Hash] = u.Amount
	}

	// GET /v1/pools/{id}/utxos shows each exactly.
	status, b := f.call(http.MethodGet, fmt.Sprintf("/v1/pools/%d/utxos", p), "")
	if status != http.StatusOK {
		t.Fatalf("utxos: %d %s", status, b)
	}
	for _, u := range f.utxos {
		if want := fmt.Sprintf(`{"hash":%q,"asset":%q,"amount":%d,`, u.Hash, f.pool.Asset, u.Amount); !strings.Contains(string(b), want) {
			t.Fatalf("utxos lack %s: %s", want, b)
		}
	}
	for _, u := range decode[utxoPage](t, b).UTXOs {
		if u.Amount != byHash[u.Hash] {
			t.Fatalf("utxo %s: amount %d, want %d", u.Hash, u.Amount, byHash[u.Hash])
		}
	}
	// The legacy list, largest first, exactly.
	legacyAmounts := func() []uint64 {
		t.Helper()
		var out []uint64
		for _, u := range f.listUTXOs("", "desc") {
			if u.Amount != byHash[u.Hash] {
				t.Fatalf("legacy utxo %s: amount %d, want %d", u.Hash, u.Amount, byHash[u.Hash])
			}
			out = append(out, u.Amount)
		}
		return out
	}
	if got := fmt.Sprint(legacyAmounts()); got != fmt.Sprint([]uint64{maxAmount, maxAmount - 1, odd + 1, odd, odd - 1, 5}) {
		t.Fatalf("legacy list: %s", got)
	}
	body := fmt.Sprintf(`{"asset":%q,"program":%q,"sort":{"by":"amount","order":"asc"}}`, f.pool.Asset, f.pool.Program)
	if r := f.legacy("/dapp/list-utxos", body); !strings.Contains(string(r.Result), `"amount":18446744073709551615}`) ||
		!strings.Contains(string(r.Result), `"amount":9007199254740993}`) {
		t.Fatalf("legacy list bytes: %s", r.Result)
	}

	// Bad amounts: 400, nothing changes.
	before := f.snapshot()
	for _, bad := range []string{`0`, `-1`, `1.5`, `18446744073709551616`, `"x"`, `"0"`, `"-1"`, `"1.5"`, `"18446744073709551616"`,
		`1e3`, `""`, `null, "amount": 1`} {
		status, b := f.call(http.MethodPost, "/v1/reservations", fmt.Sprintf(`{"pool":%d,"amount":%s}`, p, bad))
		wantError(t, "amount "+bad, status, b, http.StatusBadRequest, "bad_request")
	}
	// The legacy update-balance keeps its signed amounts (a withdrawal is
	// negative): 0, fractions, non-numbers and values past int64 are code 300.
	for _, bad := range []string{`0`, `1.5`, `18446744073709551616`, `9223372036854775808`, `"x"`, `"5"`} {
		r := f.legacy("/dapp/update-balance", fmt.Sprintf(`{"address":"bm1qexact","asset":%q,"amount":%s,"tx_id":%q}`,
			f.pool.Asset, bad, randHex(t, 32)))
		if r.Code != 300 || r.Result != nil {
			t.Errorf("update-balance amount %s: %+v", bad, r)
		}
	}
	if after := f.snapshot(); !before.equal(after) {
		t.Fatal("bad amounts changed state")
	}
	if rows, err := f.store.ListBalances(testCtx(t), "bm1qexact", f.pool.Asset); err != nil || len(rows) != 0 {
		t.Fatalf("bad balance amounts stored %v (%v)", rows, err)
	}

	// Reserve by amount: an exact match wherever it is, by number or string.
	for _, tc := range []struct {
		amount string
		want   uint64
	}{
		{`9007199254740993`, odd},
		{`"18446744073709551615"`, maxAmount},
		{`"9007199254740992"`, odd - 1},
		{`18446744073709551614`, maxAmount - 1},
		{`9007199254740994`, odd + 1},
	} {
		r := f.reserveOK(fmt.Sprintf(`{"pool":%d,"amount":%s}`, p, tc.amount))
		if len(r.UTXOs) != 1 || r.UTXOs[0].Amount != tc.want || byHash[r.UTXOs[0].Hash] != tc.want {
			t.Fatalf("amount %s: reserved %+v, want the UTXO of %d", tc.amount, r.UTXOs, tc.want)
		}
		if g := f.getRes(r.ID); g.UTXOs[0].Amount != tc.want {
			t.Fatalf("amount %s: GET shows %+v", tc.amount, g.UTXOs)
		}
		if status, b := f.call(http.MethodDelete, "/v1/reservations/"+r.ID, ""); status != http.StatusOK ||
			decode[resBody](t, b).UTXOs[0].Amount != tc.want {
			t.Fatalf("amount %s: release %d %s", tc.amount, status, b)
		}
	}
	// Nothing free is worth more than the largest.
	if r := f.reserveOK(fmt.Sprintf(`{"pool":%d,"hashes":[%q]}`, p, f.utxos[0].Hash)); r.UTXOs[0].Amount != maxAmount {
		t.Fatalf("by hash: %+v", r.UTXOs)
	}
	status, b = f.call(http.MethodPost, "/v1/reservations", fmt.Sprintf(`{"pool":%d,"amount":"18446744073709551615"}`, p))
	wantError(t, "more than any free utxo", status, b, http.StatusConflict, "no_utxo_available")
	// Combined, past 2^64: the fewest UTXOs covering it with the least excess.
	r := f.reserveOK(fmt.Sprintf(`{"pool":%d,"amount":"18446744073709551615","combine":true}`, p))
	got := map[uint64]bool{}
	for _, u := range r.UTXOs {
		got[u.Amount] = true
	}
	if len(r.UTXOs) != 2 || !got[maxAmount-1] || !got[5] {
		t.Fatalf("combine 2^64-1 from what is left: %+v, want 2^64-2 and 5", r.UTXOs)
	}
	if got := fmt.Sprint(legacyAmounts()); got != fmt.Sprint([]uint64{odd + 1, odd, odd - 1}) {
		t.Fatalf("legacy list after the reservations: %s", got)
	}
}
