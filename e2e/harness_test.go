package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bufferd/bufferd/internal/testenv"
)

// bufferdBin is the bufferd executable (built with -race by TestMain).
var bufferdBin string

// adminToken is the admin bearer token every test stack is started with.
const adminToken = "e2e-admin-token"

// holderEnv, when set to 1, makes the test binary act as the reservation holder
// of TestFencingPausedHolder instead of running tests (see runHolder).
const holderEnv = "BUFFERD_E2E_HOLDER"

func TestMain(m *testing.M) {
	if os.Getenv(holderEnv) == "1" {
		os.Exit(runHolder())
	}
	bin, remove, err := testenv.BuildBufferd("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bufferdBin = bin
	code := m.Run()
	remove()
	os.Exit(testenv.AfterTests(code))
}

// ---- processes ----

// maxOutput bounds how much of a process's output is kept (the newest part).
const maxOutput = 4 << 20

// proc is a process started by a test; it is killed when the test ends and
// its output is logged when the test failed.
type proc struct {
	name string
	cmd  *exec.Cmd

	mu  sync.Mutex
	out []byte

	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, set before done is closed
}

// startProc starts cmd (Env, Args and Stdin already set by the caller) with
// its stdout and stderr captured.
func startProc(t *testing.T, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = pw
	cmd.Stderr = pw
	// The process dies with the test binary, even when that panics.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = pr.Close()
		_ = pw.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	_ = pw.Close()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		buf := make([]byte, 32<<10)
		for {
			n, err := pr.Read(buf)
			if n > 0 {
				p.mu.Lock()
				p.out = append(p.out, buf[:n]...)
				if len(p.out) > maxOutput {
					p.out = append([]byte(nil), p.out[len(p.out)-maxOutput/2:]...)
				}
				p.mu.Unlock()
			}
			if err != nil {
				_ = pr.Close()
				return
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		<-copied
		p.err = err
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			out := p.output()
			t.Logf("---- output of %s (pid %d): warnings and errors ----\n%s\n---- last lines ----\n%s",
				name, cmd.Process.Pid, problems(out, 30), tail(out, 3000))
		}
	})
	return p
}

// startBufferd starts `bufferd args...` with env added to the test's environment.
func startBufferd(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bufferdBin, args...)
	cmd.Env = append(os.Environ(), env...)
	return startProc(t, name, cmd)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return string(p.out)
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL (after SIGCONT, should it be stopped) and waits for the exit.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// signal sends sig to the process.
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to %s: %v", sig, p.name, err)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.signal(t, syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("%s exited with %v", p.name, p.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not stop within 20s of SIGTERM", p.name)
	}
}

// waitOutput waits until the process has printed s and returns the output
// after it, up to the end of that line.
func (p *proc) waitOutput(t *testing.T, s string, timeout time.Duration) string {
	t.Helper()
	var line string
	testenv.Eventually(t, timeout, func() error {
		out := p.output()
		if i := strings.Index(out, s); i >= 0 {
			rest := out[i+len(s):]
			if j := strings.IndexByte(rest, '\n'); j >= 0 {
				line = rest[:j]
				return nil
			}
		}
		if p.exited() {
			t.Fatalf("%s exited (%v) before printing %q", p.name, p.err, s)
		}
		return fmt.Errorf("%s did not print %q", p.name, s)
	})
	return line
}

// problems returns the first limit lines of out logged at warn or error level.
func problems(out string, limit int) string {
	var b strings.Builder
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, `"level":"ERROR"`) || strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, "panic") {
			n++
			if n > limit {
				b.WriteString("…\n")
				break
			}
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// ---- HTTP ----

// httpc is the client of every test: many idle connections per host, since
// hundreds of requests run at once; a timeout above the server's own request
// timeout, so a server that is stuck is told apart from one that answers late.
var httpc = &http.Client{
	Timeout: 30 * time.Second,
	Transport: &http.Transport{
		Proxy:               nil, // loopback only, never through a proxy
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     30 * time.Second,
	},
}

// call sends a JSON request (body nil: none) and returns the status and body.
func call(ctx context.Context, method, url string, body any, header ...string) (int, []byte, error) {
	status, raw, _, err := callHeader(ctx, method, url, body, header...)
	return status, raw, err
}

// callHeader is call that also returns the response headers.
func callHeader(ctx context.Context, method, url string, body any, header ...string) (int, []byte, http.Header, error) {
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		return 0, nil, nil, fmt.Errorf("refusing non-loopback url %s", url)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, resp.Header, err
}

// mustCall is call for setup steps: anything but status want fails the test.
func mustCall(t *testing.T, want int, method, url string, body, out any, header ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	status, raw, err := call(ctx, method, url, body, header...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	if status != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, url, status, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, raw)
		}
	}
}

// waitHTTP waits until url answers 200.
func waitHTTP(t *testing.T, url string, timeout time.Duration, p *proc) {
	t.Helper()
	testenv.Eventually(t, timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		status, _, err := call(ctx, http.MethodGet, url, nil)
		cancel()
		if err == nil && status == http.StatusOK {
			return nil
		}
		if p != nil && p.exited() {
			t.Fatalf("%s exited (%v) before %s answered", p.name, p.err, url)
		}
		return fmt.Errorf("%s not ready: status %d, %v", url, status, err)
	})
}

// ---- the reservation API ----

// utxo is an entry of a reservation.
type utxo struct {
	Hash   string `json:"hash"`
	Asset  string `json:"asset"`
	Amount uint64 `json:"amount"`
}

// reservation is the v1 reservation body.
type reservation struct {
	ID        string    `json:"id"`
	Fence     int64     `json:"fence"`
	Pool      int64     `json:"pool"`
	Owner     string    `json:"owner"`
	State     string    `json:"state"`
	UTXOs     []utxo    `json:"utxos"`
	ExpiresAt time.Time `json:"expires_at"`
	TxID      string    `json:"tx_id"`
}

// reply is the outcome of one reservation call.
type reply struct {
	Status int
	Code   string // the error code of a v1 error body
	Res    reservation
	Raw    []byte
	Err    error // transport error (Status 0)
	// RetryAfter is the Retry-After header (503 answers must have one).
	RetryAfter string
}

func (r reply) String() string {
	if r.Err != nil {
		return "error: " + r.Err.Error()
	}
	return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Raw))
}

// hash returns the hash of a one-UTXO reservation ("" otherwise).
func (r reply) hash() string {
	if len(r.Res.UTXOs) != 1 {
		return ""
	}
	return r.Res.UTXOs[0].Hash
}

func doReservation(ctx context.Context, method, url string, body any) reply {
	status, raw, hdr, err := callHeader(ctx, method, url, body)
	r := reply{Status: status, Raw: raw, Err: err}
	if err != nil {
		return r
	}
	r.RetryAfter = hdr.Get("Retry-After")
	if status >= 200 && status < 300 {
		if len(bytes.TrimSpace(raw)) > 0 {
			if err := json.Unmarshal(raw, &r.Res); err != nil {
				r.Err = fmt.Errorf("decode %s: %w", raw, err)
			}
		}
		return r
	}
	var e struct {
		Code string `json:"code"` // a problem details answer's extension member
	}
	_ = json.Unmarshal(raw, &e)
	r.Code = e.Code
	return r
}

// reserveReq is the body of POST /v1/reservations.
type reserveReq struct {
	Pool       int64    `json:"pool"`
	Hashes     []string `json:"hashes,omitempty"`
	Count      int      `json:"count,omitempty"`
	TTLSeconds int      `json:"ttl_seconds,omitempty"`
	Owner      string   `json:"owner,omitempty"`
}

func reserve(ctx context.Context, api string, req reserveReq) reply {
	return doReservation(ctx, http.MethodPost, api+"/v1/reservations", req)
}

func getReservation(ctx context.Context, api, id string) reply {
	return doReservation(ctx, http.MethodGet, api+"/v1/reservations/"+id, nil)
}

func extend(ctx context.Context, api, id string, ttlSeconds int) reply {
	return doReservation(ctx, http.MethodPost, api+"/v1/reservations/"+id+"/extend", map[string]int{"ttl_seconds": ttlSeconds})
}

func submit(ctx context.Context, api, id, txID string) reply {
	return doReservation(ctx, http.MethodPost, api+"/v1/reservations/"+id+"/submit", map[string]string{"tx_id": txID})
}

func release(ctx context.Context, api, id string) reply {
	return doReservation(ctx, http.MethodDelete, api+"/v1/reservations/"+id, nil)
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ---- the journal ----

// journalRow is a row of the reservations table.
type journalRow struct {
	ID     string
	PoolID int64
	Fence  int64
	Hashes string
	State  string
	TxID   string
}

func queryJournal(t *testing.T, dbURL string) []journalRow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("journal: %v", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	rows, err := conn.Query(ctx, "SELECT id, pool_id, fence, hashes, state, tx_id FROM reservations ORDER BY pool_id, fence")
	if err != nil {
		t.Fatalf("journal: %v", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (journalRow, error) {
		var j journalRow
		err := r.Scan(&j.ID, &j.PoolID, &j.Fence, &j.Hashes, &j.State, &j.TxID)
		return j, err
	})
	if err != nil {
		t.Fatalf("journal: %v", err)
	}
	return out
}

// journalSnapshot returns every row of the reservations table, all columns, as
// JSON text, ordered by id: two snapshots are equal iff no row changed.
func journalSnapshot(t *testing.T, dbURL string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("journal snapshot: %v", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	rows, err := conn.Query(ctx, "SELECT row_to_json(r)::text FROM reservations r ORDER BY id")
	if err != nil {
		t.Fatalf("journal snapshot: %v", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("journal snapshot: %v", err)
	}
	return out
}

// ---- a whole deployment ----

// stackConfig describes a deployment; zero values pick the defaults.
type stackConfig struct {
	APIs  int // bufferd api processes (default 1)
	UTXOs int // UTXOs of the test pool (default 10)
	// RedisURL is BUFFERD_REDIS_URL; empty means the shared Redis with a key
	// prefix unique to the test.
	RedisURL string
	// DatabaseURL is a migrated-or-empty database; empty means a fresh database
	// on the shared PostgreSQL.
	DatabaseURL string
	// Env is added to every bufferd process's environment.
	Env []string
}

// stack is a running deployment: a simulated chain, the syncer and the API
// replicas sharing one Redis and one database, with one pool synced.
type stack struct {
	t        *testing.T
	env      []string
	dbURL    string
	chain    string   // base URL of the simulated chain
	apis     []string // base URLs of the API replicas
	apiProcs []*proc
	syncer   *proc
	sim      *proc

	pool    int64
	asset   string
	program string
	hashes  []string // the pool's UTXOs, as the chain created them

	knownMu sync.Mutex
	known   map[string]bool // hashes and the pool UTXOs chain events created since
}

// startStack migrates the database, starts the simulated chain, mints the
// pool's UTXOs, starts the APIs, registers the pool, starts the syncer and
// waits until every UTXO is available in PostgreSQL and in Redis.
func startStack(t *testing.T, cfg stackConfig) *stack {
	t.Helper()
	began := time.Now()
	if cfg.APIs == 0 {
		cfg.APIs = 1
	}
	if cfg.UTXOs == 0 {
		cfg.UTXOs = 10
	}
	s := &stack{t: t, dbURL: cfg.DatabaseURL}
	if s.dbURL == "" {
		s.dbURL = testenv.Postgres(t)
	}
	redisURL, prefix := cfg.RedisURL, testenv.RandomName("e2e")+":"
	if redisURL == "" {
		_, prefix = testenv.Redis(t)
		redisURL = testenv.RedisURL()
	}
	chainAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	s.chain = "http://" + chainAddr
	s.env = append([]string{
		"BUFFERD_DATABASE_URL=" + s.dbURL,
		"BUFFERD_REDIS_URL=" + redisURL,
		"BUFFERD_REDIS_PREFIX=" + prefix,
		"BUFFERD_CHAIN_URL=" + s.chain,
		"BUFFERD_CHAIN_KIND=blockcenter",
		"BUFFERD_ADMIN_TOKEN=" + adminToken,
		"BUFFERD_SYNC_INTERVAL=200ms",
		"BUFFERD_SYNC_MAX_BACKOFF=1s",
		"BUFFERD_METRICS_ADDR=127.0.0.1:0",
		"BUFFERD_SHUTDOWN_TIMEOUT=5s",
		"BUFFERD_LOG_LEVEL=info",
		// Every client of these tests is 127.0.0.1: one rate-limit bucket would throttle them all.
		"BUFFERD_RESERVE_RATE=0",
		// Several processes per test, tests of other packages beside: stay well
		// under the shared server's max_connections.
		"BUFFERD_DATABASE_MAX_CONNS=4",
	}, cfg.Env...)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mig := exec.CommandContext(ctx, bufferdBin, "migrate", "up")
	mig.Env = append(os.Environ(), s.env...)
	if out, err := mig.CombinedOutput(); err != nil {
		t.Fatalf("bufferd migrate up: %v\n%s", err, out)
	}

	s.sim = startBufferd(t, "simchain", s.env, "simchain", "--addr", chainAddr)
	s.sim.waitOutput(t, "simulated chain listening", 30*time.Second)

	s.asset = randomHex(32)
	s.program = "0020" + randomHex(32)
	amounts := make([]uint64, cfg.UTXOs)
	for i := range amounts {
		amounts[i] = uint64(i+1) * 1000
	}
	var minted struct {
		Hashes []string `json:"hashes"`
	}
	mustCall(t, http.StatusOK, http.MethodPost, s.chain+"/sim/utxos",
		map[string]any{"asset": s.asset, "program": s.program, "amounts": amounts}, &minted)
	if len(minted.Hashes) != cfg.UTXOs {
		t.Fatalf("sim minted %d utxos, want %d", len(minted.Hashes), cfg.UTXOs)
	}
	s.hashes = minted.Hashes
	s.known = make(map[string]bool, len(s.hashes))
	for _, h := range s.hashes {
		s.known[h] = true
	}

	for i := 0; i < cfg.APIs; i++ {
		addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		s.apiProcs = append(s.apiProcs, startBufferd(t, fmt.Sprintf("api%d", i), s.env, "api", "--addr", addr))
		s.apis = append(s.apis, "http://"+addr)
	}
	for i, a := range s.apis {
		waitHTTP(t, a+"/readyz", 30*time.Second, s.apiProcs[i])
	}
	var pool struct {
		ID int64 `json:"id"`
	}
	mustCall(t, http.StatusCreated, http.MethodPost, s.apis[0]+"/v1/pools",
		map[string]string{"asset": s.asset, "program": s.program}, &pool, "Authorization", "Bearer "+adminToken)
	s.pool = pool.ID

	s.syncer = startBufferd(t, "syncer", s.env, "syncer")
	s.waitAvailable(cfg.UTXOs, 30*time.Second)
	t.Logf("stack up in %s: %d api, pool %d with %d utxos", time.Since(began).Round(time.Millisecond), cfg.APIs, s.pool, cfg.UTXOs)
	return s
}

// poolCounts is the counts object of GET /v1/pools/{id}.
type poolCounts struct {
	Available   int64 `json:"available"`
	Reserved    int64 `json:"reserved"`
	Spent       int64 `json:"spent"`
	Invalidated int64 `json:"invalidated"`
	Immature    int64 `json:"immature"`
}

func (s *stack) counts(ctx context.Context, api string) (poolCounts, error) {
	status, raw, err := call(ctx, http.MethodGet, fmt.Sprintf("%s/v1/pools/%d", api, s.pool), nil)
	if err != nil {
		return poolCounts{}, err
	}
	if status != http.StatusOK {
		return poolCounts{}, fmt.Errorf("status %d: %s", status, raw)
	}
	var p struct {
		Counts poolCounts `json:"counts"`
	}
	err = json.Unmarshal(raw, &p)
	return p.Counts, err
}

// listedFree is how many UTXOs the legacy list-utxos route (read from Redis)
// shows free on api.
func (s *stack) listedFree(ctx context.Context, api string) (int, error) {
	status, raw, err := call(ctx, http.MethodPost, api+"/dapp/list-utxos?limit=1000", map[string]any{
		"asset": s.asset, "program": s.program, "sort": map[string]string{"by": "amount", "order": "desc"},
	})
	if err != nil {
		return 0, err
	}
	var e struct {
		Code   int    `json:"code"`
		Msg    string `json:"msg"`
		Result struct {
			Data []utxo `json:"data"`
		} `json:"result"`
	}
	if status != http.StatusOK {
		return 0, fmt.Errorf("status %d: %s", status, raw)
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return 0, err
	}
	if e.Code != 200 {
		return 0, fmt.Errorf("code %d: %s", e.Code, e.Msg)
	}
	return len(e.Result.Data), nil
}

// waitAvailable waits until the pool counts n available UTXOs in PostgreSQL and
// every API lists n free UTXOs from Redis.
func (s *stack) waitAvailable(n int, timeout time.Duration) {
	t := s.t
	t.Helper()
	testenv.Eventually(t, timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := s.counts(ctx, s.apis[0])
		if err != nil || c.Available != int64(n) {
			err = fmt.Errorf("pool %d not synced with %d available: counts %+v, %v", s.pool, n, c, err)
		}
		for _, a := range s.apis {
			if err != nil {
				break
			}
			if got, lerr := s.listedFree(ctx, a); lerr != nil || got != n {
				err = fmt.Errorf("pool %d not synced with %d available: %s lists %d free, %v", s.pool, n, a, got, lerr)
			}
		}
		if err != nil && s.syncer.exited() {
			t.Fatalf("syncer exited (%v) before the pool was synced", s.syncer.err)
		}
		return err
	})
}

// api returns the i-th API replica's URL, round robin.
func (s *stack) api(i int) string { return s.apis[i%len(s.apis)] }

// hashSet returns a copy of the pool's UTXOs: the hashes the stack started
// with and those chain events created since.
func (s *stack) hashSet() map[string]bool {
	s.knownMu.Lock()
	defer s.knownMu.Unlock()
	return maps.Clone(s.known)
}

// addKnown records UTXOs of the pool a chain event created.
func (s *stack) addKnown(hashes ...string) {
	s.knownMu.Lock()
	defer s.knownMu.Unlock()
	for _, h := range hashes {
		s.known[h] = true
	}
}

// ---- the holder process of TestFencingPausedHolder ----

// Environment of the holder process.
const (
	holderAPIEnv  = "BUFFERD_E2E_HOLDER_API"
	holderPoolEnv = "BUFFERD_E2E_HOLDER_POOL"
	holderHashEnv = "BUFFERD_E2E_HOLDER_HASH"
)

// runHolder is the test binary acting as a client in a process of its own: it
// reserves one UTXO for 2 s and prints "reserved <id> <fence>", then waits for
// a line on stdin, tries extend, submit and release, and prints
// "late-codes <extend> <submit> <release>" with the HTTP statuses.
func runHolder() int {
	api := os.Getenv(holderAPIEnv)
	pool, err := strconv.ParseInt(os.Getenv(holderPoolEnv), 10, 64)
	if err != nil {
		fmt.Println("holder: bad pool:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := reserve(ctx, api, reserveReq{Pool: pool, Hashes: []string{os.Getenv(holderHashEnv)}, TTLSeconds: 2, Owner: "paused-holder"})
	if r.Err != nil || r.Status != http.StatusCreated {
		fmt.Println("holder: reserve:", r)
		return 1
	}
	fmt.Printf("reserved %s %d\n", r.Res.ID, r.Res.Fence)
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Println("holder: stdin:", err)
		return 1
	}
	_ = line
	e := extend(ctx, api, r.Res.ID, 60)
	s := submit(ctx, api, r.Res.ID, randomHex(32))
	d := release(ctx, api, r.Res.ID)
	for _, x := range []reply{e, s, d} {
		if x.Err != nil {
			fmt.Println("holder: late call:", x.Err)
			return 1
		}
	}
	fmt.Printf("late-codes %d %d %d\n", e.Status, s.Status, d.Status)
	return 0
}
