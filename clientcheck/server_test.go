package clientcheck_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/handlers"
	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
)

// server is the real bufferd API (handlers, lockmgr, the journal) on a fresh
// PostgreSQL database and a private Redis key prefix, listening on loopback,
// with one pool whose UTXOs are synced and reservable.
type server struct {
	URL    string
	Pool   storage.Pool
	UTXOs  []chain.UTXO // in the order of the amounts given
	store  *storage.Store
	locks  *lockmgr.Manager
	rdb    *redis.Client
	prefix string

	cleanups []func()
}

// startServerWith starts a server with a pool of UTXOs of the given amounts
// and the handlers' configuration adjusted by configure. It needs no
// *testing.T; Close stops it and drops its database and keys.
func startServerWith(configure func(*handlers.Config), amounts ...uint64) (_ *server, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := &server{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	dbURL, err := s.createDatabase(ctx)
	if err != nil {
		return nil, err
	}
	if s.store, err = storage.Open(ctx, dbURL); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.onClose(func() { _ = s.store.Close() })

	opt, err := redis.ParseURL(testenv.RedisURL())
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	s.rdb = redis.NewClient(opt)
	s.prefix = testenv.RandomName("t") + ":"
	s.onClose(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := s.rdb.Scan(ctx, 0, s.prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			s.rdb.Del(ctx, iter.Val())
		}
		_ = s.rdb.Close()
	})
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("redis at %s: %w", testenv.RedisURL(), err)
	}

	journal := storage.NewJournal(s.store, storage.JournalOptions{})
	s.onClose(journal.Close)
	s.locks = lockmgr.New(s.rdb, lockmgr.Options{Prefix: s.prefix, Journal: journal})
	s.onClose(func() { _ = s.locks.Close() })

	cfg := handlers.Config{
		Store:      s.store,
		Locks:      s.locks,
		AdminToken: "test-admin-token",
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if configure != nil {
		configure(&cfg)
	}
	if s.URL, err = s.listen(cfg); err != nil {
		return nil, err
	}
	if err := s.addPool(ctx, amounts); err != nil {
		return nil, err
	}
	return s, nil
}

// listen serves the API of cfg on a loopback port until Close and returns its URL.
func (s *server) listen(cfg handlers.Config) (string, error) {
	app := handlers.New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = app.Listener(ln)
	}()
	s.onClose(func() {
		_ = app.ShutdownWithTimeout(5 * time.Second)
		<-served
	})
	return "http://" + ln.Addr().String(), nil
}

// replica starts another API instance on the server's PostgreSQL database
// and Redis keys, whose journal is wrap's (nil: the plain one), and returns
// its URL.
func (s *server) replica(t testing.TB, wrap func(lockmgr.Journal) lockmgr.Journal) string {
	t.Helper()
	journal := storage.NewJournal(s.store, storage.JournalOptions{})
	var j lockmgr.Journal = journal
	if wrap != nil {
		j = wrap(journal)
	}
	locks := lockmgr.New(s.rdb, lockmgr.Options{Prefix: s.prefix, Journal: j})
	// Registered before listen's: the app stops first, then these.
	s.onClose(journal.Close)
	s.onClose(func() { _ = locks.Close() })
	apiURL, err := s.listen(handlers.Config{Store: s.store, Locks: locks, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return apiURL
}

// newServer starts a server for a test, stopped when the test ends.
func newServer(t testing.TB, amounts ...uint64) *server {
	t.Helper()
	return newServerWith(t, nil, amounts...)
}

// newServerWith is startServerWith for a test, stopped when the test ends.
func newServerWith(t testing.TB, configure func(*handlers.Config), amounts ...uint64) *server {
	t.Helper()
	testenv.SkipWithoutServices(t)
	s, err := startServerWith(configure, amounts...)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// onClose registers a cleanup; Close runs them in reverse order.
func (s *server) onClose(f func()) { s.cleanups = append(s.cleanups, f) }

// Close stops the server and removes its database and Redis keys.
func (s *server) Close() {
	for i := len(s.cleanups) - 1; i >= 0; i-- {
		s.cleanups[i]()
	}
	s.cleanups = nil
}

// createDatabase clones the migrated template into a database of its own,
// dropped by Close.
func (s *server) createDatabase(ctx context.Context) (string, error) {
	u, drop, err := migrated.Clone(ctx)
	if err != nil {
		return "", err
	}
	s.onClose(drop)
	return u, nil
}

// migrated is the package's migrated database, which servers clone.
var migrated = testenv.NewTemplate(storage.MigrateUp)

// addPool registers the pool and syncs UTXOs of the given amounts into
// PostgreSQL and Redis and marks it synced, as the syncer would.
func (s *server) addPool(ctx context.Context, amounts []uint64) error {
	asset, program := randHex(32), "0014"+randHex(20)
	pool, _, err := s.store.EnsurePool(ctx, asset, program)
	if err != nil {
		return fmt.Errorf("ensure pool: %w", err)
	}
	s.Pool = pool
	s.UTXOs = make([]chain.UTXO, len(amounts))
	for i, a := range amounts {
		s.UTXOs[i] = chain.UTXO{Hash: randHex(32), Asset: asset, Program: program, Amount: a, Confirmed: true}
	}
	if _, err := s.store.ReconcilePool(ctx, pool, s.UTXOs); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	if err := s.locks.LoadAvailable(ctx, pool.ID, s.items()); err != nil {
		return err
	}
	if err := s.store.MarkSynced(ctx, pool.ID); err != nil {
		return err
	}
	s.Pool, err = s.store.GetPool(ctx, pool.ID)
	return err
}

// items are the pool's UTXOs as lockmgr knows them.
func (s *server) items() []lockmgr.Item {
	items := make([]lockmgr.Item, len(s.UTXOs))
	for i, u := range s.UTXOs {
		items[i] = lockmgr.Item{Hash: u.Hash, Amount: u.Amount}
	}
	return items
}

// unload makes Redis forget that the pool is loaded, as after a Redis
// restart: reserves answer 503 rebuilding until reload.
func (s *server) unload(t testing.TB) {
	t.Helper()
	key := fmt.Sprintf("%s{p%d}:ready", s.prefix, s.Pool.ID)
	if err := s.rdb.Del(context.Background(), key).Err(); err != nil {
		t.Fatalf("del %s: %v", key, err)
	}
}

// reload loads the pool again after unload.
func (s *server) reload() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.locks.LoadAvailable(ctx, s.Pool.ID, s.items())
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// proxy is a TCP proxy to a server, which a test can stop (refusing and
// cutting every connection) or stall (accepting and never answering).
type proxy struct {
	URL    string
	ln     net.Listener
	target string

	mu      sync.Mutex
	conns   map[net.Conn]bool
	stalled bool
	closed  bool
	wg      sync.WaitGroup
}

// newProxy proxies to the server at base (an http:// URL) until the test ends.
func newProxy(t testing.TB, base string) *proxy {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{URL: "http://" + ln.Addr().String(), ln: ln, target: u.Host, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Stop)
	return p
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		stalled := p.stalled
		p.mu.Unlock()
		if stalled {
			continue // kept open, never answered
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil || !p.track(up) {
			_ = c.Close()
			if up != nil {
				_ = up.Close()
			}
			continue
		}
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

// track records c so Stop and Stall can cut it; false once stopped.
func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = true
	return true
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
}

// cut closes every connection.
func (p *proxy) cut() {
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

// Stall cuts every connection; new connections are accepted and never answered.
func (p *proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = true
	p.cut()
}

// Stop closes the listener and every connection: the server is gone.
func (p *proxy) Stop() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	_ = p.ln.Close()
	p.cut()
	p.mu.Unlock()
	p.wg.Wait()
}

// tripper wraps a transport to count requests by "METHOD path" and to make
// chosen requests fail after the server has answered them (the answer is
// read and thrown away, as when a connection dies on the way back).
type tripper struct {
	base http.RoundTripper

	mu     sync.Mutex
	counts map[string]int
	keys   []string    // Idempotency-Key of every reserve
	last   http.Header // headers of the last request
	// drop, when set, says whether to lose the answer of a request.
	drop    func(r *http.Request) bool
	dropped []*http.Response // the lost answers, bodies read
	// fail, when set, says whether to fail a request before sending it.
	fail func(r *http.Request) bool
	// onSend, when set, sees every request as it is sent.
	onSend func(r *http.Request)
}

// errDropped is the connection error a tripper reports for a lost answer.
var errDropped = errors.New("test: connection reset after the server answered")

func newTripper() *tripper {
	return &tripper{base: http.DefaultTransport.(*http.Transport).Clone(), counts: map[string]int{}}
}

func (tr *tripper) RoundTrip(r *http.Request) (*http.Response, error) {
	tr.mu.Lock()
	tr.counts[r.Method+" "+r.URL.Path]++
	tr.last = r.Header.Clone()
	if r.URL.Path == "/v1/reservations" {
		tr.keys = append(tr.keys, r.Header.Get("Idempotency-Key"))
	}
	fail := tr.fail != nil && tr.fail(r)
	drop := tr.drop != nil && tr.drop(r)
	onSend := tr.onSend
	tr.mu.Unlock()
	if onSend != nil {
		onSend(r)
	}
	if fail {
		return nil, errDropped
	}
	resp, err := tr.base.RoundTrip(r)
	if err != nil || !drop {
		return resp, err
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	tr.mu.Lock()
	tr.dropped = append(tr.dropped, resp)
	tr.mu.Unlock()
	return nil, errDropped
}

// count is how many requests "METHOD path" were sent.
func (tr *tripper) count(key string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.counts[key]
}

// countSuffix is how many requests were sent whose "METHOD path" ends with suffix.
func (tr *tripper) countSuffix(suffix string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for k, v := range tr.counts {
		if len(k) >= len(suffix) && k[len(k)-len(suffix):] == suffix {
			n += v
		}
	}
	return n
}

func (tr *tripper) client() *http.Client {
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// rawDelete releases a reservation with a plain HTTP request, as another
// holder of the id would.
func rawDelete(t testing.TB, base, id string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodDelete, base+"/v1/reservations/"+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("DELETE reservation: %d %s", resp.StatusCode, b)
	}
}

// gateJournal is a real journal whose Record waits until the gate opens: a
// grant stays in flight (made in Redis, not yet journalled) while a test wants.
type gateJournal struct {
	lockmgr.Journal
	entered  chan struct{}
	gate     chan struct{}
	openOnce sync.Once
}

func newGate(j lockmgr.Journal) *gateJournal {
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

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
