package handlers

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

const testToken = "s3cret-admin-token"

// fixture is a real PostgreSQL database and a real Redis prefix behind the app,
// with one pool whose UTXOs are synced and reservable.
type fixture struct {
	t      *testing.T
	dbURL  string
	app    *fiber.App
	store  *storage.Store
	locks  *lockmgr.Manager
	rdb    *redis.Client
	prefix string
	pool   storage.Pool
	utxos  []chain.UTXO // in amount order, ascending
	logs   *logBuf
	// journals are the journals of the fixture's lock managers.
	journals []*storage.Journal
}

// flushJournals waits until the journals' deferred writes (releases) landed.
func (f *fixture) flushJournals() {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(testCtx(f.t), 30*time.Second)
	defer cancel()
	for _, j := range f.journals {
		if err := j.Flush(ctx); err != nil {
			f.t.Fatalf("flush the journal: %v", err)
		}
	}
}

// logBuf is a goroutine-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func randHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// newFixture builds the stack with a pool holding UTXOs of the given amounts,
// on a fresh database of the shared PostgreSQL and a private prefix of the
// shared Redis.
func newFixture(t *testing.T, amounts ...uint64) *fixture {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	return newFixtureOn(t, migrated.Postgres(t), rdb, prefix, amounts...)
}

// migrated is the package's migrated database, which fixtures clone.
var migrated = testenv.NewTemplate(storage.MigrateUp)

// newFixtureOn is newFixture on the database at dbURL (migrated here) and
// the keys of rdb under prefix.
func newFixtureOn(t *testing.T, dbURL string, rdb *redis.Client, prefix string, amounts ...uint64) *fixture {
	t.Helper()
	ctx := testCtx(t)
	if err := storage.MigrateUp(ctx, dbURL); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	store := openStore(t, dbURL)
	f := &fixture{
		t:      t,
		dbURL:  dbURL,
		store:  store,
		locks:  lockmgr.New(rdb, lockmgr.Options{Prefix: prefix}),
		rdb:    rdb,
		prefix: prefix,
		logs:   &logBuf{},
	}
	f.app = f.newApp(Config{})
	f.pool, f.utxos = f.addPool(randHex(t, 32), "0014"+randHex(t, 20), amounts...)
	return f
}

// withJournal makes the fixture's lock manager journal into its store, as
// bufferd wires it, and rebuilds the app on it.
func (f *fixture) withJournal() *fixture {
	f.t.Helper()
	j := storage.NewJournal(f.store, storage.JournalOptions{})
	f.t.Cleanup(j.Close)
	f.journals = append(f.journals, j)
	m := lockmgr.New(f.rdb, lockmgr.Options{Prefix: f.prefix, Journal: j})
	f.t.Cleanup(func() { _ = m.Close() })
	f.locks = m
	f.app = f.newApp(Config{})
	return f
}

// openStore opens a store on dbURL, closed when the test ends.
func openStore(t testing.TB, dbURL string) *storage.Store {
	t.Helper()
	store, err := storage.Open(testCtx(t), dbURL)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() {
		if db, err := store.DB().DB(); err == nil {
			_ = db.Close()
		}
	})
	return store
}

// replica is another API instance on the fixture's PostgreSQL database and
// Redis keys, as another bufferd process would be: its own store, journal,
// Redis client and lock manager.
func (f *fixture) replica() *fiber.App {
	f.t.Helper()
	store := openStore(f.t, f.dbURL)
	j := storage.NewJournal(store, storage.JournalOptions{})
	f.t.Cleanup(j.Close) // before the store's cleanup, which runs later
	f.journals = append(f.journals, j)
	opt := *f.rdb.Options()
	rdb := redis.NewClient(&opt)
	f.t.Cleanup(func() { _ = rdb.Close() })
	locks := lockmgr.New(rdb, lockmgr.Options{Prefix: f.prefix, Journal: j})
	f.t.Cleanup(func() { _ = locks.Close() })
	return f.newApp(Config{Store: store, Locks: locks})
}

// newApp builds an app on the fixture's store and locks, with the test token
// unless cfg says otherwise.
func (f *fixture) newApp(cfg Config) *fiber.App {
	if cfg.Store == nil {
		cfg.Store = f.store
	}
	if cfg.Locks == nil {
		cfg.Locks = f.locks
	}
	if cfg.AdminToken == "" {
		cfg.AdminToken = testToken
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return New(cfg)
}

// addPool registers a pool and syncs UTXOs of the given amounts into storage
// and Redis, and marks it synced, as the syncer does once it has the pool's
// whole UTXO set.
func (f *fixture) addPool(asset, program string, amounts ...uint64) (storage.Pool, []chain.UTXO) {
	f.t.Helper()
	ctx := testCtx(f.t)
	pool, _, err := f.store.EnsurePool(ctx, asset, program)
	if err != nil {
		f.t.Fatalf("ensure pool: %v", err)
	}
	seen := make([]chain.UTXO, len(amounts))
	items := make([]lockmgr.Item, len(amounts))
	for i, a := range amounts {
		seen[i] = chain.UTXO{Hash: randHex(f.t, 32), Asset: asset, Program: program, Amount: a, Confirmed: true}
		items[i] = lockmgr.Item{Hash: seen[i].Hash, Amount: a}
	}
	if _, err := f.store.ReconcilePool(ctx, pool, seen); err != nil {
		f.t.Fatalf("reconcile: %v", err)
	}
	// A pool is served only once loaded (lockmgr refuses an unloaded pool).
	if err := f.locks.LoadAvailable(ctx, pool.ID, items); err != nil {
		f.t.Fatalf("load available: %v", err)
	}
	if err := f.store.MarkSynced(ctx, pool.ID); err != nil {
		f.t.Fatalf("mark synced: %v", err)
	}
	if pool, err = f.store.GetPool(ctx, pool.ID); err != nil {
		f.t.Fatalf("get pool: %v", err)
	}
	return pool, seen
}

// do sends a request to app and returns the status and body.
func do(t testing.TB, app *fiber.App, method, target, body string, header ...string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := app.Test(req, -1)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// legacyResp is a decoded legacy envelope.
type legacyResp struct {
	Code   int             `json:"code"`
	Msg    string          `json:"msg"`
	Result json.RawMessage `json:"result"`
}

// legacy posts body to a /dapp route and decodes the envelope; HTTP status must be 200.
func (f *fixture) legacy(path, body string, header ...string) legacyResp {
	f.t.Helper()
	return legacyCall(f.t, f.app, path, body, header...)
}

func legacyCall(t testing.TB, app *fiber.App, path, body string, header ...string) legacyResp {
	t.Helper()
	status, b := do(t, app, http.MethodPost, path, body, header...)
	if status != http.StatusOK {
		t.Fatalf("POST %s: HTTP %d (%s), legacy routes always answer 200", path, status, b)
	}
	var r legacyResp
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("POST %s: bad envelope %q: %v", path, b, err)
	}
	return r
}

// listUTXOs calls list-utxos for the fixture's pool and returns the hashes.
func (f *fixture) listUTXOs(query, order string) []legacyUTXO {
	f.t.Helper()
	body := fmt.Sprintf(`{"asset":%q,"program":%q,"sort":{"by":"amount","order":%q}}`, f.pool.Asset, f.pool.Program, order)
	r := f.legacy("/dapp/list-utxos"+query, body)
	if r.Code != 200 {
		f.t.Fatalf("list-utxos: code %d msg %q", r.Code, r.Msg)
	}
	var page struct {
		Data []legacyUTXO `json:"data"`
	}
	if err := json.Unmarshal(r.Result, &page); err != nil {
		f.t.Fatalf("list-utxos result %s: %v", r.Result, err)
	}
	return page.Data
}

func (f *fixture) updateUTXO(hash string) legacyResp {
	f.t.Helper()
	return f.legacy("/dapp/update-utxo", fmt.Sprintf(`{"hash":%q}`, hash))
}

func hashesOf(us []legacyUTXO) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.Hash
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// heldFor returns how long a UTXO stays held, from the lockmgr "held" ZSET
// (scored by expiry in ms on the Redis clock); ok=false when it is not held.
func (f *fixture) heldFor(poolID int64, hash string) (time.Duration, bool) {
	f.t.Helper()
	ctx := testCtx(f.t)
	key := fmt.Sprintf("%s{p%d}:held", f.prefix, poolID)
	score, err := f.rdb.ZScore(ctx, key, hash).Result()
	if err == redis.Nil {
		return 0, false
	}
	if err != nil {
		f.t.Fatalf("zscore %s: %v", key, err)
	}
	now, err := f.rdb.Time(ctx).Result()
	if err != nil {
		f.t.Fatal(err)
	}
	return time.Duration(int64(score)-now.UnixMilli()) * time.Millisecond, true
}

func (f *fixture) poolCount() int {
	f.t.Helper()
	pools, err := f.store.ListPools(testCtx(f.t))
	if err != nil {
		f.t.Fatal(err)
	}
	return len(pools)
}

func newJSONRequest(t testing.TB, target, body string) *http.Request {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return req
}

// serve runs app on a loopback listener until the test ends and returns its base URL.
func serve(t testing.TB, app *fiber.App) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = app.Listener(ln)
	}()
	t.Cleanup(func() {
		_ = app.ShutdownWithTimeout(5 * time.Second)
		<-done
	})
	return "http://" + ln.Addr().String()
}

// withoutHash returns us without the UTXO hash.
func withoutHash(us []chain.UTXO, hash string) []chain.UTXO {
	out := make([]chain.UTXO, 0, len(us))
	for _, u := range us {
		if u.Hash != hash {
			out = append(out, u)
		}
	}
	return out
}

// waitFor waits for cond to hold, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, timeout, func() error {
		if !cond() {
			return fmt.Errorf("waiting for %s", what)
		}
		return nil
	})
}

// applyBlock applies one block as the chain index does (storage.ApplyBlocks:
// its outputs, spends and history, and the index cursor of the pools it
// touches), then makes Redis and the reservations follow (syncer.Applier).
func (f *fixture) applyBlock(b storage.IndexedBlock) {
	f.t.Helper()
	ctx := testCtx(f.t)
	pools := map[int64]bool{}
	for _, o := range b.Outputs {
		pools[o.PoolID] = true
	}
	for _, sp := range b.Spends {
		pools[sp.PoolID] = true
	}
	for p := range b.Txs {
		pools[p] = true
	}
	ids := make([]int64, 0, len(pools))
	for p := range pools {
		ids = append(ids, p)
	}
	touched, err := f.store.ApplyBlocks(ctx, ids, []storage.IndexedBlock{b})
	if err != nil {
		f.t.Fatalf("apply block %d: %v", b.Header.Height, err)
	}
	applier := syncer.Applier{Store: f.store, Locks: f.locks, Log: slog.New(slog.NewTextHandler(f.logs, nil))}
	for p, hashes := range touched {
		if _, err := applier.Apply(ctx, p, hashes); err != nil {
			f.t.Fatalf("apply block %d to redis: %v", b.Header.Height, err)
		}
	}
}

// spendBlock is a block at height spending each UTXO of the pool in spends
// (hash -> spending transaction), with txs as the pool's history.
func spendBlock(pool, height int64, spends map[string]string, txs ...storage.CrawledTx) storage.IndexedBlock {
	b := storage.IndexedBlock{
		Header: storage.BlockHeader{Height: height, Hash: fmt.Sprintf("%064x", height), Time: time.Now()},
		Txs:    map[int64][]storage.CrawledTx{pool: txs},
	}
	for hash, tx := range spends {
		b.Spends = append(b.Spends, storage.IndexedSpend{PoolID: pool, Hash: hash, TxID: tx, Height: height})
	}
	return b
}
