package clientcheck_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bufferd/bufferd/client"
	"github.com/bufferd/bufferd/handlers"
	"github.com/bufferd/bufferd/lockmgr"
)

const txA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
const txB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

func amounts(r *client.Reservation) []uint64 {
	out := make([]uint64, len(r.UTXOs))
	for i, u := range r.UTXOs {
		out[i] = u.Amount
	}
	return out
}

func sameInts(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// apiErr returns err as an *APIError or fails the test.
func apiErr(t *testing.T, err error) *client.APIError {
	t.Helper()
	var ae *client.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an *APIError", err, err)
	}
	return ae
}

func TestPoolsReserveGetExtendSubmit(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100, 200, 300, 400)
	tr := newTripper()
	c := client.New(s.URL+"/", client.WithOwner("alice"), client.WithUserAgent("test-agent/1"), client.WithHTTPClient(tr.client()))
	ctx := testCtx(t)

	pools, err := c.Pools(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(pools) != 1 || pools[0].ID != s.Pool.ID || pools[0].Asset != s.Pool.Asset ||
		pools[0].Program != s.Pool.Program || pools[0].Counts != (client.Counts{Available: 4}) ||
		!pools[0].Synced || !pools[0].Unconfirmed || pools[0].FromHeight != 0 {
		t.Fatalf("pools = %+v, want pool %d, synced, with 4 available", pools, s.Pool.ID)
	}
	if ua := tr.last.Get("User-Agent"); ua != "test-agent/1" {
		t.Errorf("User-Agent = %q", ua)
	}

	before := time.Now()
	res, err := c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Count: 2, TTL: 90 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.ID) != 32 || res.Fence <= 0 || res.Pool != s.Pool.ID || res.Owner != "alice" ||
		res.State != client.StateHeld || res.Replayed || !sameInts(amounts(res), []uint64{100, 200}) || res.Total() != 300 {
		t.Fatalf("reserve = %+v", res)
	}
	if res.UTXOs[0].Hash != s.UTXOs[0].Hash || res.UTXOs[0].Asset != s.Pool.Asset {
		t.Errorf("utxo = %+v, want %s of %s", res.UTXOs[0], s.UTXOs[0].Hash, s.Pool.Asset)
	}
	if d := res.ExpiresAt.Sub(before); d < 85*time.Second || d > 95*time.Second {
		t.Errorf("expires in %s, want ~90s", d)
	}

	got, err := c.Get(ctx, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != res.ID || got.State != client.StateHeld || got.CreatedAt.IsZero() || !sameInts(amounts(got), amounts(res)) {
		t.Fatalf("get = %+v", got)
	}

	ext, err := c.Extend(ctx, res.ID, 20*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if d := ext.ExpiresAt.Sub(before); d < 19*time.Minute || d > 21*time.Minute || ext.State != client.StateHeld {
		t.Errorf("extend: state %s, expires in %s, want held ~20m", ext.State, d)
	}

	sub, err := c.Submit(ctx, res.ID, txA)
	if err != nil {
		t.Fatal(err)
	}
	if sub.State != client.StateSubmitted || sub.TxID != txA {
		t.Fatalf("submit = %+v", sub)
	}
	if _, err := c.Submit(ctx, res.ID, txA); err != nil {
		t.Errorf("submitting the same tx again: %v", err)
	}
	_, err = c.Submit(ctx, res.ID, txB)
	if ae := apiErr(t, err); ae.Status != http.StatusConflict || ae.Code != "tx_mismatch" {
		t.Errorf("submit another tx: %+v", ae)
	}
	_, err = c.Extend(ctx, res.ID, time.Minute)
	if ae := apiErr(t, err); ae.Status != http.StatusConflict || ae.Code != "reservation_submitted" {
		t.Errorf("extend a submitted reservation: %+v", ae)
	}
	if got, err = c.Get(ctx, res.ID); err != nil || got.State != client.StateSubmitted || got.TxID != txA {
		t.Fatalf("get after submit = %+v, %v", got, err)
	}
	// A submitted reservation cannot be released: its UTXOs stay held.
	if rel, err := c.Release(ctx, res.ID); !errors.Is(err, client.ErrSubmitted) || errors.Is(err, client.ErrEnded) || rel != nil {
		t.Fatalf("release a submitted reservation: %+v, %v", rel, err)
	}
	if _, err := c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Hashes: []string{res.UTXOs[0].Hash}}); !errors.Is(err, client.ErrUTXOLocked) {
		t.Fatalf("reserve a submitted utxo: %v", err)
	}
	if n := tr.count("DELETE /v1/reservations/" + res.ID); n != 1 {
		t.Errorf("%d release requests: a 409 is not retried", n)
	}
	if pools, err := c.Pools(ctx); err != nil || pools[0].Counts != (client.Counts{Available: 2, Reserved: 2}) {
		t.Fatalf("pools after submit = %+v, %v", pools, err)
	}
}

func TestReserveModesOwnerAndRelease(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100, 200, 300, 400)
	c := client.New(s.URL, client.WithOwner("alice"))
	ctx := testCtx(t)

	// By asset and program, best fit for an amount.
	fit, err := c.Reserve(ctx, client.ReserveRequest{Asset: s.Pool.Asset, Program: s.Pool.Program, Amount: 250, Owner: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if !sameInts(amounts(fit), []uint64{300}) || fit.Owner != "bob" {
		t.Fatalf("amount 250: %+v", fit)
	}
	// Exactly these hashes.
	exact, err := c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Hashes: []string{s.UTXOs[3].Hash}})
	if err != nil {
		t.Fatal(err)
	}
	if len(exact.UTXOs) != 1 || exact.UTXOs[0].Hash != s.UTXOs[3].Hash || exact.Owner != "alice" {
		t.Fatalf("hashes: %+v", exact)
	}
	if d := time.Until(exact.ExpiresAt); d < client.DefaultTTL-time.Minute || d > client.DefaultTTL+time.Minute {
		t.Errorf("default ttl: expires in %s", d)
	}
	// Combined: 100 and 200 are left.
	comb, err := c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Amount: 250, Combine: true})
	if err != nil {
		t.Fatal(err)
	}
	if comb.Total() != 300 || len(comb.UTXOs) != 2 {
		t.Fatalf("combine 250: %+v", comb)
	}

	for _, r := range []*client.Reservation{fit, exact, comb} {
		rel, err := c.Release(ctx, r.ID)
		if err != nil {
			t.Fatalf("release %s: %v", r.ID, err)
		}
		if rel.ID != r.ID || rel.State != client.StateReleased || rel.Owner != r.Owner || !sameInts(amounts(rel), amounts(r)) ||
			rel.UpdatedAt.IsZero() {
			t.Fatalf("release %s answered %+v", r.ID, rel)
		}
		got, err := c.Get(ctx, r.ID)
		if err != nil || got.State != client.StateReleased {
			t.Fatalf("after release: %+v, %v", got, err)
		}
		// Releasing again answers the same final state.
		again, err := c.Release(ctx, r.ID)
		if err != nil || again.State != client.StateReleased || !again.UpdatedAt.Equal(rel.UpdatedAt) {
			t.Fatalf("release %s again: %+v, %v", r.ID, again, err)
		}
	}
	// Released UTXOs are free again.
	all, err := c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Count: 4})
	if err != nil {
		t.Fatalf("reserve all after releases: %v", err)
	}
	if all.Total() != 1000 {
		t.Errorf("total %d, want 1000", all.Total())
	}
}

func TestErrorMapping(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100, 200)
	tr := newTripper()
	c := client.New(s.URL, client.WithHTTPClient(tr.client()))
	ctx := testCtx(t)
	sentinels := []error{client.ErrNoUTXOAvailable, client.ErrUTXOLocked, client.ErrEnded, client.ErrNotFound,
		client.ErrUnavailable, client.ErrRateLimited, client.ErrBadRequest, client.ErrSubmitted,
		client.ErrIdempotencyKeyReused, client.ErrIdempotencyKeyInUse}
	// only checks that err matches want and no other sentinel.
	only := func(t *testing.T, what string, err error, want error, status int, code string) {
		t.Helper()
		for _, s := range sentinels {
			if got := errors.Is(err, s); got != (s == want) {
				t.Errorf("%s: errors.Is(%v, %v) = %v", what, err, s, got)
			}
		}
		ae := apiErr(t, err)
		if ae.Status != status || ae.Code != code || ae.Message == "" {
			t.Errorf("%s: %+v, want %d %s", what, ae, status, code)
		}
		if !strings.Contains(err.Error(), code) {
			t.Errorf("%s: message %q lacks the code", what, err.Error())
		}
	}

	_, err := c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Count: 3})
	only(t, "count 3 of 2", err, client.ErrNoUTXOAvailable, 409, "no_utxo_available")

	held, err := c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Hashes: []string{s.UTXOs[0].Hash}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Hashes: []string{s.UTXOs[0].Hash}})
	only(t, "held hash", err, client.ErrUTXOLocked, 409, "utxo_locked")

	_, err = c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Hashes: []string{randHex(32)}})
	only(t, "unknown hash", err, client.ErrNotFound, 404, "utxo_not_found")
	_, err = c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID + 1000, Count: 1})
	only(t, "unknown pool", err, client.ErrNotFound, 404, "pool_not_found")
	_, err = c.Get(ctx, randHex(16))
	only(t, "unknown reservation", err, client.ErrNotFound, 404, "reservation_not_found")
	_, err = c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Count: 1, TTL: 2 * time.Hour})
	only(t, "ttl 2h", err, client.ErrBadRequest, 400, "bad_request")

	keyed, err := c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Count: 1, IdempotencyKey: "mapping-1"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Amount: 1, IdempotencyKey: "mapping-1"})
	only(t, "key reused", err, client.ErrIdempotencyKeyReused, 422, "idempotency_key_reused")
	if _, err := c.Release(ctx, keyed.ID); err != nil {
		t.Fatal(err)
	}

	if _, err := c.Release(ctx, held.ID); err != nil {
		t.Fatal(err)
	}
	_, err = c.Extend(ctx, held.ID, time.Minute)
	only(t, "extend a released reservation", err, client.ErrEnded, 410, "reservation_ended")
	// Releasing twice is not an error any more: the final state again.
	if again, err := c.Release(ctx, held.ID); err != nil || again.State != client.StateReleased {
		t.Errorf("release twice: %+v, %v", again, err)
	}
	_, err = c.Submit(ctx, held.ID, txA)
	only(t, "submit a released reservation", err, client.ErrEnded, 410, "reservation_ended")

	// Submitted: it can be neither released nor extended.
	sub, err := c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Submit(ctx, sub.ID, txB); err != nil {
		t.Fatal(err)
	}
	_, err = c.Release(ctx, sub.ID)
	only(t, "release a submitted reservation", err, client.ErrSubmitted, 409, "reservation_submitted")
	_, err = c.Extend(ctx, sub.ID, time.Minute)
	only(t, "extend a submitted reservation", err, client.ErrSubmitted, 409, "reservation_submitted")

	// An expired reservation is ended, not released.
	short, err := c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Hashes: []string{s.UTXOs[1].Hash}, TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(short.ExpiresAt) + 100*time.Millisecond)
	_, err = c.Release(ctx, short.ID)
	only(t, "release an expired reservation", err, client.ErrEnded, 410, "reservation_ended")
	// The answer is a problem details object: its detail, type and request id are read.
	if ae := apiErr(t, err); ae.Message != "the reservation has ended: it is expired" ||
		ae.Type != "https://bufferd.dev/problems/reservation_ended" || ae.RequestID == "" {
		t.Errorf("problem of an ended reservation: %+v", ae)
	}

	// No request was retried: 4xx answers are final.
	if n := tr.count("POST /v1/reservations"); n != 10 {
		t.Errorf("%d reserve requests for 10 calls", n)
	}
	if n := tr.count("DELETE /v1/reservations/" + held.ID); n != 2 {
		t.Errorf("%d release requests for 2 calls", n)
	}
	if n := tr.count("DELETE /v1/reservations/" + sub.ID); n != 1 {
		t.Errorf("%d release requests for 1 call", n)
	}

	// Local refusals never reach the server.
	if _, err := c.Get(ctx, ""); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("get with no id: %v", err)
	}
	if _, err := c.Extend(ctx, held.ID, 0); !errors.Is(err, client.ErrBadRequest) {
		t.Errorf("extend by 0: %v", err)
	}

	// A body that is not a v1 error still gives the status.
	_, err = client.New(s.URL + "/nowhere").Pools(ctx)
	if ae := apiErr(t, err); ae.Status != 404 || !errors.Is(err, client.ErrNotFound) {
		t.Errorf("unknown route: %+v", ae)
	}
}

func TestRetriesHonourRetryAfterOn503(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100, 200)
	tr := newTripper()
	c := client.New(s.URL, client.WithHTTPClient(tr.client()))
	ctx := testCtx(t)
	req := client.ReserveRequest{Pool: s.Pool.ID, Count: 1}

	// The pool is rebuilt 1.2 s after the first attempt: the client waits as
	// the Retry-After (1 s) says and then gets its reservation.
	s.unload(t)
	go func() {
		time.Sleep(1200 * time.Millisecond)
		if err := s.reload(); err != nil {
			t.Errorf("reload: %v", err)
		}
	}()
	start := time.Now()
	res, err := c.Reserve(ctx, req)
	if err != nil {
		t.Fatalf("reserve across a rebuild: %v", err)
	}
	n := tr.count("POST /v1/reservations")
	if n < 2 || n > 3 || time.Since(start) < 1200*time.Millisecond {
		t.Errorf("%d attempts in %s, want 2-3 attempts a Retry-After apart", n, time.Since(start))
	}
	for _, k := range tr.keys {
		if k != tr.keys[0] || len(k) != 32 {
			t.Fatalf("idempotency keys %q: want one generated key reused", tr.keys)
		}
	}
	if _, err := c.Release(ctx, res.ID); err != nil {
		t.Fatal(err)
	}

	// Still rebuilding when the context runs out: ErrUnavailable, with no
	// attempt the context could not wait for.
	s.unload(t)
	before := tr.count("POST /v1/reservations")
	short, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
	defer cancel()
	_, err = c.Reserve(short, req)
	if !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("reserve while rebuilding: %v", err)
	}
	if ae := apiErr(t, err); ae.Code != "rebuilding" || ae.RetryAfter != time.Second {
		t.Errorf("503: %+v", ae)
	}
	if n := tr.count("POST /v1/reservations") - before; n != 3 {
		t.Errorf("%d attempts in 2.5 s with Retry-After 1 s, want 3", n)
	}

	// The count of retries is bounded.
	for _, retries := range []int{0, 1} {
		before := tr.count("POST /v1/reservations")
		c := client.New(s.URL, client.WithHTTPClient(tr.client()), client.WithRetries(retries))
		if _, err := c.Reserve(ctx, req); !errors.Is(err, client.ErrUnavailable) {
			t.Fatalf("retries %d: %v", retries, err)
		}
		if n := tr.count("POST /v1/reservations") - before; n != retries+1 {
			t.Errorf("retries %d: %d attempts", retries, n)
		}
	}
}

func TestLostAnswerRetryMakesOneReservation(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100, 200, 300)
	tr := newTripper()
	first := true
	tr.drop = func(r *http.Request) bool {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/reservations" && first {
			first = false
			return true
		}
		return false
	}
	c := client.New(s.URL, client.WithHTTPClient(tr.client()))
	ctx := testCtx(t)

	res, err := c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Count: 1})
	if err != nil {
		t.Fatalf("reserve with a lost answer: %v", err)
	}
	if len(tr.dropped) != 1 || len(tr.keys) != 2 || tr.keys[0] != tr.keys[1] {
		t.Fatalf("dropped %d answers, keys %q: want one lost answer and its retry with the same key", len(tr.dropped), tr.keys)
	}
	var lost client.Reservation
	b, _ := io.ReadAll(tr.dropped[0].Body)
	if err := json.Unmarshal(b, &lost); err != nil || tr.dropped[0].StatusCode != http.StatusCreated {
		t.Fatalf("lost answer %d %s: %v", tr.dropped[0].StatusCode, b, err)
	}
	if res.ID != lost.ID || !res.Replayed || !sameInts(amounts(res), []uint64{100}) {
		t.Fatalf("retry returned %+v, the lost answer was %s: want the same reservation, replayed", res, lost.ID)
	}

	// An explicit key is sent as given and replays too.
	keyed := client.ReserveRequest{Pool: s.Pool.ID, Count: 1, IdempotencyKey: "order-42"}
	k1, err := c.Reserve(ctx, keyed)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := c.Reserve(ctx, keyed)
	if err != nil {
		t.Fatal(err)
	}
	if k1.ID != k2.ID || k1.Replayed || !k2.Replayed || tr.keys[len(tr.keys)-1] != "order-42" {
		t.Fatalf("same key: %s (replayed %v) then %s (replayed %v)", k1.ID, k1.Replayed, k2.ID, k2.Replayed)
	}

	// Exactly one UTXO is left: the retried reserve made one reservation.
	last, err := c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !sameInts(amounts(last), []uint64{300}) || last.Replayed {
		t.Fatalf("last reserve: %+v", last)
	}
	if _, err := c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Count: 1}); !errors.Is(err, client.ErrNoUTXOAvailable) {
		t.Fatalf("pool should be empty: %v", err)
	}
	// Calls without a key each got their own.
	seen := map[string]bool{}
	for _, k := range tr.keys {
		seen[k] = true
	}
	if len(seen) != 4 { // lost+retry, order-42, last, the failing one
		t.Errorf("keys %q: want 4 distinct", tr.keys)
	}
}

func TestConnectionErrorsAreRetried(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100)
	ctx := testCtx(t)

	// Fails twice before reaching the server, then succeeds.
	tr := newTripper()
	failures := 2
	tr.fail = func(r *http.Request) bool {
		if r.URL.Path == "/v1/pools" && failures > 0 {
			failures--
			return true
		}
		return false
	}
	c := client.New(s.URL, client.WithHTTPClient(tr.client()))
	if pools, err := c.Pools(ctx); err != nil || len(pools) != 1 {
		t.Fatalf("pools after 2 connection errors: %v, %v", pools, err)
	}
	if n := tr.count("GET /v1/pools"); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}

	// Always failing: bounded attempts, the connection error returned.
	tr.fail = func(*http.Request) bool { return true }
	c2 := client.New(s.URL, client.WithHTTPClient(tr.client()), client.WithRetries(2))
	before := tr.count("GET /v1/pools")
	if _, err := c2.Pools(ctx); !errors.Is(err, errDropped) {
		t.Fatalf("pools while failing: %v", err)
	}
	if n := tr.count("GET /v1/pools") - before; n != 3 {
		t.Errorf("%d attempts with 2 retries", n)
	}
	tr.fail = nil

	// A release whose answer was lost: the retry answers the final state.
	res, err := c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	dropped := false
	tr.drop = func(r *http.Request) bool {
		if r.Method == http.MethodDelete && !dropped {
			dropped = true
			return true
		}
		return false
	}
	rel, err := c.Release(ctx, res.ID)
	if err != nil || rel.ID != res.ID || rel.State != client.StateReleased {
		t.Fatalf("release with a lost answer: %+v, %v", rel, err)
	}
	if n := tr.count("DELETE /v1/reservations/" + res.ID); n != 2 || tr.dropped[0].StatusCode != http.StatusOK {
		t.Fatalf("%d release attempts (first answered %d)", n, tr.dropped[0].StatusCode)
	}
	var lost client.Reservation
	if b, _ := io.ReadAll(tr.dropped[0].Body); json.Unmarshal(b, &lost) != nil || lost.State != client.StateReleased ||
		!lost.UpdatedAt.Equal(rel.UpdatedAt) {
		t.Fatalf("the lost answer %+v, the retry's %+v: want the same final state", lost, rel)
	}
	if got, err := c.Get(ctx, res.ID); err != nil || got.State != client.StateReleased {
		t.Fatalf("after release: %+v, %v", got, err)
	}

	// A cancelled context stops at once.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Pools(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}

func TestRateLimitIsReportedNotRetried(t *testing.T) {
	t.Parallel()
	s := newServerWith(t, func(cfg *handlers.Config) { cfg.RateLimit, cfg.RateBurst = 0.5, 1 }, 100, 200)
	tr := newTripper()
	c := client.New(s.URL, client.WithHTTPClient(tr.client()))
	ctx := testCtx(t)

	if _, err := c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Count: 1}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Count: 1})
	if !errors.Is(err, client.ErrRateLimited) || errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("second reserve within the limit: %v", err)
	}
	if ae := apiErr(t, err); ae.Status != http.StatusTooManyRequests || ae.Code != "rate_limited" || ae.RetryAfter != 2*time.Second {
		t.Errorf("429: %+v", ae)
	}
	if n := tr.count("POST /v1/reservations"); n != 2 {
		t.Errorf("%d reserve requests for 2 calls: a 429 is not retried", n)
	}
}

// TestIdempotencyKeyInUseIsRetried: while the first request with a key is
// still being processed (here: held before its journal write on another
// replica), a reserve with the key gets 409 idempotency_key_in_use; the
// client retries it as Retry-After says and gets the first reservation.
func TestIdempotencyKeyInUseIsRetried(t *testing.T) {
	t.Parallel()
	s := newServer(t, 100, 200)
	var gate *gateJournal
	slow := s.replica(t, func(j lockmgr.Journal) lockmgr.Journal {
		gate = newGate(j)
		return gate
	})
	t.Cleanup(gate.open)
	ctx := testCtx(t)
	req := client.ReserveRequest{Pool: s.Pool.ID, Count: 1, IdempotencyKey: "in-flight-" + randHex(8)}

	first := make(chan *client.Reservation, 1)
	go func() {
		res, err := client.New(slow, client.WithRetries(0)).Reserve(ctx, req)
		if err != nil {
			t.Errorf("first reserve: %v", err)
		}
		first <- res
	}()
	gate.waitEntered(t)

	// Without retries: the error, with the server's Retry-After.
	tr := newTripper()
	_, err := client.New(s.URL, client.WithHTTPClient(tr.client()), client.WithRetries(0)).Reserve(ctx, req)
	if !errors.Is(err, client.ErrIdempotencyKeyInUse) || errors.Is(err, client.ErrUTXOLocked) || errors.Is(err, client.ErrNoUTXOAvailable) {
		t.Fatalf("while the first is in flight: %v", err)
	}
	if ae := apiErr(t, err); ae.Status != http.StatusConflict || ae.RetryAfter != time.Second {
		t.Fatalf("409: %+v", ae)
	}
	// With retries: it waits and gets the first reservation once it is done.
	go func() {
		time.Sleep(1500 * time.Millisecond)
		gate.open()
	}()
	res, err := client.New(s.URL, client.WithHTTPClient(tr.client())).Reserve(ctx, req)
	if err != nil {
		t.Fatalf("reserve retried past the in-flight request: %v", err)
	}
	orig := <-first
	if orig == nil || res.ID != orig.ID || !res.Replayed || orig.Replayed {
		t.Fatalf("retried reserve %+v, first %+v: want the first, replayed", res, orig)
	}
	if n := tr.count("POST /v1/reservations"); n < 3 {
		t.Errorf("%d reserve requests: the in-use answer was not retried", n)
	}
	// One reservation in all.
	pools, err := client.New(s.URL).Pools(ctx)
	if err != nil || pools[0].Counts != (client.Counts{Available: 1, Reserved: 1}) {
		t.Fatalf("pools = %+v, %v", pools, err)
	}
}

// TestExactAmountsAndTotal: amounts past 2^53 and up to 2^64-1 go through
// the client exactly, and Total saturates instead of wrapping around.
func TestExactAmountsAndTotal(t *testing.T) {
	t.Parallel()
	const odd = 1<<53 + 1
	s := newServer(t, math.MaxUint64, odd-1, odd, odd+1, 7)
	c := client.New(s.URL)
	ctx := testCtx(t)

	res, err := c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Amount: odd})
	if err != nil {
		t.Fatal(err)
	}
	if !sameInts(amounts(res), []uint64{odd}) || res.UTXOs[0].Hash != s.UTXOs[2].Hash || res.Total() != odd {
		t.Fatalf("amount 2^53+1: %+v", res)
	}
	top, err := c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Amount: math.MaxUint64})
	if err != nil {
		t.Fatal(err)
	}
	if !sameInts(amounts(top), []uint64{math.MaxUint64}) || top.Total() != math.MaxUint64 {
		t.Fatalf("amount 2^64-1: %+v", top)
	}
	got, err := c.Get(ctx, top.ID)
	if err != nil || got.UTXOs[0].Amount != math.MaxUint64 {
		t.Fatalf("get: %+v, %v", got, err)
	}
	// The sum of the rest passes 2^64 only with the largest; Total of
	// the largest and another saturates.
	both := client.Reservation{UTXOs: append(append([]client.UTXO(nil), top.UTXOs...), res.UTXOs...)}
	if both.Total() != math.MaxUint64 {
		t.Fatalf("saturated total %d", both.Total())
	}
	small := client.Reservation{UTXOs: []client.UTXO{{Amount: odd - 1}, {Amount: odd + 1}, {Amount: 7}}}
	if small.Total() != 2*odd+7 {
		t.Fatalf("total %d, want %d", small.Total(), uint64(2*odd+7))
	}
	if _, err := c.Reserve(ctx, client.ReserveRequest{Pool: s.Pool.ID, Amount: odd + 2}); !errors.Is(err, client.ErrNoUTXOAvailable) {
		t.Fatalf("more than any free utxo: %v", err)
	}
}
