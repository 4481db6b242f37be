package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

// resBody is a reservation as the v1 routes answer it.
type resBody struct {
	ID        string    `json:"id"`
	Fence     int64     `json:"fence"`
	Pool      int64     `json:"pool"`
	Owner     string    `json:"owner"`
	State     string    `json:"state"`
	UTXOs     []resUTXO `json:"utxos"`
	ExpiresAt string    `json:"expires_at"`
	TxID      string    `json:"tx_id"`
	CreatedAt string    `json:"created_at"`
	UpdatedAt string    `json:"updated_at"`
}

func (r resBody) hashes() []string {
	out := make([]string, len(r.UTXOs))
	for i, u := range r.UTXOs {
		out[i] = u.Hash
	}
	return out
}

var apiTimeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

func parseAPITime(t *testing.T, s string) time.Time {
	t.Helper()
	if !apiTimeRE.MatchString(s) {
		t.Fatalf("time %q is not RFC 3339 UTC with milliseconds", s)
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// newResFixture is newFixture with the lock manager journaling into the
// store (storage.Journal), as bufferd wires it.
func newResFixture(t *testing.T, amounts ...uint64) *fixture {
	t.Helper()
	return newFixture(t, amounts...).withJournal()
}

// newLocks returns a lock manager on the fixture's Redis prefix with journal j.
func (f *fixture) newLocks(j lockmgr.Journal) *lockmgr.Manager {
	m := lockmgr.New(f.rdb, lockmgr.Options{Prefix: f.prefix, Journal: j})
	f.t.Cleanup(func() { _ = m.Close() })
	return m
}

func (f *fixture) call(method, target, body string, header ...string) (int, []byte) {
	f.t.Helper()
	return do(f.t, f.app, method, target, body, header...)
}

// reserveOK reserves and expects 201.
func (f *fixture) reserveOK(body string, header ...string) resBody {
	f.t.Helper()
	status, b := f.call(http.MethodPost, "/v1/reservations", body, header...)
	if status != http.StatusCreated {
		f.t.Fatalf("reserve %s: %d %s", body, status, b)
	}
	return decode[resBody](f.t, b)
}

// wantError checks a v1 error answer.
func wantError(t *testing.T, what string, status int, b []byte, wantStatus int, wantCode string) {
	t.Helper()
	var e apiErr
	if err := json.Unmarshal(b, &e); err != nil || status != wantStatus || e.Code != wantCode || e.Detail == "" {
		t.Fatalf("%s: %d %s; want %d %s", what, status, b, wantStatus, wantCode)
	}
}

func (f *fixture) getRes(id string) resBody {
	f.t.Helper()
	status, b := f.call(http.MethodGet, "/v1/reservations/"+id, "")
	if status != http.StatusOK {
		f.t.Fatalf("get %s: %d %s", id, status, b)
	}
	return decode[resBody](f.t, b)
}

func (f *fixture) journalRow(id string) storage.Reservation {
	f.t.Helper()
	f.flushJournals()
	row, err := f.store.GetReservation(testCtx(f.t), id)
	if err != nil {
		f.t.Fatalf("journal row %s: %v", id, err)
	}
	return row
}

// state is everything a request could change: every Redis key of the test's
// prefix (DUMPed) and the journal and UTXO rows.
type state struct {
	redis        map[string]string
	reservations []storage.Reservation
	utxos        []storage.UTXO
}

func (f *fixture) snapshot() state {
	f.t.Helper()
	f.flushJournals()
	ctx := testCtx(f.t)
	s := state{redis: map[string]string{}}
	iter := f.rdb.Scan(ctx, 0, f.prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		v, err := f.rdb.Dump(ctx, iter.Val()).Result()
		if err != nil && err != redis.Nil {
			f.t.Fatal(err)
		}
		s.redis[iter.Val()] = v
	}
	if err := iter.Err(); err != nil {
		f.t.Fatal(err)
	}
	db := f.store.DB().WithContext(ctx)
	if err := db.Order("id").Find(&s.reservations).Error; err != nil {
		f.t.Fatal(err)
	}
	if err := db.Order("id").Find(&s.utxos).Error; err != nil {
		f.t.Fatal(err)
	}
	return s
}

// withoutFences is s without the pools' fencing counters.
func (s state) withoutFences() state {
	out := s
	out.redis = make(map[string]string, len(s.redis))
	for k, v := range s.redis {
		if !strings.HasSuffix(k, ":fence") {
			out.redis[k] = v
		}
	}
	return out
}

func (s state) equal(o state) bool {
	if len(s.redis) != len(o.redis) || len(s.reservations) != len(o.reservations) || len(s.utxos) != len(o.utxos) {
		return false
	}
	for k, v := range s.redis {
		if o.redis[k] != v {
			return false
		}
	}
	for i := range s.reservations {
		a, b := s.reservations[i], o.reservations[i]
		if a.ID != b.ID || a.State != b.State || a.Fence != b.Fence || !a.ExpiresAt.Equal(b.ExpiresAt) || a.TxID != b.TxID {
			return false
		}
	}
	for i := range s.utxos {
		if s.utxos[i].Hash != o.utxos[i].Hash || s.utxos[i].State != o.utxos[i].State {
			return false
		}
	}
	return true
}

func TestReserveAndGet(t *testing.T) {
	t.Parallel()
	f := newResFixture(t, 10, 20, 30, 40, 50)
	before := time.Now()
	b := fmt.Sprintf(`{"pool":%d,"count":1,"owner":"alice","ttl_seconds":60}`, f.pool.ID)
	status, raw := f.call(http.MethodPost, "/v1/reservations", b)
	if status != http.StatusCreated {
		t.Fatalf("reserve: %d %s", status, raw)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		t.Fatal(err)
	}
	got := make([]string, 0, len(keys))
	for k := range keys {
		got = append(got, k)
	}
	sort.Strings(got)
	if want := []string{"expires_at", "fence", "id", "owner", "pool", "state", "utxos"}; !slices.Equal(got, want) {
		t.Fatalf("reserve answer has keys %v, want %v", got, want)
	}
	r := decode[resBody](t, raw)
	if !validReservationID(r.ID) || r.Fence <= 0 || r.Pool != f.pool.ID || r.Owner != "alice" || r.State != "held" || len(r.UTXOs) != 1 {
		t.Fatalf("reservation %+v", r)
	}
	if u := r.UTXOs[0]; u.Asset != f.pool.Asset || !lowerHex64(u.Hash) || u.Amount == 0 {
		t.Fatalf("utxo %+v", u)
	}
	exp := parseAPITime(t, r.ExpiresAt)
	if d := exp.Sub(before); d < 59*time.Second || d > 62*time.Second {
		t.Fatalf("expires in %v, want 60 s", d)
	}
	if row := f.journalRow(r.ID); row.State != storage.ResHeld || row.Fence != r.Fence || row.Hashes != r.UTXOs[0].Hash || row.Owner != "alice" {
		t.Fatalf("journal row %+v", row)
	}

	g := f.getRes(r.ID)
	if g.ID != r.ID || g.Fence != r.Fence || g.State != "held" || g.ExpiresAt != r.ExpiresAt || g.TxID != "" ||
		!slices.Equal(g.hashes(), r.hashes()) || g.UTXOs[0] != r.UTXOs[0] {
		t.Fatalf("get %+v, reserved %+v", g, r)
	}
	created, updated := parseAPITime(t, g.CreatedAt), parseAPITime(t, g.UpdatedAt)
	if created.Before(before.Add(-time.Second)) || updated.Before(created.Add(-time.Millisecond)) {
		t.Fatalf("created %v updated %v", created, updated)
	}

	// By asset and program, upper-case input; a named hash.
	target := f.utxos[3]
	b = fmt.Sprintf(`{"asset":%q,"program":%q,"hashes":[%q]}`, strings.ToUpper(f.pool.Asset), strings.ToUpper(f.pool.Program), strings.ToUpper(target.Hash))
	r2 := f.reserveOK(b)
	if len(r2.UTXOs) != 1 || r2.UTXOs[0] != (resUTXO{Hash: target.Hash, Asset: f.pool.Asset, Amount: target.Amount}) || r2.Owner != "" || r2.Fence <= r.Fence {
		t.Fatalf("by hash %+v", r2)
	}
	if d := parseAPITime(t, r2.ExpiresAt).Sub(before); d < 599*time.Second || d > 602*time.Second {
		t.Fatalf("default ttl: expires in %v", d)
	}

	// By amount: best fit among what is left.
	left := map[uint64]bool{}
	for _, u := range f.utxos {
		left[u.Amount] = u.Hash != target.Hash && u.Hash != r.UTXOs[0].Hash
	}
	var want uint64
	for _, a := range []uint64{10, 20, 30, 40, 50} {
		if left[a] && a >= 15 {
			want = a
			break
		}
	}
	r3 := f.reserveOK(fmt.Sprintf(`{"pool":%d,"amount":15}`, f.pool.ID))
	if len(r3.UTXOs) != 1 || r3.UTXOs[0].Amount != want {
		t.Fatalf("amount 15 got %+v, want the free UTXO of %d", r3.UTXOs, want)
	}

	// The rest with combine: two UTXOs are left, their sum covers it.
	var sum uint64
	for _, u := range f.utxos {
		if u.Hash != target.Hash && u.Hash != r.UTXOs[0].Hash && u.Hash != r3.UTXOs[0].Hash {
			sum += u.Amount
		}
	}
	r4 := f.reserveOK(fmt.Sprintf(`{"pool":%d,"amount":%d,"combine":true}`, f.pool.ID, sum))
	if len(r4.UTXOs) != 2 || r4.UTXOs[0].Amount+r4.UTXOs[1].Amount != sum {
		t.Fatalf("combine %d got %+v", sum, r4.UTXOs)
	}

	// Nothing left.
	status, raw = f.call(http.MethodPost, "/v1/reservations", fmt.Sprintf(`{"pool":%d,"count":1}`, f.pool.ID))
	wantError(t, "empty pool", status, raw, http.StatusConflict, "no_utxo_available")
	status, raw = f.call(http.MethodPost, "/v1/reservations", fmt.Sprintf(`{"pool":%d,"hashes":[%q]}`, f.pool.ID, target.Hash))
	wantError(t, "held hash", status, raw, http.StatusConflict, "utxo_locked")
	status, raw = f.call(http.MethodPost, "/v1/reservations", fmt.Sprintf(`{"pool":%d,"hashes":[%q]}`, f.pool.ID, randHex(t, 32)))
	wantError(t, "unknown hash", status, raw, http.StatusNotFound, "utxo_not_found")
	status, raw = f.call(http.MethodPost, "/v1/reservations", `{"pool":987654321,"count":1}`)
	wantError(t, "unknown pool id", status, raw, http.StatusNotFound, "pool_not_found")
	status, raw = f.call(http.MethodPost, "/v1/reservations", fmt.Sprintf(`{"asset":%q,"program":"51","count":1}`, f.pool.Asset))
	wantError(t, "unknown asset and program", status, raw, http.StatusNotFound, "pool_not_found")

	// GET of ids that are not known.
	for _, id := range []string{randHex(t, 16), strings.ToUpper(randHex(t, 16)), "abc", randHex(t, 17)} {
		status, raw := f.call(http.MethodGet, "/v1/reservations/"+id, "")
		wantError(t, "get "+id, status, raw, http.StatusNotFound, "reservation_not_found")
	}
}

// TestReserveConcurrent: 100 clients race for a pool of 20 with count=1.
func TestReserveConcurrent(t *testing.T) {
	t.Parallel()
	amounts := make([]uint64, 20)
	for i := range amounts {
		amounts[i] = uint64(100 + i)
	}
	f := newResFixture(t, amounts...)
	const clients = 100
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		codes  = map[int]int{}
		errs   = map[string]int{}
		hashes = map[string]int{}
		ids    = map[string]bool{}
		start  = make(chan struct{})
	)
	body := fmt.Sprintf(`{"pool":%d,"count":1}`, f.pool.ID)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			status, b := do(t, f.app, http.MethodPost, "/v1/reservations", body)
			mu.Lock()
			defer mu.Unlock()
			codes[status]++
			if status == http.StatusCreated {
				var r resBody
				if err := json.Unmarshal(b, &r); err == nil {
					ids[r.ID] = true
					for _, h := range r.hashes() {
						hashes[h]++
					}
				}
				return
			}
			var e apiErr
			_ = json.Unmarshal(b, &e)
			errs[e.Code]++
		}()
	}
	close(start)
	wg.Wait()
	if codes[http.StatusCreated] != 20 || codes[http.StatusConflict] != 80 || errs["no_utxo_available"] != 80 {
		t.Fatalf("statuses %v, errors %v; want 20 x 201 and 80 x 409 no_utxo_available", codes, errs)
	}
	if len(hashes) != 20 || len(ids) != 20 {
		t.Fatalf("%d distinct UTXOs in %d reservations: %v", len(hashes), len(ids), hashes)
	}
	for h, n := range hashes {
		if n != 1 {
			t.Fatalf("utxo %s handed out %d times", h, n)
		}
	}
	var rows int64
	if err := f.store.DB().Model(&storage.Reservation{}).Where("pool_id = ?", f.pool.ID).Count(&rows).Error; err != nil {
		t.Fatal(err)
	}
	if rows != 20 {
		t.Fatalf("%d journal rows, want 20", rows)
	}
}

func TestReserveIdempotency(t *testing.T) {
	t.Parallel()
	f := newResFixture(t, 10, 20, 30)
	body := fmt.Sprintf(`{"pool":%d,"count":1,"owner":"bob"}`, f.pool.ID)
	key := "order-42/" + randHex(t, 8)

	status, first := f.call(http.MethodPost, "/v1/reservations", body, "Idempotency-Key", key)
	if status != http.StatusCreated {
		t.Fatalf("first: %d %s", status, first)
	}
	req := newJSONRequest(t, "/v1/reservations", body)
	req.Header.Set("Idempotency-Key", key)
	resp, err := f.app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := readAll(resp)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(again, first) {
		t.Fatalf("replay: %d replayed=%q %s; want 200 replayed=true %s", resp.StatusCode, resp.Header.Get("Idempotent-Replayed"), again, first)
	}
	r1 := decode[resBody](t, first)

	// Another key, or none, is another reservation.
	r2 := f.reserveOK(body, "Idempotency-Key", key+"-2")
	r3 := f.reserveOK(body)
	if r2.ID == r1.ID || r3.ID == r1.ID || r2.ID == r3.ID || r2.UTXOs[0].Hash == r1.UTXOs[0].Hash {
		t.Fatalf("distinct keys shared a reservation: %s %s %s", r1.ID, r2.ID, r3.ID)
	}
	var rows int64
	if err := f.store.DB().Model(&storage.Reservation{}).Count(&rows).Error; err != nil || rows != 3 {
		t.Fatalf("%d journal rows (%v), want 3", rows, err)
	}

	// A first reply without the header.
	req = newJSONRequest(t, "/v1/reservations", fmt.Sprintf(`{"pool":%d,"count":1}`, f.pool.ID))
	resp, err = f.app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := readAll(resp)
	wantError(t, "exhausted", resp.StatusCode, b, http.StatusConflict, "no_utxo_available")
	if resp.Header.Get("Idempotent-Replayed") != "" {
		t.Fatal("replay header on a refusal")
	}
}

func readAll(resp *http.Response) ([]byte, error) {
	defer func() { _ = resp.Body.Close() }()
	return io.ReadAll(resp.Body)
}

func TestExtend(t *testing.T) {
	t.Parallel()
	f := newResFixture(t, 10, 20)
	r := f.reserveOK(fmt.Sprintf(`{"pool":%d,"count":1,"ttl_seconds":30}`, f.pool.ID))
	start := time.Now()
	status, b := f.call(http.MethodPost, "/v1/reservations/"+r.ID+"/extend", `{"ttl_seconds":3600}`)
	if status != http.StatusOK {
		t.Fatalf("extend: %d %s", status, b)
	}
	e := decode[resBody](t, b)
	exp := parseAPITime(t, e.ExpiresAt)
	if e.ID != r.ID || e.State != "held" || e.Fence < r.Fence || exp.Sub(start) < 3599*time.Second || exp.Sub(start) > 3602*time.Second {
		t.Fatalf("extended %+v", e)
	}
	parseAPITime(t, e.CreatedAt)
	parseAPITime(t, e.UpdatedAt)
	if row := f.journalRow(r.ID); !row.ExpiresAt.Equal(exp) {
		t.Fatalf("journal expires %v, answer %v", row.ExpiresAt, exp)
	}
	if d, held := f.heldFor(f.pool.ID, r.UTXOs[0].Hash); !held || d < 3590*time.Second {
		t.Fatalf("held for %v", d)
	}

	// Lifetime cap: pretend the reservation was made a day ago.
	key := fmt.Sprintf("%s{p%d}:res:%s", f.prefix, f.pool.ID, r.ID)
	if err := f.rdb.HSet(testCtx(t), key, "created", time.Now().Add(-lockmgr.MaxLifetime).UnixMilli()).Err(); err != nil {
		t.Fatal(err)
	}
	status, b = f.call(http.MethodPost, "/v1/reservations/"+r.ID+"/extend", `{"ttl_seconds":60}`)
	wantError(t, "past lifetime", status, b, http.StatusConflict, "lifetime_exceeded")

	// Expiry: a 1 s reservation cannot be extended once it ran out.
	short := f.reserveOK(fmt.Sprintf(`{"pool":%d,"count":1,"ttl_seconds":1}`, f.pool.ID))
	testenv.Eventually(t, 10*time.Second, func() error {
		if status, b := f.call(http.MethodGet, "/v1/reservations/"+short.ID, ""); status != http.StatusOK || decode[resBody](t, b).State != "expired" {
			return fmt.Errorf("the 1 s reservation: %d %s", status, b)
		}
		return nil
	})
	status, b = f.call(http.MethodPost, "/v1/reservations/"+short.ID+"/extend", `{"ttl_seconds":60}`)
	wantError(t, "expired", status, b, http.StatusGone, "reservation_ended")
	if g := f.getRes(short.ID); g.State != "expired" || g.ID != short.ID || len(g.UTXOs) != 1 ||
		g.UTXOs[0] != short.UTXOs[0] {
		t.Fatalf("expired reservation shown as %+v", g)
	}

	status, b = f.call(http.MethodPost, "/v1/reservations/"+randHex(t, 16)+"/extend", `{"ttl_seconds":60}`)
	wantError(t, "unknown", status, b, http.StatusNotFound, "reservation_not_found")
	status, b = f.call(http.MethodPost, "/v1/reservations/nope/extend", `{"ttl_seconds":60}`)
	wantError(t, "malformed id", status, b, http.StatusNotFound, "reservation_not_found")
}

func TestSubmit(t *testing.T) {
	t.Parallel()
	f := newResFixture(t, 10, 20)
	r := f.reserveOK(fmt.Sprintf(`{"pool":%d,"count":1,"ttl_seconds":60}`, f.pool.ID))
	tx := randHex(t, 32)
	status, b := f.call(http.MethodPost, "/v1/reservations/"+r.ID+"/submit", fmt.Sprintf(`{"tx_id":%q}`, strings.ToUpper(tx)))
	if status != http.StatusOK {
		t.Fatalf("submit: %d %s", status, b)
	}
	s := decode[resBody](t, b)
	if s.State != "submitted" || s.TxID != tx || s.ID != r.ID {
		t.Fatalf("submitted %+v", s)
	}
	if exp := parseAPITime(t, s.ExpiresAt); time.Until(exp) < 29*time.Minute {
		t.Fatalf("submitted hold ends at %v, want the submit grace", exp)
	}
	if row := f.journalRow(r.ID); row.State != storage.ResSubmitted || row.TxID != tx {
		t.Fatalf("journal %+v", row)
	}
	if g := f.getRes(r.ID); g.State != "submitted" || g.TxID != tx {
		t.Fatalf("get after submit %+v", g)
	}

	// The same tx again is a no-op; another one is refused.
	status, b = f.call(http.MethodPost, "/v1/reservations/"+r.ID+"/submit", fmt.Sprintf(`{"tx_id":%q}`, tx))
	if status != http.StatusOK || decode[resBody](t, b).TxID != tx {
		t.Fatalf("submit again: %d %s", status, b)
	}
	status, b = f.call(http.MethodPost, "/v1/reservations/"+r.ID+"/submit", fmt.Sprintf(`{"tx_id":%q}`, randHex(t, 32)))
	wantError(t, "other tx", status, b, http.StatusConflict, "tx_mismatch")
	status, b = f.call(http.MethodPost, "/v1/reservations/"+r.ID+"/extend", `{"ttl_seconds":60}`)
	wantError(t, "extend submitted", status, b, http.StatusConflict, "reservation_submitted")

	// A submitted reservation cannot be released: 409, nothing changes.
	before := f.snapshot()
	status, b = f.call(http.MethodDelete, "/v1/reservations/"+r.ID, "")
	wantError(t, "release submitted", status, b, http.StatusConflict, "reservation_submitted")
	if after := f.snapshot(); !before.equal(after) {
		t.Fatal("a refused release of a submitted reservation changed state")
	}

	// The chain spends its UTXO (a listing no longer shows it) and the syncer
	// applies that: the reservation is settled spent and the journal answers.
	ctx := testCtx(t)
	synced, err := f.store.ReconcilePool(ctx, f.pool, withoutHash(f.utxos, r.UTXOs[0].Hash))
	if err != nil {
		t.Fatal(err)
	}
	applier := syncer.Applier{Store: f.store, Locks: f.locks, Log: slog.New(slog.NewTextHandler(f.logs, nil))}
	if _, err := applier.Apply(ctx, f.pool.ID, synced.Touched()); err != nil {
		t.Fatal(err)
	}
	if g := f.getRes(r.ID); g.State != "spent" || g.TxID != tx || len(g.UTXOs) != 1 || g.UTXOs[0] != r.UTXOs[0] {
		t.Fatalf("get after settle %+v", g)
	}
	// Releasing it now is refused as ended (410), not answered as released.
	status, b = f.call(http.MethodDelete, "/v1/reservations/"+r.ID, "")
	wantError(t, "release spent", status, b, http.StatusGone, "reservation_ended")
	status, b = f.call(http.MethodPost, "/v1/reservations/"+r.ID+"/submit", fmt.Sprintf(`{"tx_id":%q}`, tx))
	wantError(t, "submit ended", status, b, http.StatusGone, "reservation_ended")

	status, b = f.call(http.MethodPost, "/v1/reservations/"+randHex(t, 16)+"/submit", fmt.Sprintf(`{"tx_id":%q}`, tx))
	wantError(t, "unknown", status, b, http.StatusNotFound, "reservation_not_found")
}

// TestGetSeesAChangeBeforeItsJournalWrite: a change of a live reservation
// takes effect in Redis first and its journal write follows. A GET in
// between must show the change, as a concurrent extend (refused: submitted)
// already saw it; answering from the journal alone answered held, a history
// the linearizability check rejected.
func TestGetSeesAChangeBeforeItsJournalWrite(t *testing.T) {
	t.Parallel()
	f := newResFixture(t, 10, 20)
	r := f.reserveOK(fmt.Sprintf(`{"pool":%d,"count":1,"ttl_seconds":60}`, f.pool.ID))
	ctx := testCtx(t)
	// The same Redis keys without the journal: the change lands in Redis,
	// its journal write is still on its way.
	redisOnly := lockmgr.New(f.rdb, lockmgr.Options{Prefix: f.prefix})
	t.Cleanup(func() { _ = redisOnly.Close() })
	if _, err := redisOnly.Extend(ctx, f.pool.ID, r.ID, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	if g := f.getRes(r.ID); time.Until(parseAPITime(t, g.ExpiresAt)) < 9*time.Minute {
		t.Fatalf("get after an extend not yet journaled: expires %s, want about 10 minutes from now", g.ExpiresAt)
	}
	tx := randHex(t, 32)
	if _, err := redisOnly.Submit(ctx, f.pool.ID, r.ID, tx); err != nil {
		t.Fatal(err)
	}
	status, b := f.call(http.MethodPost, "/v1/reservations/"+r.ID+"/extend", `{"ttl_seconds":60}`)
	wantError(t, "extend submitted", status, b, http.StatusConflict, "reservation_submitted")
	if row := f.journalRow(r.ID); row.State != storage.ResHeld {
		t.Fatalf("journal %+v, want it still held", row)
	}
	if g := f.getRes(r.ID); g.State != "submitted" || g.TxID != tx {
		t.Fatalf("get after a submit not yet journaled: %+v, want it submitted", g)
	}
	// The chain spends its UTXO and settles it: the journal first, Redis
	// after. In between the journal's ending wins.
	synced, err := f.store.ReconcilePool(ctx, f.pool, withoutHash(f.utxos, r.UTXOs[0].Hash))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Settle(ctx, f.pool.ID, synced.Touched()); err != nil {
		t.Fatal(err)
	}
	if _, err := redisOnly.Peek(ctx, f.pool.ID, r.ID); err != nil {
		t.Fatalf("redis no longer has it live: %v", err)
	}
	if g := f.getRes(r.ID); g.State != storage.ResSpent {
		t.Fatalf("get after the journal settled it: %+v, want spent", g)
	}
}

func TestRelease(t *testing.T) {
	t.Parallel()
	f := newResFixture(t, 10, 20)
	r := f.reserveOK(fmt.Sprintf(`{"pool":%d,"count":1,"owner":"carol"}`, f.pool.ID))
	hash := r.UTXOs[0].Hash
	// DELETE answers 200 with the released reservation (it used to be 204
	// without a body).
	status, b := f.call(http.MethodDelete, "/v1/reservations/"+r.ID, "")
	if status != http.StatusOK {
		t.Fatalf("release: %d %s", status, b)
	}
	rel := decode[resBody](t, b)
	if rel.ID != r.ID || rel.State != "released" || rel.Fence != r.Fence || rel.Pool != f.pool.ID || rel.Owner != "carol" ||
		len(rel.UTXOs) != 1 || rel.UTXOs[0] != r.UTXOs[0] {
		t.Fatalf("release answered %+v, reserved %+v", rel, r)
	}
	parseAPITime(t, rel.CreatedAt)
	parseAPITime(t, rel.UpdatedAt)
	if _, held := f.heldFor(f.pool.ID, hash); held {
		t.Fatal("released UTXO still held")
	}
	if row := f.journalRow(r.ID); row.State != storage.ResReleased {
		t.Fatalf("journal %+v", row)
	}
	if g := f.getRes(r.ID); g.State != "released" || g.UTXOs[0] != r.UTXOs[0] {
		t.Fatalf("get released %+v", g)
	}
	// Releasing again is answered with the final state, unchanged (it used to
	// be 410): a client whose answer was lost may simply retry.
	status, again := f.call(http.MethodDelete, "/v1/reservations/"+r.ID, "")
	if status != http.StatusOK || !bytes.Equal(again, b) {
		t.Fatalf("release twice: %d %s, want 200 %s", status, again, b)
	}
	status, b = f.call(http.MethodPost, "/v1/reservations/"+r.ID+"/extend", `{"ttl_seconds":60}`)
	wantError(t, "extend released", status, b, http.StatusGone, "reservation_ended")

	// The same hash can be reserved again at once.
	r2 := f.reserveOK(fmt.Sprintf(`{"pool":%d,"hashes":[%q]}`, f.pool.ID, hash))
	if r2.ID == r.ID || r2.UTXOs[0].Hash != hash || r2.Fence <= r.Fence {
		t.Fatalf("reserve after release %+v", r2)
	}
	// A retried DELETE of the first reservation does not touch the second.
	if status, b := f.call(http.MethodDelete, "/v1/reservations/"+r.ID, ""); status != http.StatusOK || decode[resBody](t, b).State != "released" {
		t.Fatalf("release the first again: %d %s", status, b)
	}
	if _, held := f.heldFor(f.pool.ID, hash); !held {
		t.Fatal("a retried release of an old reservation freed the UTXO of a new one")
	}
	if g := f.getRes(r2.ID); g.State != "held" {
		t.Fatalf("second reservation after the retried release: %+v", g)
	}

	status, b = f.call(http.MethodDelete, "/v1/reservations/"+randHex(t, 16), "")
	wantError(t, "unknown", status, b, http.StatusNotFound, "reservation_not_found")
	status, b = f.call(http.MethodDelete, "/v1/reservations/"+strings.ToUpper(r2.ID), "")
	wantError(t, "upper-case id", status, b, http.StatusNotFound, "reservation_not_found")
	status, b = f.call(http.MethodDelete, "/v1/reservations/nope", "")
	wantError(t, "malformed id", status, b, http.StatusNotFound, "reservation_not_found")

	// An expired reservation is not released: 410, and it stays expired.
	short := f.reserveOK(fmt.Sprintf(`{"pool":%d,"count":1,"ttl_seconds":1}`, f.pool.ID))
	ends := parseAPITime(t, short.ExpiresAt)
	waitFor(t, 5*time.Second, "the 1 s reservation to run out", func() bool { return time.Now().After(ends.Add(50 * time.Millisecond)) })
	status, b = f.call(http.MethodDelete, "/v1/reservations/"+short.ID, "")
	wantError(t, "release expired", status, b, http.StatusGone, "reservation_ended")
	if g := f.getRes(short.ID); g.State != "expired" {
		t.Fatalf("expired reservation after a release: %+v", g)
	}
}

// TestConcurrentReleasesOfOneReservation: several releases of one
// reservation at once all answer 200 with the same final state (before this
// version one answered 204 and the others 410); the release was applied
// once (one updated_at), and the UTXO is free after them.
func TestConcurrentReleasesOfOneReservation(t *testing.T) {
	t.Parallel()
	const (
		reservations = 30
		releasers    = 6
	)
	amounts := make([]uint64, reservations)
	for i := range amounts {
		amounts[i] = uint64(10 + i)
	}
	f := newResFixture(t, amounts...)
	// Two API instances on the same Redis and PostgreSQL.
	apps := []*fiber.App{f.app, f.newApp(Config{})}
	for i := 0; i < reservations; i++ {
		r := f.reserveOK(fmt.Sprintf(`{"pool":%d,"count":1}`, f.pool.ID))
		type answer struct {
			status int
			body   string
		}
		answers := make(chan answer, releasers)
		var wg sync.WaitGroup
		for k := 0; k < releasers; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := apps[k%len(apps)].Test(httptest.NewRequest(http.MethodDelete, "/v1/reservations/"+r.ID, nil), -1)
				if err != nil {
					t.Error(err)
					return
				}
				b, err := readAll(resp)
				if err != nil {
					t.Error(err)
					return
				}
				answers <- answer{resp.StatusCode, string(b)}
			}()
		}
		wg.Wait()
		close(answers)
		bodies := map[string]int{}
		for a := range answers {
			if a.status != http.StatusOK {
				t.Fatalf("reservation %d: a concurrent release answered %d %s, want 200", i, a.status, a.body)
			}
			bodies[a.body]++
		}
		if len(bodies) != 1 {
			t.Fatalf("reservation %d: concurrent releases answered different bodies: %v", i, bodies)
		}
		for body := range bodies {
			if got := decode[resBody](t, []byte(body)); got.ID != r.ID || got.State != "released" {
				t.Fatalf("reservation %d: released as %+v", i, got)
			}
		}
		if _, held := f.heldFor(f.pool.ID, r.UTXOs[0].Hash); held {
			t.Fatalf("reservation %d: UTXO still held after the releases", i)
		}
		if row := f.journalRow(r.ID); row.State != storage.ResReleased {
			t.Fatalf("reservation %d: journal %+v", i, row)
		}
	}
}

// TestReleaseOfAnOlderFormatID: a live reservation whose id does not name
// its pool (minted before ids did, put back into Redis by a rebuild) is
// released through the journal.
func TestReleaseOfAnOlderFormatID(t *testing.T) {
	t.Parallel()
	f := newResFixture(t, 10, 20)
	ctx := testCtx(t)
	id := randHex(t, 16)
	for _, ok := lockmgr.PoolOfID(id); ok; _, ok = lockmgr.PoolOfID(id) {
		id = randHex(t, 16)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	old := &lockmgr.Reservation{ID: id, PoolID: f.pool.ID, Fence: 1, Owner: "old-client", State: lockmgr.StateHeld,
		Items: []lockmgr.Item{{Hash: f.utxos[0].Hash, Amount: f.utxos[0].Amount}}, CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute)}
	j := storage.NewJournal(f.store, storage.JournalOptions{})
	defer j.Close()
	if err := j.Record(ctx, old); err != nil {
		t.Fatal(err)
	}
	gen, err := f.locks.SyncGeneration(ctx, f.pool.ID)
	if err != nil {
		t.Fatal(err)
	}
	all := []lockmgr.Item{{Hash: f.utxos[0].Hash, Amount: f.utxos[0].Amount}, {Hash: f.utxos[1].Hash, Amount: f.utxos[1].Amount}}
	if err := f.locks.Rebuild(ctx, f.pool.ID, lockmgr.Snapshot{Available: all, Live: []*lockmgr.Reservation{old}, FenceFloor: 1, SyncGen: gen}); err != nil {
		t.Fatal(err)
	}
	if _, held := f.heldFor(f.pool.ID, f.utxos[0].Hash); !held {
		t.Fatal("the rebuilt reservation holds nothing")
	}
	status, b := f.call(http.MethodDelete, "/v1/reservations/"+id, "")
	if got := decode[resBody](t, b); status != http.StatusOK || got.ID != id || got.State != "released" || got.Owner != "old-client" {
		t.Fatalf("release: %d %s", status, b)
	}
	if _, held := f.heldFor(f.pool.ID, f.utxos[0].Hash); held {
		t.Fatal("released UTXO still held")
	}
	if g := f.getRes(id); g.State != "released" {
		t.Fatalf("get after release: %+v", g)
	}
	// Again: the final state, not 410 (before this version it was 410).
	status, again := f.call(http.MethodDelete, "/v1/reservations/"+id, "")
	if status != http.StatusOK || !bytes.Equal(again, b) {
		t.Fatalf("release again: %d %s, want 200 %s", status, again, b)
	}
}

// TestReservationBadInputChangesNothing: every malformed field is a 400 and
// leaves Redis and PostgreSQL as they were.
func TestReservationBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	f := newResFixture(t, 10, 20, 30)
	held := f.reserveOK(fmt.Sprintf(`{"pool":%d,"count":1}`, f.pool.ID))
	p := f.pool.ID
	free := f.utxos[0].Hash
	if free == held.UTXOs[0].Hash {
		free = f.utxos[1].Hash
	}
	before := f.snapshot()

	bodies := []string{
		``, `{`, `[]`, `null`, `"x"`,
		fmt.Sprintf(`{"pool":%d,"count":1}{}`, p),
		fmt.Sprintf(`{"pool":%d,"count":1,"extra":true}`, p),
		fmt.Sprintf(`{"pool":%d,"Count":1}`, p),
		fmt.Sprintf(`{"pool":%d,"count":1,"count":1}`, p),
		`{"count":1}`, `{"pool":0,"count":1}`, `{"pool":-1,"count":1}`, fmt.Sprintf(`{"pool":"%d","count":1}`, p),
		fmt.Sprintf(`{"pool":%d,"asset":%q,"program":%q,"count":1}`, p, f.pool.Asset, f.pool.Program),
		fmt.Sprintf(`{"asset":%q,"count":1}`, f.pool.Asset),
		fmt.Sprintf(`{"asset":"zz","program":%q,"count":1}`, f.pool.Program),
		fmt.Sprintf(`{"asset":%q,"program":"abc","count":1}`, f.pool.Asset),
		fmt.Sprintf(`{"pool":%d}`, p),
		fmt.Sprintf(`{"pool":%d,"count":1,"amount":10}`, p),
		fmt.Sprintf(`{"pool":%d,"count":1,"hashes":[%q]}`, p, free),
		fmt.Sprintf(`{"pool":%d,"hashes":[]}`, p),
		fmt.Sprintf(`{"pool":%d,"hashes":[%q,%q]}`, p, free, strings.ToUpper(free)),
		fmt.Sprintf(`{"pool":%d,"hashes":[%q]}`, p, free[:63]),
		fmt.Sprintf(`{"pool":%d,"hashes":[%q]}`, p, "0x"+free[2:]),
		fmt.Sprintf(`{"pool":%d,"hashes":[%s]}`, p, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("%q,", free), 101), ",")),
		fmt.Sprintf(`{"pool":%d,"count":0}`, p), fmt.Sprintf(`{"pool":%d,"count":101}`, p), fmt.Sprintf(`{"pool":%d,"count":1.5}`, p),
		fmt.Sprintf(`{"pool":%d,"amount":0}`, p), fmt.Sprintf(`{"pool":%d,"amount":-10}`, p),
		fmt.Sprintf(`{"pool":%d,"amount":99999999999999999999}`, p),
		fmt.Sprintf(`{"pool":%d,"count":1,"combine":true}`, p), fmt.Sprintf(`{"pool":%d,"amount":5,"combine":1}`, p),
		fmt.Sprintf(`{"pool":%d,"count":1,"ttl_seconds":0}`, p), fmt.Sprintf(`{"pool":%d,"count":1,"ttl_seconds":3601}`, p),
		fmt.Sprintf(`{"pool":%d,"count":1,"wait_seconds":31}`, p), fmt.Sprintf(`{"pool":%d,"count":1,"wait_seconds":-1}`, p),
		fmt.Sprintf(`{"pool":%d,"count":1,"owner":"legacy"}`, p),
		fmt.Sprintf(`{"pool":%d,"count":1,"owner":%q}`, p, strings.Repeat("o", 65)),
		fmt.Sprintf(`{"pool":%d,"count":1,"owner":"tab\there"}`, p),
	}
	for _, body := range bodies {
		status, b := f.call(http.MethodPost, "/v1/reservations", body)
		wantError(t, "reserve "+body, status, b, http.StatusBadRequest, "bad_request")
	}
	for _, key := range []string{strings.Repeat("k", 129), "clé"} {
		status, b := f.call(http.MethodPost, "/v1/reservations", fmt.Sprintf(`{"pool":%d,"count":1}`, p), "Idempotency-Key", key)
		wantError(t, "idempotency key "+key, status, b, http.StatusBadRequest, "bad_request")
	}
	for _, body := range []string{``, `{}`, `{"ttl_seconds":0}`, `{"ttl_seconds":3601}`, `{"ttl_seconds":"60"}`, `{"ttl":60}`, `{"ttl_seconds":60,"x":1}`} {
		status, b := f.call(http.MethodPost, "/v1/reservations/"+held.ID+"/extend", body)
		wantError(t, "extend "+body, status, b, http.StatusBadRequest, "bad_request")
	}
	for _, body := range []string{``, `{}`, `{"tx_id":""}`, fmt.Sprintf(`{"tx_id":%q}`, free[:63]), `{"tx_id":"` + strings.Repeat("g", 64) + `"}`,
		fmt.Sprintf(`{"tx_id":%q,"owner":"x"}`, free)} {
		status, b := f.call(http.MethodPost, "/v1/reservations/"+held.ID+"/submit", body)
		wantError(t, "submit "+body, status, b, http.StatusBadRequest, "bad_request")
	}
	if after := f.snapshot(); !before.equal(after) {
		t.Fatalf("bad input changed state:\nbefore %+v\nafter  %+v", before, after)
	}
	if g := f.getRes(held.ID); g.State != "held" || g.ExpiresAt != held.ExpiresAt {
		t.Fatalf("held reservation changed: %+v", g)
	}
}

// TestReserveWait: a waiter on an empty pool gets the UTXO soon after another
// client releases it; a waiter nobody helps gets 409 after its wait.
func TestReserveWait(t *testing.T) {
	t.Parallel()
	f := newResFixture(t, 10)
	first := f.reserveOK(fmt.Sprintf(`{"pool":%d,"count":1}`, f.pool.ID))

	status, b := f.call(http.MethodPost, "/v1/reservations", fmt.Sprintf(`{"pool":%d,"count":1,"wait_seconds":1}`, f.pool.ID))
	wantError(t, "wait in vain", status, b, http.StatusConflict, "no_utxo_available")

	type result struct {
		status int
		body   []byte
	}
	done := make(chan result, 1)
	go func() {
		status, b := do(t, f.app, http.MethodPost, "/v1/reservations", fmt.Sprintf(`{"pool":%d,"count":1,"wait_seconds":10}`, f.pool.ID))
		done <- result{status, b}
	}()
	// The waiter waits: the lock manager listens for released UTXOs (a
	// message on another pool's channel reaches it), which it starts doing
	// for the first waiter.
	testenv.Eventually(t, 10*time.Second, func() error {
		ch := fmt.Sprintf("%s{p%d}:freed", f.prefix, f.pool.ID+1000)
		if n, err := f.rdb.Publish(testCtx(t), ch, "").Result(); err != nil || n == 0 {
			return fmt.Errorf("publish reached %d subscribers: %v", n, err)
		}
		return nil
	})
	select {
	case r := <-done:
		t.Fatalf("waiter answered before the release: %d %s", r.status, r.body)
	default:
	}
	if status, b := f.call(http.MethodDelete, "/v1/reservations/"+first.ID, ""); status != http.StatusOK {
		t.Fatalf("release: %d %s", status, b)
	}
	select {
	case r := <-done:
		if r.status != http.StatusCreated {
			t.Fatalf("waiter: %d %s", r.status, r.body)
		}
		got := decode[resBody](t, r.body)
		if got.UTXOs[0].Hash != first.UTXOs[0].Hash || got.ID == first.ID {
			t.Fatalf("waiter got %+v", got)
		}
	case <-time.After(5 * time.Second): // the release's notification wakes it (lockmgr's test), its poll would too
		t.Fatal("waiter not served 5 s after the release")
	}
}

func TestReservationUnavailable(t *testing.T) {
	t.Parallel()
	f := newResFixture(t, 10, 20)
	r := f.reserveOK(fmt.Sprintf(`{"pool":%d,"count":1}`, f.pool.ID))
	body := fmt.Sprintf(`{"pool":%d,"count":1}`, f.pool.ID)

	// A journal that fails: 503, nothing held, nothing journaled.
	failing := f.newApp(Config{Locks: f.newLocks(failJournal{})})
	status, b := do(t, failing, http.MethodPost, "/v1/reservations", body)
	wantError(t, "journal down", status, b, http.StatusServiceUnavailable, "unavailable")
	if strings.Contains(string(b), "journal") || strings.Contains(string(b), "disk") {
		t.Fatalf("internal error leaked: %s", b)
	}
	if free := f.listUTXOs("", "desc"); len(free) != 1 {
		t.Fatalf("free after a failed journal write: %v", free)
	}
	if !strings.Contains(f.logs.String(), "disk on fire") {
		t.Fatal("journal failure not logged")
	}

	// Redis unreachable.
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = dead.Close() })
	deadLocks := lockmgr.New(dead, lockmgr.Options{Prefix: f.prefix})
	noRedis := f.newApp(Config{Locks: deadLocks})
	req := newJSONRequest(t, "/v1/reservations", body)
	resp, err := noRedis.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = readAll(resp)
	wantError(t, "redis down", resp.StatusCode, b, http.StatusServiceUnavailable, "unavailable")
	if resp.Header.Get("Retry-After") == "" || strings.Contains(string(b), "127.0.0.1") || strings.Contains(string(b), "dial") {
		t.Fatalf("redis down: Retry-After %q body %s", resp.Header.Get("Retry-After"), b)
	}
	// A read needs only the journal.
	if status, b = do(t, noRedis, http.MethodGet, "/v1/reservations/"+r.ID, ""); status != http.StatusOK {
		t.Fatalf("get with redis down: %d %s; want 200 from the journal", status, b)
	}

	// Redis lost the pool: rebuilding.
	if err := f.rdb.Del(testCtx(t), fmt.Sprintf("%s{p%d}:ready", f.prefix, f.pool.ID)).Err(); err != nil {
		t.Fatal(err)
	}
	req = newJSONRequest(t, "/v1/reservations", body)
	resp, err = f.app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = readAll(resp)
	wantError(t, "rebuilding", resp.StatusCode, b, http.StatusServiceUnavailable, "rebuilding")
	if resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("rebuilding: Retry-After %q", resp.Header.Get("Retry-After"))
	}
	// A release while Redis has lost the pool is decided by the journal: it
	// is released there at once (200) and Redis follows when the pool is
	// rebuilt (before this version it answered 503 rebuilding).
	status, b = f.call(http.MethodDelete, "/v1/reservations/"+r.ID, "")
	if got := decode[resBody](t, b); status != http.StatusOK || got.ID != r.ID || got.State != "released" {
		t.Fatalf("release while rebuilding: %d %s", status, b)
	}
	if row := f.journalRow(r.ID); row.State != storage.ResReleased {
		t.Fatalf("journal after a release while rebuilding: %+v", row)
	}

	// PostgreSQL gone.
	db, err := f.store.DB().DB()
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	status, b = f.call(http.MethodGet, "/v1/reservations/"+r.ID, "")
	wantError(t, "get with postgres down", status, b, http.StatusServiceUnavailable, "unavailable")
	// The pool is cached, so the reserve reaches Redis, which has still lost it.
	status, b = f.call(http.MethodPost, "/v1/reservations", body)
	wantError(t, "reserve with postgres down", status, b, http.StatusServiceUnavailable, "rebuilding")
}

// failJournal fails every write.
type failJournal struct{}

func (failJournal) Record(context.Context, *lockmgr.Reservation) error {
	return errors.New("disk on fire")
}

func (failJournal) Update(context.Context, *lockmgr.Reservation, ...string) error {
	return errors.New("disk on fire")
}

func (failJournal) Released(*lockmgr.Reservation, time.Time) {}

func (failJournal) UpdateLater(*lockmgr.Reservation, ...string) {}
func (failJournal) Withdrawn(*lockmgr.Reservation)              {}
func (failJournal) FollowReloads(func(int64, []string))         {}

func (failJournal) Lookup(context.Context, string) (*lockmgr.Reservation, error) {
	return nil, errors.New("disk on fire")
}

func (failJournal) LookupKey(context.Context, string) (*lockmgr.Reservation, error) {
	return nil, errors.New("disk on fire")
}

func TestStatus(t *testing.T) {
	t.Parallel()
	f := newResFixture(t, 10)
	other, _ := f.addPool(randHex(t, 32), "51", 5)
	now := time.Now().UTC().Truncate(time.Second)
	if err := f.store.SaveCursor(testCtx(t), storage.SyncCursor{PoolID: f.pool.ID, Job: "utxo", Height: 77, Epoch: 2, LastSuccess: &now}); err != nil {
		t.Fatal(err)
	}
	status, b := f.call(http.MethodGet, "/v1/status", "")
	if status != http.StatusOK {
		t.Fatalf("status: %d %s", status, b)
	}
	var got struct {
		Leader json.RawMessage `json:"leader"`
		Pools  []struct {
			ID   int64                 `json:"id"`
			Sync map[string]cursorJSON `json:"sync"`
		} `json:"pools"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if string(got.Leader) != "null" || len(got.Pools) != 2 {
		t.Fatalf("status %s", b)
	}
	for _, p := range got.Pools {
		switch p.ID {
		case f.pool.ID:
			c, ok := p.Sync["utxo"]
			if !ok || len(p.Sync) != 1 || c.Height != 77 || c.Epoch != 2 || c.LastSuccess == nil || !c.LastSuccess.Equal(now) {
				t.Fatalf("pool %d sync %+v", p.ID, p.Sync)
			}
		case other.ID:
			if p.Sync == nil || len(p.Sync) != 0 {
				t.Fatalf("pool %d sync %+v, want {}", p.ID, p.Sync)
			}
		default:
			t.Fatalf("unknown pool %d", p.ID)
		}
	}
	if !strings.Contains(string(b), `"sync":{}`) {
		t.Fatalf("a pool without cursors must show sync {}: %s", b)
	}
	// No chain pass yet: chain is null, and no cursor says how far behind it is.
	if !strings.Contains(string(b), `"chain":null`) || strings.Contains(string(b), "blocks_behind") {
		t.Fatalf("status before any chain pass: %s", b)
	}

	// The chain index: the chain's own cursor (pool 0, never listed as a
	// pool) and the pools' index cursors, which tell how far the tip is ahead.
	ctx := testCtx(t)
	tipHash := strings.Repeat("f", 64)
	for _, c := range []storage.SyncCursor{
		{PoolID: 0, Job: syncer.JobChain, Height: 1000, BlockHash: tipHash, LastSuccess: &now, LastError: "node: timeout"},
		{PoolID: f.pool.ID, Job: storage.JobIndex, Height: 990, LastSuccess: &now},
		{PoolID: other.ID, Job: storage.JobIndex, Height: 1000, LastSuccess: &now},
	} {
		if err := f.store.SaveCursor(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	status, b = f.call(http.MethodGet, "/v1/status", "")
	var withChain struct {
		Chain *chainJSON `json:"chain"`
		Pools []struct {
			ID   int64                 `json:"id"`
			Sync map[string]cursorJSON `json:"sync"`
		} `json:"pools"`
	}
	if err := json.Unmarshal(b, &withChain); err != nil || status != http.StatusOK {
		t.Fatalf("status: %d %s", status, b)
	}
	if c := withChain.Chain; c == nil || c.TipHeight != 1000 || c.TipHash != tipHash || c.LastError != "node: timeout" ||
		c.LastSuccess == nil || !c.LastSuccess.Equal(now) || len(withChain.Pools) != 2 {
		t.Fatalf("status with the chain: %s", b)
	}
	for _, p := range withChain.Pools {
		want := map[int64]int64{f.pool.ID: 10, other.ID: 0}[p.ID]
		if idx, ok := p.Sync[storage.JobIndex]; !ok || idx.BlocksBehind == nil || *idx.BlocksBehind != want {
			t.Fatalf("pool %d: index cursor %+v, want %d blocks behind: %s", p.ID, p.Sync, want, b)
		}
		if utxo, ok := p.Sync["utxo"]; ok && utxo.BlocksBehind != nil {
			t.Fatalf("pool %d: the utxo job has blocks_behind: %s", p.ID, b)
		}
	}
	// GET /v1/pools/{id} shows the same.
	_, b = f.call(http.MethodGet, fmt.Sprintf("/v1/pools/%d", f.pool.ID), "")
	if d := decode[poolDetail](t, b); d.Sync[storage.JobIndex].BlocksBehind == nil || *d.Sync[storage.JobIndex].BlocksBehind != 10 ||
		d.Sync["utxo"].Height != 77 {
		t.Fatalf("pool: %s", b)
	}
}
