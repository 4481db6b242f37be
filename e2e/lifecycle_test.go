package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bufferd/bufferd/internal/testenv"
)

// Chain kinds a stack's syncer can follow the simulated chain as.
const (
	kindBytomd      = "bytomd"      // the syncer indexes the node's blocks and mempool
	kindBlockcenter = "blockcenter" // the syncer lists the pool's UTXOs
)

// kindEnv is the environment that makes a stack's processes follow the chain
// as kind, the sweep repairing every sweep.
func kindEnv(kind string, sweep time.Duration) []string {
	return []string{"BUFFERD_CHAIN_KIND=" + kind, "BUFFERD_INDEX_POLL=100ms", "BUFFERD_SWEEP_INTERVAL=" + sweep.String()}
}

// ---- the chain's view ----

// chainUTXOs returns the pool's unspent outputs on the simulated chain, with
// their amounts: confirmed ones no pending transaction spends, and outputs of
// pending transactions (the blockcenter listing with unconfirmed).
func (s *stack) chainUTXOs(ctx context.Context) (map[string]uint64, error) {
	out := map[string]uint64{}
	const limit = 1000
	for start := 0; ; start += limit {
		status, raw, err := call(ctx, http.MethodPost, fmt.Sprintf("%s/api/v1/btm/q/list-utxos?limit=%d&start=%d", s.chain, limit, start),
			map[string]any{"filter": map[string]any{"asset": s.asset, "script": s.program, "unconfirmed": true}})
		if err != nil {
			return nil, err
		}
		var e struct {
			Code   int    `json:"code"`
			Msg    string `json:"msg"`
			Result struct {
				Data []struct {
					Hash   string `json:"hash"`
					Amount uint64 `json:"amount"`
				} `json:"data"`
			} `json:"result"`
		}
		if status != http.StatusOK {
			return nil, fmt.Errorf("chain list-utxos: status %d: %s", status, raw)
		}
		if err := json.Unmarshal(raw, &e); err != nil || e.Code != 200 {
			return nil, fmt.Errorf("chain list-utxos: %v: %s", err, raw)
		}
		for _, u := range e.Result.Data {
			out[u.Hash] = u.Amount
		}
		if len(e.Result.Data) < limit {
			return out, nil
		}
	}
}

// simSpend spends hashes on the simulated chain into outputs (each an
// asset, program and amount) and returns the transaction's output hashes.
func (s *stack) simSpend(ctx context.Context, hashes []string, outputs []map[string]any) ([]string, error) {
	status, raw, err := call(ctx, http.MethodPost, s.chain+"/sim/spend", map[string]any{"hashes": hashes, "outputs": outputs})
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("sim spend: status %d: %s", status, raw)
	}
	var out struct {
		Outputs []string `json:"outputs"`
	}
	err = json.Unmarshal(raw, &out)
	return out.Outputs, err
}

// simMine mines one block on the simulated chain.
func (s *stack) simMine(ctx context.Context) error {
	status, raw, err := call(ctx, http.MethodPost, s.chain+"/sim/mine", map[string]int{"blocks": 1})
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("sim mine: status %d: %s", status, raw)
	}
	return err
}

// ---- the service's view ----

// freeHashes returns the UTXOs the legacy list (read from Redis) shows free
// on api, and the hashes it lists more than once.
func (s *stack) freeHashes(ctx context.Context, api string) (map[string]bool, []string, error) {
	status, raw, err := call(ctx, http.MethodPost, api+"/dapp/list-utxos?limit=1000", map[string]any{
		"asset": s.asset, "program": s.program, "sort": map[string]string{"by": "amount", "order": "desc"},
	})
	if err != nil {
		return nil, nil, err
	}
	var e struct {
		Code   int    `json:"code"`
		Msg    string `json:"msg"`
		Result struct {
			Data []utxo `json:"data"`
		} `json:"result"`
	}
	if status != http.StatusOK {
		return nil, nil, fmt.Errorf("list-utxos: status %d: %s", status, raw)
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, nil, err
	}
	if e.Code != 200 {
		return nil, nil, fmt.Errorf("list-utxos: code %d: %s", e.Code, e.Msg)
	}
	if len(e.Result.Data) == 1000 {
		return nil, nil, fmt.Errorf("list-utxos: 1000 free, more than this check reads")
	}
	free := map[string]bool{}
	var twice []string
	for _, u := range e.Result.Data {
		if free[u.Hash] {
			twice = append(twice, u.Hash)
		}
		free[u.Hash] = true
	}
	return free, twice, nil
}

// liveHolds returns, for each UTXO of the pool, the live reservations the
// journal says hold it (held or submitted, not yet run out).
func (s *stack) liveHolds(ctx context.Context) (map[string][]string, error) {
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	holds := map[string][]string{}
	rows, err := conn.Query(ctx, `SELECT ru.hash, r.id FROM reservations r
		JOIN reservation_utxos ru ON ru.reservation_id = r.id
		WHERE r.pool_id = $1 AND r.state IN ('held', 'submitted') AND r.expires_at > now()`, s.pool)
	if err != nil {
		return nil, err
	}
	var hash, id string
	_, err = pgx.ForEachRow(rows, []any{&hash, &id}, func() error {
		holds[hash] = append(holds[hash], id)
		return nil
	})
	return holds, err
}

// accounting is one reading of where each UTXO of a pool is.
type accounting struct {
	chain  map[string]uint64   // unspent on the chain
	free   map[string]bool     // reservable (Redis's free set, as every API lists it)
	holds  map[string][]string // live reservations holding each UTXO (the journal)
	counts poolCounts          // GET /v1/pools/{id}
}

// account reads the chain, Redis (through every API), the journal and the
// pool counts, the chain last: a UTXO the syncer has not seen leave yet is
// then flagged, never one it has not seen arrive.
func (s *stack) account(ctx context.Context) (accounting, error) {
	var a accounting
	var err error
	for i, api := range s.apis {
		free, twice, err := s.freeHashes(ctx, api)
		if err != nil {
			return a, fmt.Errorf("%s: %w", api, err)
		}
		if len(twice) > 0 {
			return a, fmt.Errorf("%s lists %v free twice", api, twice)
		}
		if i == 0 {
			a.free = free
		} else if !mapsEqual(a.free, free) {
			return a, fmt.Errorf("%s lists %d free, %s %d", s.apis[0], len(a.free), api, len(free))
		}
	}
	if a.holds, err = s.liveHolds(ctx); err != nil {
		return a, err
	}
	if a.counts, err = s.counts(ctx, s.apis[0]); err != nil {
		return a, err
	}
	a.chain, err = s.chainUTXOs(ctx)
	return a, err
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// problems returns what breaks invariant 7 ("none lost") in a: each unspent
// UTXO of the chain is held by exactly one live reservation or reservable,
// not both; nothing else is reservable or held; and the pool counts say as
// many available and reserved as there are. Nil means none.
func (a accounting) problems() []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	for _, h := range sortedKeys(a.chain) {
		n := len(a.holds[h])
		switch {
		case n == 0 && !a.free[h]:
			add("lost: %.12s is unspent on the chain but neither held nor reservable", h)
		case n > 1:
			add("doubled: %.12s is held by %d live reservations %v", h, n, a.holds[h])
		case n == 1 && a.free[h]:
			add("doubled: %.12s is held by %s and reservable", h, a.holds[h][0])
		}
	}
	reserved := 0
	for _, h := range sortedKeys(a.holds) {
		if _, ok := a.chain[h]; !ok {
			add("%.12s is not unspent on the chain but live reservations %v hold it", h, a.holds[h])
			continue
		}
		reserved++
	}
	for _, h := range sortedKeys(a.free) {
		if _, ok := a.chain[h]; !ok {
			add("%.12s is reservable but not unspent on the chain", h)
		}
	}
	if a.counts.Available != int64(len(a.free)) || a.counts.Reserved != int64(reserved) {
		add("counts %+v, but %d reservable and %d held", a.counts, len(a.free), reserved)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// waitNoneLost polls until the pool's accounting has no problem and returns
// it, failing the test at the deadline with the last problems found.
func (s *stack) waitNoneLost(t *testing.T, deadline time.Time) accounting {
	t.Helper()
	var last []string
	var a accounting
	err := testenv.Poll(time.Until(deadline), func() (err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if a, err = s.account(ctx); err != nil {
			last = []string{err.Error()}
			return err
		}
		if last = a.problems(); len(last) > 0 {
			return errors.New("the accounting has problems")
		}
		return nil
	})
	if err == nil {
		return a
	}
	for i, p := range last {
		if i == 20 {
			t.Errorf("... %d problems in all", len(last))
			break
		}
		t.Error(p)
	}
	t.FailNow()
	return a
}

// reserveAllFree reserves every reservable UTXO of the pool (count mode, at
// most 100 a request) and checks that exactly want was granted, that then
// nothing is left (409 no_utxo_available) and that the counts say so.
func (s *stack) reserveAllFree(t *testing.T, want map[string]bool, held int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[string]bool{}
	for left := len(want); left > 0; {
		n := min(left, 100)
		r := reserve(ctx, s.api(left), reserveReq{Pool: s.pool, Count: n, TTLSeconds: 600, Owner: "sweeper"})
		if r.Err != nil || r.Status != http.StatusCreated || len(r.Res.UTXOs) != n {
			t.Fatalf("reserve %d of the %d reservable: %s", n, len(want), r)
		}
		for _, u := range r.Res.UTXOs {
			if got[u.Hash] {
				t.Errorf("%.12s granted twice", u.Hash)
			}
			got[u.Hash] = true
		}
		left -= n
	}
	for h := range want {
		if !got[h] {
			t.Errorf("%.12s was listed reservable but not granted", h)
		}
	}
	for h := range got {
		if !want[h] {
			t.Errorf("%.12s was granted but not listed reservable", h)
		}
	}
	for _, api := range s.apis {
		if r := reserve(ctx, api, reserveReq{Pool: s.pool, Count: 1, TTLSeconds: 60}); r.Status != http.StatusConflict || r.Code != "no_utxo_available" {
			t.Errorf("reserve via %s once all were granted: %s, want 409 no_utxo_available", api, r)
		}
	}
	c, err := s.counts(ctx, s.apis[len(s.apis)-1])
	if err != nil || c.Available != 0 || c.Reserved != int64(held+len(want)) {
		t.Errorf("counts once all were granted: %+v, %v; want 0 available, %d reserved", c, err, held+len(want))
	}
}

// ---- issue 13, case 1 ----

// Issue 13, case 1, as reported: a client reserves 3 UTXOs of a pool of 20
// for 4 s, another party spends one of the three in a block, and the client
// releases its reservation. The other two must be reservable again at once
// (before the 4 s would have freed them anyway), the spent one never, and the
// pool counts must say what can actually be reserved. The release races the
// syncer's settlement of the spend, so a second round releases only once the
// reservation reads spent. Once with the syncer indexing the node, once
// listing through blockcenter.
func TestIssue13OtherUTXOsComeBackAfterAForeignSpend(t *testing.T) {
	for _, kind := range []string{kindBytomd, kindBlockcenter} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			s := startStack(t, stackConfig{APIs: 2, UTXOs: 20, Env: kindEnv(kind, 2*time.Second)})
			issue13ForeignSpend(t, s, false, 19)
			issue13ForeignSpend(t, s, true, 18)
			// What the counts say is reservable can be reserved, and nothing more.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			a, err := s.account(ctx)
			if err != nil {
				t.Fatal(err)
			}
			s.reserveAllFree(t, a.free, 0)
		})
	}
}

// issue13ForeignSpend runs one round of issue 13, case 1; afterSettle waits
// until the reservation reads spent before releasing it. The pool must be
// left with unspent UTXOs, all reservable.
func issue13ForeignSpend(t *testing.T, s *stack, afterSettle bool, unspent int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	before, err := s.counts(ctx, s.apis[0])
	if err != nil {
		t.Fatal(err)
	}
	r := reserve(ctx, s.apis[0], reserveReq{Pool: s.pool, Count: 3, TTLSeconds: 4, Owner: "issue13"})
	if r.Err != nil || r.Status != http.StatusCreated || len(r.Res.UTXOs) != 3 {
		t.Fatalf("reserve count 3: %s", r)
	}
	res := r.Res
	// Back before the hold would have run out: nothing but the release or
	// the settlement can have freed the other two.
	deadline := res.ExpiresAt.Add(-300 * time.Millisecond)
	gone := res.UTXOs[1].Hash
	others := []string{res.UTXOs[0].Hash, res.UTXOs[2].Hash}
	// Another party spends one of the three, and a block confirms it.
	if _, err := s.simSpend(ctx, []string{gone}, []map[string]any{
		{"asset": s.asset, "program": "0020" + randomHex(32), "amount": res.UTXOs[1].Amount}}); err != nil {
		t.Fatal(err)
	}
	if err := s.simMine(ctx); err != nil {
		t.Fatal(err)
	}
	if afterSettle {
		testenv.Eventually(t, time.Until(deadline), func() error {
			g := getReservation(ctx, s.apis[1], res.ID)
			if g.Err == nil && g.Status == http.StatusOK && g.Res.State == "spent" {
				return nil
			}
			if g.Err != nil || g.Status != http.StatusOK || g.Res.State != "held" {
				t.Fatalf("the reservation whose UTXO another party spent reads %s; want held, then spent before it runs out", g)
			}
			return fmt.Errorf("the reservation whose UTXO another party spent still reads %s; want spent before it runs out", g)
		})
	}

	// Without waiting, the release races the syncer's settlement: either it
	// releases (200), or the reservation has already ended spent (410).
	d := release(ctx, s.apis[1], res.ID)
	released := time.Now()
	switch {
	case d.Err == nil && d.Status == http.StatusOK && d.Res.State == "released" && !afterSettle:
	case d.Err == nil && d.Status == http.StatusGone && d.Code == "reservation_ended":
		if g := getReservation(ctx, s.apis[0], res.ID); g.Status != http.StatusOK || g.Res.State != "spent" {
			t.Fatalf("release answered 410, but the reservation reads %s; want spent", g)
		}
	default:
		t.Fatalf("release after the foreign spend (settled first: %v): %s", afterSettle, d)
	}

	if until := time.Until(deadline); until < time.Second {
		t.Fatalf("only %s of the 4 s hold left after the release: the machine is too slow for this test", until)
	}
	a := s.waitNoneLost(t, deadline)
	t.Logf("release (settled first: %v) answered %d %s; after %s: %d unspent on the chain, %d reservable, %d held; counts %+v",
		afterSettle, d.Status, d.Code, time.Since(released).Round(time.Millisecond), len(a.chain), len(a.free), len(a.holds), a.counts)
	for _, h := range others {
		if !a.free[h] {
			t.Errorf("%.12s of the reservation is not reservable again", h)
		}
	}
	if _, ok := a.chain[gone]; ok || a.free[gone] {
		t.Errorf("the spent %.12s is still unspent on the chain (%v) or reservable (%v)", gone, ok, a.free[gone])
	}
	if len(a.chain) != unspent || len(a.free) != unspent || a.counts.Spent != before.Spent+1 {
		t.Errorf("want %d unspent, %d reservable and %d spent; got %d, %d and counts %+v",
			unspent, unspent, before.Spent+1, len(a.chain), len(a.free), a.counts)
	}
}

// ---- a PostgreSQL outage with chain events ----

// TestPostgresOutageLosesNoUTXO takes the deployment's PostgreSQL away for
// 10 s, paused for the first half (writes hang; some may commit when it
// resumes, after their requests gave up), then killed (connections refused,
// uncommitted writes lost) and restarted, while clients reserve and release
// and the chain keeps moving (another party spends pool UTXOs, reserved or
// not, some into new pool UTXOs, and blocks are mined). Afterwards, within
// the sweep interval (2 s here) of the quiet point, every unspent UTXO of the
// pool is held by one live reservation or reservable, never both, and the
// counts agree; during the workload nothing was granted twice and every
// acknowledged reservation reads back.
func TestPostgresOutageLosesNoUTXO(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a workload across a 10 s PostgreSQL outage")
	}
	t.Parallel()
	const (
		sweep  = 2 * time.Second
		outage = 10 * time.Second // half paused, half killed
	)
	pg, db := privatePostgres(t)
	s := startStack(t, stackConfig{APIs: 2, UTXOs: faultUTXOs, DatabaseURL: db, Env: kindEnv(kindBytomd, sweep)})
	w := startWorkload(s, faultClients, faultKeep)
	defer w.cancel()
	ev := startChainEvents(s)
	defer ev.stop()
	w.waitGrants(t, 0, 20)

	downFrom := w.now()
	pg.Stop()
	time.Sleep(outage / 2) // the fault lasts
	pg.Cont()
	pg.Kill()
	time.Sleep(outage / 2) // the fault lasts
	pg.Restart()
	downTo := w.now()
	recovered, ok := w.firstGrantAfter(downTo, 20*time.Second)
	if ok {
		w.waitGrants(t, downTo, 20)
	}
	spent := ev.stop()
	w.halt()
	t.Logf("postgres paused, then killed %s..%s; reserves: %s; releases: %s; chain: %s", downFrom.Round(time.Millisecond),
		downTo.Round(time.Millisecond), statusCounts(w.reserves), statusCounts(w.releases), ev.summary())
	if !ok {
		t.Fatalf("no reserve was granted within 20s after postgres came back")
	}
	t.Logf("first grant %s after postgres came back", (recovered - downTo).Round(time.Millisecond))
	if len(spent) == 0 || ev.errs > 0 {
		t.Fatalf("chain events: %s", ev.summary())
	}

	// The quiet point: a block takes the mempool, nobody acts any more.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.simMine(ctx); err != nil {
		t.Fatal(err)
	}
	quiet := time.Now()
	a := s.waitNoneLost(t, quiet.Add(sweep+5*time.Second))
	t.Logf("none lost %s after the quiet point: %d unspent, %d reservable, %d held; counts %+v",
		time.Since(quiet).Round(time.Millisecond), len(a.chain), len(a.free), len(a.holds), a.counts)

	checkOutageAnswers(t, w, spent)
	checkOneHolder(t, w.grants)
	checkFences(t, w.grants, downFrom, downTo)
	checkGrantsAfterChain(t, s, w.grants, spent, a)
	s.reserveAllFree(t, a.free, len(a.holds))
}

// privatePostgres starts a private PostgreSQL server for one test and
// returns it with the URL of a fresh database on it whose commits wait for
// their WAL write (the server runs without durability otherwise).
func privatePostgres(t *testing.T) (*testenv.PostgresServer, string) {
	t.Helper()
	pg := testenv.StartPostgres(t)
	db := testenv.CreateDatabase(t, pg.URL())
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	execSQL(t, pg.URL(), "ALTER DATABASE "+strings.TrimPrefix(u.Path, "/")+" SET synchronous_commit = on")
	return pg, db
}

// checkOutageAnswers fails the test unless every reserve was answered 201 or
// 503 (with Retry-After), and every release 200 or 503 (with Retry-After), or
// 410 reservation_ended when the chain had spent its UTXO.
func checkOutageAnswers(t *testing.T, w *workload, spent map[string]bool) {
	t.Helper()
	checkGrantsKnown(t, w)
	bad := 0
	report := func(what string, a attempt) {
		bad++
		if bad <= 10 {
			t.Errorf("%s sent at %s answered %d %s %s (retry-after %q)", what, a.Call, a.Status, a.Code, a.Err, a.RetryAfter)
		}
	}
	for _, a := range w.reserves {
		if a.Status != http.StatusCreated && !(a.Status == http.StatusServiceUnavailable && a.RetryAfter != "") {
			report("reserve", a)
		}
	}
	for _, a := range w.releases {
		switch {
		case a.Status == http.StatusOK:
		case a.Status == http.StatusServiceUnavailable && a.RetryAfter != "":
		case a.Status == http.StatusGone && a.Code == "reservation_ended" && spent[a.Hash]:
		default:
			report("release of "+a.Hash, a)
		}
	}
	if bad > 10 {
		t.Errorf("... %d wrong answers in all", bad)
	}
}

// checkGrantsAfterChain reads every grant back: released ones read
// released; ones whose UTXO the chain spent before they were released read
// spent; the others are live (held) and hold their UTXO in the journal.
func checkGrantsAfterChain(t *testing.T, s *stack, grants []*grantRec, spent map[string]bool, a accounting) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bad, states := 0, map[string]int{}
	for i, g := range grants {
		r := getReservation(ctx, s.api(i), g.ID)
		ok := r.Err == nil && r.Status == http.StatusOK && r.Res.Fence == g.Fence && r.hash() == g.Hash
		switch {
		case !ok:
		case g.Released:
			ok = r.Res.State == "released"
		case spent[g.Hash]:
			ok = r.Res.State == "spent"
		default:
			ok = r.Res.State == "held" && slices.Contains(a.holds[g.Hash], g.ID)
		}
		states[r.Res.State]++
		if !ok {
			bad++
			if bad <= 10 {
				t.Errorf("grant %+v (utxo spent by the chain: %v) reads back %s", *g, spent[g.Hash], r)
			}
		}
	}
	if bad > 10 {
		t.Errorf("... %d grants read back wrong in all", bad)
	}
	t.Logf("%d grants read back: %v", len(grants), states)
}

// ---- chain events ----

// chainEvents is another party moving the pool's UTXOs on the simulated
// chain: every 150 ms it spends one unspent pool UTXO, half the time to a
// foreign program, else into two new pool UTXOs; every fourth event mines a
// block.
type chainEvents struct {
	s      *stack
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	// Set by the goroutine, read after done.
	spent          map[string]bool // pool UTXOs it spent
	foreign, split int
	blocks, errs   int
	lastErr        string
}

func startChainEvents(s *stack) *chainEvents {
	ctx, cancel := context.WithCancel(context.Background())
	e := &chainEvents{s: s, ctx: ctx, cancel: cancel, done: make(chan struct{}), spent: map[string]bool{}}
	go e.run()
	return e
}

func (e *chainEvents) run() {
	defer close(e.done)
	fail := func(err error) {
		if e.ctx.Err() == nil {
			e.errs++
			e.lastErr = err.Error()
		}
	}
	for i := 0; e.ctx.Err() == nil; i++ {
		select {
		case <-e.ctx.Done():
			return
		case <-time.After(150 * time.Millisecond):
		}
		ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
		if i%4 == 3 {
			if err := e.s.simMine(ctx); err != nil {
				fail(err)
			} else {
				e.blocks++
			}
			cancel()
			continue
		}
		utxos, err := e.s.chainUTXOs(ctx)
		if err != nil || len(utxos) == 0 {
			fail(fmt.Errorf("chain utxos: %v (%d)", err, len(utxos)))
			cancel()
			continue
		}
		keys := sortedKeys(utxos)
		h := keys[(i*7919)%len(keys)]
		amount := utxos[h]
		outs := []map[string]any{{"asset": e.s.asset, "program": "0020" + randomHex(32), "amount": amount}}
		if i%2 == 0 && amount >= 2 {
			outs = []map[string]any{
				{"asset": e.s.asset, "program": e.s.program, "amount": amount / 2},
				{"asset": e.s.asset, "program": e.s.program, "amount": amount - amount/2},
			}
		}
		if created, err := e.s.simSpend(ctx, []string{h}, outs); err != nil {
			fail(err)
		} else {
			e.spent[h] = true
			if len(outs) == 2 {
				e.s.addKnown(created...)
				e.split++
			} else {
				e.foreign++
			}
		}
		cancel()
	}
}

// stop ends the events (at most once) and returns the pool UTXOs spent.
func (e *chainEvents) stop() map[string]bool {
	e.cancel()
	<-e.done
	return e.spent
}

func (e *chainEvents) summary() string {
	s := fmt.Sprintf("%d spent to another party, %d split in two pool UTXOs, %d blocks, %d errors", e.foreign, e.split, e.blocks, e.errs)
	if e.lastErr != "" {
		s += " (last: " + e.lastErr + ")"
	}
	return s
}

// ---- an unreachable chain source ----

// The syncer is started against a chain URL nothing listens on: it keeps
// running (one process, one leadership term, no crash loop), its /readyz
// answers 503 with a reason naming the chain source, and GET /v1/status shows
// the chain's last error. Once the simulated chain starts at that address,
// /readyz answers 200, the error clears and the pool is synced.
func TestSyncerNotReadyWhileTheChainIsUnreachable(t *testing.T) {
	for _, kind := range []string{kindBytomd, kindBlockcenter} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			syncerChainDown(t, kind)
		})
	}
}

// statusChain is the chain object of GET /v1/status.
type statusChain struct {
	TipHeight   int64      `json:"tip_height"`
	LastSuccess *time.Time `json:"last_success"`
	LastError   string     `json:"last_error"`
}

func (s *stack) chainStatus(ctx context.Context) (*statusChain, statusLeader, error) {
	status, raw, err := call(ctx, http.MethodGet, s.apis[0]+"/v1/status", nil)
	if err != nil {
		return nil, statusLeader{}, err
	}
	if status != http.StatusOK {
		return nil, statusLeader{}, fmt.Errorf("status %d: %s", status, raw)
	}
	var st struct {
		Chain  *statusChain  `json:"chain"`
		Leader *statusLeader `json:"leader"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, statusLeader{}, err
	}
	var l statusLeader
	if st.Leader != nil {
		l = *st.Leader
	}
	return st.Chain, l, nil
}

// readyz returns the status of a syncer's /readyz and its failed checks, comma-separated.
func readyz(ctx context.Context, ops string) (int, string, error) {
	status, raw, err := call(ctx, http.MethodGet, ops+"/readyz", nil)
	if err != nil {
		return 0, "", err
	}
	var body struct {
		Checks map[string]string `json:"checks"`
	}
	_ = json.Unmarshal(raw, &body)
	var failed []string
	for name, v := range body.Checks {
		if v != "ok" {
			failed = append(failed, name)
		}
	}
	slices.Sort(failed)
	return status, strings.Join(failed, ","), nil
}

func syncerChainDown(t *testing.T, kind string) {
	const utxos = 5
	s := &stack{t: t, dbURL: testenv.Postgres(t)}
	_, prefix := testenv.Redis(t)
	chainAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	ops := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	s.chain = "http://" + chainAddr
	s.env = append([]string{
		"BUFFERD_DATABASE_URL=" + s.dbURL,
		"BUFFERD_REDIS_URL=" + testenv.RedisURL(),
		"BUFFERD_REDIS_PREFIX=" + prefix,
		"BUFFERD_CHAIN_URL=" + s.chain,
		"BUFFERD_CHAIN_TIMEOUT=1s",
		"BUFFERD_ADMIN_TOKEN=" + adminToken,
		"BUFFERD_SYNC_INTERVAL=200ms",
		"BUFFERD_SYNC_MAX_BACKOFF=1s",
		"BUFFERD_METRICS_ADDR=127.0.0.1:0",
		"BUFFERD_LOG_LEVEL=info",
		"BUFFERD_DATABASE_MAX_CONNS=4",
		// What the test checks is that the chain's outage does not cost
		// the term. A lease of the default 9 s also ends when the whole
		// machine stalls for a few seconds, as a loaded CI machine once
		// did in both subtests at the same instant; 30 s keeps the term
		// through such a stall.
		"BUFFERD_LEADER_TTL=30s",
	}, kindEnv(kind, 2*time.Second)...)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	mig := exec.CommandContext(ctx, bufferdBin, "migrate", "up")
	mig.Env = append(os.Environ(), s.env...)
	if out, err := mig.CombinedOutput(); err != nil {
		t.Fatalf("bufferd migrate up: %v\n%s", err, out)
	}
	apiAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	s.apiProcs = []*proc{startBufferd(t, "api", s.env, "api", "--addr", apiAddr)}
	s.apis = []string{"http://" + apiAddr}
	waitHTTP(t, s.apis[0]+"/readyz", 30*time.Second, s.apiProcs[0])
	s.asset, s.program = randomHex(32), "0020"+randomHex(32)
	var pool struct {
		ID int64 `json:"id"`
	}
	mustCall(t, http.StatusCreated, http.MethodPost, s.apis[0]+"/v1/pools",
		map[string]string{"asset": s.asset, "program": s.program}, &pool, "Authorization", "Bearer "+adminToken)
	s.pool = pool.ID

	s.syncer = startBufferd(t, "syncer", append(s.env, "BUFFERD_METRICS_ADDR="+ops), "syncer")
	waitHTTP(t, "http://"+ops+"/livez", 30*time.Second, s.syncer)

	// Not ready, for the chain source's sake (the failed check is "chain");
	// the status says why.
	testenv.Eventually(t, 20*time.Second, func() error {
		code, reason, err := readyz(ctx, "http://"+ops)
		ch, _, serr := s.chainStatus(ctx)
		if err == nil && serr == nil && code == http.StatusServiceUnavailable && reason == "chain" &&
			ch != nil && strings.Contains(ch.LastError, chainAddr) {
			t.Logf("readyz: %d %s; status chain: %+v", code, reason, *ch)
			return nil
		}
		if s.syncer.exited() {
			t.Fatalf("syncer exited (%v) while the chain was unreachable", s.syncer.err)
		}
		return fmt.Errorf("no 503 naming the chain source: readyz %d %q %v; status chain %+v %v", code, reason, err, ch, serr)
	})
	_, leader, err := s.chainStatus(ctx)
	if err != nil || leader.ID == "" {
		t.Fatalf("leader while the chain is unreachable: %+v, %v", leader, err)
	}
	// It stays so over several retries (the backoff tops at 1 s), leading
	// the same term in the same process.
	for end := time.Now().Add(2500 * time.Millisecond); time.Now().Before(end); {
		if code, reason, err := readyz(ctx, "http://"+ops); err != nil || code != http.StatusServiceUnavailable {
			t.Fatalf("readyz while the chain is unreachable: %d %q %v", code, reason, err)
		}
		if s.syncer.exited() {
			t.Fatalf("syncer exited (%v) while the chain was unreachable", s.syncer.err)
		}
		time.Sleep(200 * time.Millisecond) // a window over the retries: what must not happen has no event
	}

	// The chain comes up at that address, with the pool's UTXOs.
	s.sim = startBufferd(t, "simchain", s.env, "simchain", "--addr", chainAddr)
	s.sim.waitOutput(t, "simulated chain listening", 30*time.Second)
	amounts := make([]uint64, utxos)
	for i := range amounts {
		amounts[i] = uint64(i+1) * 1000
	}
	mustCall(t, http.StatusOK, http.MethodPost, s.chain+"/sim/utxos",
		map[string]any{"asset": s.asset, "program": s.program, "amounts": amounts}, nil)
	up := time.Now()
	waitHTTP(t, "http://"+ops+"/readyz", 15*time.Second, s.syncer)
	t.Logf("ready %s after the chain came up", time.Since(up).Round(time.Millisecond))
	s.waitAvailable(utxos, 15*time.Second)
	// The status follows (a probe may have seen the chain before its first
	// block, at tip 0).
	var now statusLeader
	testenv.Eventually(t, 15*time.Second, func() error {
		ch, l, err := s.chainStatus(ctx)
		if err != nil || ch == nil || ch.LastError != "" || ch.LastSuccess == nil || ch.TipHeight < 1 {
			return fmt.Errorf("status chain once it answers: %+v, %v", ch, err)
		}
		now = l
		return nil
	})
	if now != leader {
		t.Errorf("leader changed from %+v to %+v: the chain's outage cost the term", leader, now)
	}
	if s.syncer.exited() {
		t.Fatalf("syncer exited: %v", s.syncer.err)
	}
	if n := strings.Count(s.syncer.output(), `"msg":"leading"`); n != 1 {
		t.Errorf("the syncer began leading %d times, want once", n)
	}
}

// TestAccountingFlagsLostAndDoubled checks the none-lost check itself on
// hand-made readings, so that one accepting everything cannot pass unnoticed.
func TestAccountingFlagsLostAndDoubled(t *testing.T) {
	t.Parallel()
	good := func() accounting {
		return accounting{
			chain:  map[string]uint64{"a": 1, "b": 2, "c": 3},
			free:   map[string]bool{"a": true},
			holds:  map[string][]string{"b": {"r1"}, "c": {"r2"}},
			counts: poolCounts{Available: 1, Reserved: 2},
		}
	}
	if p := good().problems(); len(p) != 0 {
		t.Fatalf("a consistent reading: %v", p)
	}
	cases := map[string]func(a *accounting){
		"lost":                    func(a *accounting) { delete(a.holds, "c"); a.counts.Reserved = 1 },
		"held and reservable":     func(a *accounting) { a.free["b"] = true; a.counts.Available = 2 },
		"held twice":              func(a *accounting) { a.holds["b"] = []string{"r1", "r3"} },
		"reservable, not unspent": func(a *accounting) { a.free["z"] = true; a.counts.Available = 2 },
		"held, not unspent":       func(a *accounting) { a.holds["z"] = []string{"r4"} },
		"counts off":              func(a *accounting) { a.counts.Available = 2 },
	}
	for name, breakIt := range cases {
		a := good()
		breakIt(&a)
		if p := a.problems(); len(p) == 0 {
			t.Errorf("%s: no problem found", name)
		}
	}
}
