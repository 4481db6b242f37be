package handlers

// Regression tests of issue 13, case 5: an Idempotency-Key is bound to the
// fingerprint of its request (method, route, canonical body, owner), lives in
// PostgreSQL as well as in Redis, and concurrent duplicates over several API
// instances make one reservation.

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

// gateJournal is a real journal whose Record waits until the gate opens: a
// grant stays in flight (made in Redis, not yet journalled) for as long as a
// test wants.
type gateJournal struct {
	*storage.Journal
	entered  chan struct{} // a value per Record that reached the gate
	gate     chan struct{} // closed to let Records through
	openOnce sync.Once
}

// newGateJournal returns a closed gate on a journal of store, closed when
// the test ends; register the gate's open after it.
func newGateJournal(t testing.TB, store *storage.Store) *gateJournal {
	j := storage.NewJournal(store, storage.JournalOptions{})
	t.Cleanup(j.Close)
	return &gateJournal{Journal: j, entered: make(chan struct{}, 100), gate: make(chan struct{})}
}

func (g *gateJournal) Record(ctx context.Context, r *lockmgr.Reservation) error {
	g.entered <- struct{}{}
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Journal.Record(ctx, r)
}

// open lets every Record through, now and later.
func (g *gateJournal) open() { g.openOnce.Do(func() { close(g.gate) }) }

// waitEntered waits until a Record reached the gate.
func (g *gateJournal) waitEntered(t testing.TB) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no grant reached the journal")
	}
}

// reserveResp is the answer of a POST /v1/reservations.
type reserveResp struct {
	status   int
	replayed string
	retry    string
	body     []byte
}

func reserveOn(t testing.TB, app *fiber.App, body string, header ...string) reserveResp {
	t.Helper()
	req := newJSONRequest(t, "/v1/reservations", body)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := app.Test(req, -1)
	if err != nil {
		t.Fatalf("reserve %s: %v", body, err)
	}
	b, err := readAll(resp)
	if err != nil {
		t.Fatal(err)
	}
	return reserveResp{resp.StatusCode, resp.Header.Get("Idempotent-Replayed"), resp.Header.Get("Retry-After"), b}
}

// journalCount is the number of reservations the journal has.
func (f *fixture) journalCount() int64 {
	f.t.Helper()
	var n int64
	if err := f.store.DB().WithContext(testCtx(f.t)).Model(&storage.Reservation{}).Count(&n).Error; err != nil {
		f.t.Fatal(err)
	}
	return n
}

// TestIdempotencyKeyBoundToTheRequest: the same key with the same request,
// however it is written, replays the first reservation; with another
// request (count, amount, hashes, ttl, wait, owner, pool) it is a 422 that
// reserves nothing. Before this version any reuse of a key replayed.
func TestIdempotencyKeyBoundToTheRequest(t *testing.T) {
	t.Parallel()
	f := newResFixture(t, 10, 20, 30, 40)
	other, otherUTXOs := f.addPool(randHex(t, 32), "51", 7)
	replica := f.replica()
	p := f.pool.ID
	key := []string{"Idempotency-Key", "order-" + randHex(t, 8)}

	first := reserveOn(t, f.app, fmt.Sprintf(`{"pool":%d,"count":1,"owner":"bob","ttl_seconds":60}`, p), key...)
	if first.status != http.StatusCreated || first.replayed != "" {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	r1 := decode[resBody](t, first.body)

	// The same request: byte for byte, with other spacing and key order, and
	// on another API instance.
	for _, app := range []*fiber.App{f.app, replica} {
		for _, body := range []string{
			fmt.Sprintf(`{"pool":%d,"count":1,"owner":"bob","ttl_seconds":60}`, p),
			fmt.Sprintf(" {\n \"ttl_seconds\" : 60 ,\t\"owner\":\"bob\",  \"count\":1, \"pool\" : %d }\n", p),
			fmt.Sprintf(`{"owner":"bob","ttl_seconds":60,"pool":%d,"count":1,"hashes":null}`, p),
		} {
			again := reserveOn(t, app, body, key...)
			if again.status != http.StatusOK || again.replayed != "true" || decode[resBody](t, again.body).ID != r1.ID {
				t.Fatalf("replay of %s: %d replayed=%q %s; want 200 of %s", body, again.status, again.replayed, again.body, r1.ID)
			}
			if strings.HasPrefix(body, "{") && !bytes.Equal(again.body, first.body) {
				t.Fatalf("replay answered %s, the first answer was %s", again.body, first.body)
			}
		}
	}
	// An amount as a JSON number or a decimal string is the same request.
	amountKey := []string{"Idempotency-Key", "amount-" + randHex(t, 8)}
	byNumber := reserveOn(t, f.app, fmt.Sprintf(`{"pool":%d,"amount":25}`, p), amountKey...)
	byString := reserveOn(t, replica, fmt.Sprintf(`{"amount":"25","pool":%d}`, p), amountKey...)
	if byNumber.status != http.StatusCreated || byString.status != http.StatusOK || byString.replayed != "true" ||
		decode[resBody](t, byString.body).ID != decode[resBody](t, byNumber.body).ID {
		t.Fatalf("amount as a number then a string: %d %s, then %d %s", byNumber.status, byNumber.body, byString.status, byString.body)
	}

	// Another request with the same key: 422, and nothing changes anywhere.
	free := ""
	for _, u := range f.utxos {
		if u.Hash != r1.UTXOs[0].Hash && u.Amount != 30 {
			free = u.Hash
		}
	}
	before := f.snapshot()
	for _, body := range []string{
		fmt.Sprintf(`{"pool":%d,"count":2,"owner":"bob","ttl_seconds":60}`, p),
		fmt.Sprintf(`{"pool":%d,"amount":15,"owner":"bob","ttl_seconds":60}`, p),
		fmt.Sprintf(`{"pool":%d,"amount":"15","owner":"bob","ttl_seconds":60}`, p),
		fmt.Sprintf(`{"pool":%d,"hashes":[%q],"owner":"bob","ttl_seconds":60}`, p, free),
		fmt.Sprintf(`{"pool":%d,"count":1,"owner":"bob","ttl_seconds":61}`, p),
		fmt.Sprintf(`{"pool":%d,"count":1,"owner":"bob"}`, p),
		fmt.Sprintf(`{"pool":%d,"count":1,"owner":"eve","ttl_seconds":60}`, p),
		fmt.Sprintf(`{"pool":%d,"count":1,"ttl_seconds":60}`, p),
		fmt.Sprintf(`{"pool":%d,"count":1,"owner":"bob","ttl_seconds":60,"wait_seconds":1}`, p),
		fmt.Sprintf(`{"pool":%d,"count":1,"owner":"bob","ttl_seconds":60}`, other.ID),
		fmt.Sprintf(`{"asset":%q,"program":"51","count":1,"owner":"bob","ttl_seconds":60}`, other.Asset),
	} {
		for _, app := range []*fiber.App{f.app, replica} {
			got := reserveOn(t, app, body, key...)
			wantError(t, "key reused with "+body, got.status, got.body, http.StatusUnprocessableEntity, "idempotency_key_reused")
			if got.replayed != "" {
				t.Fatalf("a refused reuse is marked replayed: %s", body)
			}
		}
	}
	// Redis keeps a key in its pool's slot, so in the other pool the grant is
	// refused only by the journal and undone: that consumes a fence (fences
	// only have to grow), and nothing else may differ.
	if after := f.snapshot(); !before.withoutFences().equal(after.withoutFences()) {
		t.Fatal("a reused idempotency key changed state")
	}
	// The other pool's UTXO is still free: the key is global, not per pool.
	if got := reserveOn(t, f.app, fmt.Sprintf(`{"pool":%d,"hashes":[%q]}`, other.ID, otherUTXOs[0].Hash)); got.status != http.StatusCreated {
		t.Fatalf("the other pool's utxo: %d %s", got.status, got.body)
	}
	// The first reservation is untouched.
	if g := f.getRes(r1.ID); g.State != "held" || g.ExpiresAt != r1.ExpiresAt {
		t.Fatalf("first reservation after the refusals: %+v", g)
	}
}

// TestIdempotencyConcurrentDuplicatesOverReplicas: duplicates of one
// request sent at once to several API instances make exactly one
// reservation; every other answer is its replay (200) or 409
// idempotency_key_in_use with Retry-After, and a retry of those replays.
func TestIdempotencyConcurrentDuplicatesOverReplicas(t *testing.T) {
	t.Parallel()
	const (
		rounds     = 8
		duplicates = 24
	)
	amounts := make([]uint64, rounds+2)
	for i := range amounts {
		amounts[i] = uint64(100 + i)
	}
	f := newResFixture(t, amounts...)
	apps := []*fiber.App{f.app, f.replica(), f.replica()}
	body := fmt.Sprintf(`{"pool":%d,"count":1,"owner":"dup"}`, f.pool.ID)
	for round := 0; round < rounds; round++ {
		key := []string{"Idempotency-Key", fmt.Sprintf("dup-%d-%s", round, randHex(t, 8))}
		answers := make([]reserveResp, duplicates)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range answers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				answers[i] = reserveOn(t, apps[i%len(apps)], body, key...)
			}()
		}
		close(start)
		wg.Wait()

		created, replayed, inUse := 0, 0, 0
		id := ""
		var retry []int
		for i, a := range answers {
			switch a.status {
			case http.StatusCreated:
				created++
			case http.StatusOK:
				if a.replayed != "true" {
					t.Fatalf("round %d: 200 without Idempotent-Replayed: %s", round, a.body)
				}
				replayed++
			case http.StatusConflict:
				wantError(t, "duplicate", a.status, a.body, http.StatusConflict, "idempotency_key_in_use")
				if n, err := strconv.Atoi(a.retry); err != nil || n < 1 {
					t.Fatalf("round %d: 409 in use with Retry-After %q", round, a.retry)
				}
				inUse++
				retry = append(retry, i)
				continue
			default:
				t.Fatalf("round %d: a duplicate answered %d %s", round, a.status, a.body)
			}
			got := decode[resBody](t, a.body).ID
			if id == "" {
				id = got
			} else if got != id {
				t.Fatalf("round %d: duplicates answered reservations %s and %s", round, id, got)
			}
		}
		if created != 1 || created+replayed+inUse != duplicates {
			t.Fatalf("round %d: %d created, %d replayed, %d in use; want exactly one created", round, created, replayed, inUse)
		}
		// The ones told to retry get the same reservation.
		for _, i := range retry {
			var again reserveResp
			waitFor(t, 10*time.Second, "a retried duplicate to replay", func() bool {
				again = reserveOn(t, apps[i%len(apps)], body, key...)
				return again.status != http.StatusConflict
			})
			if again.status != http.StatusOK || decode[resBody](t, again.body).ID != id {
				t.Fatalf("round %d: retry after in use: %d %s", round, again.status, again.body)
			}
		}
		if n := f.journalCount(); n != int64(round+1) {
			t.Fatalf("round %d: %d reservations in the journal, want %d", round, n, round+1)
		}
	}
	// One UTXO per round was taken, no more.
	free, held, err := f.locks.PoolCounts(testCtx(t), f.pool.ID)
	if err != nil || free != 2 || held != rounds {
		t.Fatalf("pool: %d free, %d held (%v); want 2 and %d", free, held, err, rounds)
	}
}

// TestIdempotencyKeyInFlight: while the first request with a key has not
// been journalled, a duplicate on another instance answers 409
// idempotency_key_in_use with Retry-After and reserves nothing; once the
// first finishes, the duplicate replays it.
func TestIdempotencyKeyInFlight(t *testing.T) {
	t.Parallel()
	f := newResFixture(t, 10, 20, 30)
	gate := newGateJournal(t, f.store)
	t.Cleanup(gate.open)
	slow := f.newApp(Config{Locks: f.newLocks(gate)})
	replica := f.replica()
	body := fmt.Sprintf(`{"pool":%d,"count":1}`, f.pool.ID)
	key := []string{"Idempotency-Key", "slow-" + randHex(t, 8)}

	done := make(chan reserveResp, 1)
	go func() { done <- reserveOn(t, slow, body, key...) }()
	gate.waitEntered(t)
	for _, app := range []*fiber.App{replica, f.app} {
		got := reserveOn(t, app, body, key...)
		wantError(t, "in flight", got.status, got.body, http.StatusConflict, "idempotency_key_in_use")
		if got.retry == "" || got.replayed != "" {
			t.Fatalf("in flight: Retry-After %q, replayed %q", got.retry, got.replayed)
		}
		// Another body with the key in flight is refused too, never granted.
		other := reserveOn(t, app, fmt.Sprintf(`{"pool":%d,"count":2}`, f.pool.ID), key...)
		if other.status != http.StatusConflict && other.status != http.StatusUnprocessableEntity {
			t.Fatalf("another request with the key in flight: %d %s", other.status, other.body)
		}
	}
	if free, held, err := f.locks.PoolCounts(testCtx(t), f.pool.ID); err != nil || free != 2 || held != 1 {
		t.Fatalf("while in flight: %d free, %d held (%v); want 2 and 1", free, held, err)
	}
	gate.open()
	first := <-done
	if first.status != http.StatusCreated {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	again := reserveOn(t, replica, body, key...)
	if again.status != http.StatusOK || decode[resBody](t, again.body).ID != decode[resBody](t, first.body).ID {
		t.Fatalf("after the first finished: %d %s", again.status, again.body)
	}
	if n := f.journalCount(); n != 1 {
		t.Fatalf("%d reservations in the journal, want 1", n)
	}
}

// TestIdempotencyReplayAfterRelease: a replay after the reservation was
// released answers it as it is now (released) and reserves nothing. Before
// this version the key was forgotten with the reservation and the retry
// reserved again.
func TestIdempotencyReplayAfterRelease(t *testing.T) {
	t.Parallel()
	f := newResFixture(t, 10, 20)
	body := fmt.Sprintf(`{"pool":%d,"amount":10}`, f.pool.ID)
	key := []string{"Idempotency-Key", "release-" + randHex(t, 8)}
	first := reserveOn(t, f.app, body, key...)
	if first.status != http.StatusCreated {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	r := decode[resBody](t, first.body)
	if status, b := f.call(http.MethodDelete, "/v1/reservations/"+r.ID, ""); status != http.StatusOK {
		t.Fatalf("release: %d %s", status, b)
	}
	before := f.snapshot()
	for _, app := range []*fiber.App{f.app, f.replica()} {
		again := reserveOn(t, app, body, key...)
		got := decode[resBody](t, again.body)
		if again.status != http.StatusOK || again.replayed != "true" || got.ID != r.ID || got.State != "released" ||
			len(got.UTXOs) != 1 || got.UTXOs[0] != r.UTXOs[0] {
			t.Fatalf("replay after release: %d replayed=%q %s", again.status, again.replayed, again.body)
		}
	}
	if after := f.snapshot(); !before.equal(after) {
		t.Fatal("a replay after the release changed state")
	}
	if free, held, err := f.locks.PoolCounts(testCtx(t), f.pool.ID); err != nil || free != 2 || held != 0 {
		t.Fatalf("after the replays: %d free, %d held (%v); want 2 and 0", free, held, err)
	}
}

// TestIdempotencyKeySurvivesRedisLoss: after a FLUSHALL of Redis and the
// pool's rebuild (syncer.Rebuilder), a replay still answers the first
// reservation, live or ended, and another request with the key is still a
// 422; the key is in PostgreSQL, so it is found even when Redis lacks it.
// Before this version the key lived in Redis only. The test runs its own
// Redis server: it flushes it.
func TestIdempotencyKeySurvivesRedisLoss(t *testing.T) {
	t.Parallel()
	rdb := testenv.StartRedis(t).Client()
	f := newFixtureOn(t, migrated.Postgres(t), rdb, "flush:", 10, 20, 30).withJournal()
	ctx := testCtx(t)
	p := f.pool.ID

	heldBody := fmt.Sprintf(`{"pool":%d,"count":1,"ttl_seconds":600}`, p)
	heldKey := []string{"Idempotency-Key", "held-" + randHex(t, 8)}
	held := reserveOn(t, f.app, heldBody, heldKey...)
	endedBody := fmt.Sprintf(`{"pool":%d,"amount":30}`, p)
	endedKey := []string{"Idempotency-Key", "ended-" + randHex(t, 8)}
	ended := reserveOn(t, f.app, endedBody, endedKey...)
	if held.status != http.StatusCreated || ended.status != http.StatusCreated {
		t.Fatalf("reserve: %d %s; %d %s", held.status, held.body, ended.status, ended.body)
	}
	heldRes, endedRes := decode[resBody](t, held.body), decode[resBody](t, ended.body)
	if status, b := f.call(http.MethodDelete, "/v1/reservations/"+endedRes.ID, ""); status != http.StatusOK {
		t.Fatalf("release: %d %s", status, b)
	}
	// Redis is lost after the release reached the journal (until then the
	// rebuild would restore it held, see lockmgr's package doc).
	f.flushJournals()

	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// Until the pool is rebuilt, a reserve cannot be answered.
	if got := reserveOn(t, f.app, heldBody, heldKey...); got.status != http.StatusServiceUnavailable {
		t.Fatalf("before the rebuild: %d %s", got.status, got.body)
	}
	rb := syncer.NewRebuilder(f.store, f.locks, rdb, f.prefix, nil)
	if rebuilt, err := rb.RebuildIfLost(ctx, p); err != nil || !rebuilt {
		t.Fatalf("rebuild: %v %v", rebuilt, err)
	}
	check := func(what string) {
		t.Helper()
		for _, app := range []*fiber.App{f.app, f.replica()} {
			got := reserveOn(t, app, heldBody, heldKey...)
			if g := decode[resBody](t, got.body); got.status != http.StatusOK || got.replayed != "true" || g.ID != heldRes.ID || g.State != "held" {
				t.Fatalf("%s: replay of the held reservation: %d %s", what, got.status, got.body)
			}
			got = reserveOn(t, app, endedBody, endedKey...)
			if g := decode[resBody](t, got.body); got.status != http.StatusOK || g.ID != endedRes.ID || g.State != "released" {
				t.Fatalf("%s: replay of the released reservation: %d %s", what, got.status, got.body)
			}
			got = reserveOn(t, app, fmt.Sprintf(`{"pool":%d,"count":2}`, p), heldKey...)
			wantError(t, what+": another request", got.status, got.body, http.StatusUnprocessableEntity, "idempotency_key_reused")
		}
		if n := f.journalCount(); n != 2 {
			t.Fatalf("%s: %d reservations in the journal, want 2", what, n)
		}
		if free, held, err := f.locks.PoolCounts(ctx, p); err != nil || free != 2 || held != 1 {
			t.Fatalf("%s: %d free, %d held (%v); want 2 and 1", what, free, held, err)
		}
	}
	check("after the rebuild")

	// Redis loses the keys themselves (and nothing else): PostgreSQL still has them.
	var idem []string
	iter := rdb.Scan(ctx, 0, "*:idem:*", 1000).Iterator()
	for iter.Next(ctx) {
		idem = append(idem, iter.Val())
	}
	if err := iter.Err(); err != nil || len(idem) != 2 {
		t.Fatalf("idempotency keys in redis: %v %v", idem, err)
	}
	if err := rdb.Del(ctx, idem...).Err(); err != nil {
		t.Fatal(err)
	}
	check("with the keys gone from redis")
}
