package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bufferd/bufferd/internal/testenv"
)

// grantRec is a reservation a client was granted (201) during a workload.
type grantRec struct {
	ID    string
	Hash  string
	Fence int64
	API   string
	Call  time.Duration // since the workload's origin
	Ret   time.Duration
	// Released is set when a release of it answered 200 with the state
	// released (a retried release of a released reservation answers 200 too:
	// release is idempotent). ReleaseCall is when the first release was sent:
	// the release took effect after it.
	Released    bool
	ReleaseCall time.Duration
	// Ended is set when a release answered 410 reservation_ended: it ended
	// otherwise (the chain spent its UTXO); whether it may have is for the
	// test's answer checks to say.
	Ended       bool
	releaseSent bool // a release was sent (the client's own bookkeeping)
}

// attempt is one reserve or release call of a workload and its answer.
type attempt struct {
	Call, Ret time.Duration
	Status    int // 0: transport error
	Code      string
	Err       string
	Retry     bool   // a release sent again after a failed one
	Hash      string // the UTXO of the reservation a release is of
	// RetryAfter is the answer's Retry-After header.
	RetryAfter string
}

// workload is a set of clients reserving count:1 over a stack's APIs, each
// releasing its oldest reservation once it holds more than keep, until halted.
// Failed releases are retried (after a reserve, so that reserves go on during
// an outage), so a reservation is only given up with a 200 saying released.
type workload struct {
	s      *stack
	origin time.Time
	ctx    context.Context
	cancel context.CancelFunc
	halted chan struct{}
	wg     sync.WaitGroup

	mu        sync.Mutex
	grants    []*grantRec
	reserves  []attempt
	releases  []attempt
	malformed []string // 201 answers that are not one UTXO of the pool
}

func startWorkload(s *stack, clients, keep int) *workload {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	w := &workload{s: s, origin: time.Now(), ctx: ctx, cancel: cancel, halted: make(chan struct{})}
	for c := 0; c < clients; c++ {
		w.wg.Add(1)
		go w.client(c, keep)
	}
	return w
}

// now is the time since the workload started.
func (w *workload) now() time.Duration { return time.Since(w.origin) }

func (w *workload) client(c, keep int) {
	defer w.wg.Done()
	var live []*grantRec
	releaseFailed := false // the last call was a failed release: reserve next
	for i := 0; ; i++ {
		select {
		case <-w.halted:
			return
		default:
		}
		pause := time.Millisecond
		if len(live) > keep && !releaseFailed {
			g := live[0]
			api := w.s.api(c + i + 1)
			call := w.now()
			w.mu.Lock()
			retry := g.releaseSent
			if !retry {
				g.releaseSent, g.ReleaseCall = true, call
			}
			w.mu.Unlock()
			r := release(w.ctx, api, g.ID)
			a := w.attempt(call, r)
			a.Retry, a.Hash = retry, g.Hash
			w.mu.Lock()
			w.releases = append(w.releases, a)
			switch {
			case r.Err == nil && r.Status == http.StatusOK && r.Res.ID == g.ID && r.Res.State == "released":
				g.Released = true
				live = live[1:]
			case r.Err == nil && r.Status == http.StatusGone && r.Code == "reservation_ended":
				g.Ended = true
				live = live[1:]
			default:
				releaseFailed = true
				pause = 20 * time.Millisecond
			}
			w.mu.Unlock()
		} else {
			releaseFailed = false
			api := w.s.api(c + i)
			call := w.now()
			r := reserve(w.ctx, api, reserveReq{Pool: w.s.pool, Count: 1, TTLSeconds: 600, Owner: fmt.Sprintf("load%d", c)})
			a := w.attempt(call, r)
			w.mu.Lock()
			w.reserves = append(w.reserves, a)
			// Whether the UTXO is the pool's is checked at the end
			// (checkGrantsKnown): chain events may create pool UTXOs.
			switch {
			case r.Err == nil && r.Status == http.StatusCreated && (r.hash() == "" || r.Res.Pool != w.s.pool):
				w.malformed = append(w.malformed, r.String())
			case r.Err == nil && r.Status == http.StatusCreated:
				g := &grantRec{ID: r.Res.ID, Hash: r.hash(), Fence: r.Res.Fence, API: api, Call: call, Ret: a.Ret}
				w.grants = append(w.grants, g)
				live = append(live, g)
			default:
				pause = 20 * time.Millisecond
			}
			w.mu.Unlock()
		}
		select {
		case <-w.halted:
			return
		case <-time.After(pause):
		}
	}
}

func (w *workload) attempt(call time.Duration, r reply) attempt {
	a := attempt{Call: call, Ret: w.now(), Status: r.Status, Code: r.Code, RetryAfter: r.RetryAfter}
	if r.Err != nil {
		a.Err = r.Err.Error()
	}
	return a
}

// checkGrantsKnown fails the test for every 201 answer of w that was not one
// UTXO of the pool (checked against the pool's UTXOs as known now).
func checkGrantsKnown(t *testing.T, w *workload) {
	t.Helper()
	for _, m := range w.malformed {
		t.Errorf("a count:1 reserve was granted something else: %s", m)
	}
	known := w.s.hashSet()
	for _, g := range w.grants {
		if !known[g.Hash] {
			t.Errorf("a count:1 reserve was granted %s, no UTXO of the pool: %+v", g.Hash, *g)
		}
	}
}

// halt stops the clients and waits for their last calls.
func (w *workload) halt() {
	close(w.halted)
	w.wg.Wait()
	w.cancel()
}

// firstGrantAfter waits until a reserve sent after t was granted and returns
// when its answer came; ok is false after timeout.
func (w *workload) firstGrantAfter(t, timeout time.Duration) (time.Duration, bool) {
	var ret time.Duration
	err := testenv.Poll(timeout, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, g := range w.grants {
			if g.Call > t {
				ret = g.Ret
				return nil
			}
		}
		return errors.New("no grant yet")
	})
	return ret, err == nil
}

// waitGrants waits until n reserves sent after from were granted: the
// workload is under way (before a fault), or has recovered (after one).
func (w *workload) waitGrants(t *testing.T, from time.Duration, n int) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		got := 0
		for _, g := range w.grants {
			if g.Call > from {
				got++
			}
		}
		if got < n {
			return fmt.Errorf("%d grants since %s, want %d", got, from.Round(time.Millisecond), n)
		}
		return nil
	})
}

// statusCounts summarises answers, e.g. "201:812 503:40".
func statusCounts(as []attempt) string {
	m := map[string]int{}
	for _, a := range as {
		k := fmt.Sprint(a.Status)
		if a.Status == 0 {
			k = "error"
		} else if a.Code != "" {
			k += "/" + a.Code
		}
		m[k]++
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s:%d ", k, m[k])
	}
	return strings.TrimSpace(b.String())
}

// checkOneHolder fails the test when two acknowledged reservations held one
// UTXO at the same time: for any two grants of a hash, one must have been
// released (200), with the release sent before the other grant was answered.
func checkOneHolder(t *testing.T, grants []*grantRec) {
	t.Helper()
	byHash := map[string][]*grantRec{}
	for _, g := range grants {
		byHash[g.Hash] = append(byHash[g.Hash], g)
	}
	bad := 0
	for h, gs := range byHash {
		for i := 0; i < len(gs); i++ {
			for j := i + 1; j < len(gs); j++ {
				a, b := gs[i], gs[j]
				if (a.Released && a.ReleaseCall < b.Ret) || (b.Released && b.ReleaseCall < a.Ret) {
					continue
				}
				bad++
				if bad <= 10 {
					t.Errorf("utxo %s held twice: %+v and %+v", h, *a, *b)
				}
			}
		}
	}
	if bad > 10 {
		t.Errorf("... %d overlapping grants in all", bad)
	}
}

// checkFences fails the test unless fences are unique and every fence granted
// to a reserve sent after the fault ended is above every fence granted before
// the fault began.
func checkFences(t *testing.T, grants []*grantRec, faultStart, faultEnd time.Duration) {
	t.Helper()
	seen := map[int64]string{}
	for _, g := range grants {
		if prev, dup := seen[g.Fence]; dup {
			t.Errorf("fence %d granted twice: %s and %s", g.Fence, prev, g.ID)
		}
		seen[g.Fence] = g.ID
	}
	maxBefore, minAfter, nBefore, nAfter := fencesAround(grants, faultStart, faultEnd)
	t.Logf("fences: %d grants before the fault up to %d, %d after from %d", nBefore, maxBefore, nAfter, minAfter)
	if nBefore == 0 || nAfter == 0 {
		t.Errorf("no grants before (%d) or after (%d) the fault: nothing to compare", nBefore, nAfter)
	} else if minAfter <= maxBefore {
		t.Errorf("fence %d granted after the fault is not above %d granted before it", minAfter, maxBefore)
	}
}

// fencesAround returns the highest fence of the grants answered before from
// and the lowest of those sent after to (-1 when none), and how many of each.
func fencesAround(grants []*grantRec, from, to time.Duration) (maxBefore, minAfter int64, nBefore, nAfter int) {
	minAfter = -1
	for _, g := range grants {
		if g.Ret < from {
			nBefore++
			maxBefore = max(maxBefore, g.Fence)
		}
		if g.Call > to {
			nAfter++
			if minAfter < 0 || g.Fence < minAfter {
				minAfter = g.Fence
			}
		}
	}
	return maxBefore, minAfter, nBefore, nAfter
}

// checkJournal fails the test unless every grant has its journal row (same
// pool, fence and hash; released when a release answered 200, held otherwise)
// and no UTXO is in two held rows. Rows no client was told about are logged.
// A release reaches the journal after its answer, and one whose API died
// first only through the syncer's sweep: the journal is given until
// journalSettle to agree.
func checkJournal(t *testing.T, s *stack, grants []*grantRec) {
	t.Helper()
	var problems []string
	var summary string
	_ = testenv.Poll(journalSettle, func() error {
		if problems, summary = journalProblems(t, s, grants); len(problems) > 0 {
			return errors.New("the journal disagrees")
		}
		return nil
	})
	for i, p := range problems {
		if i == 10 {
			t.Errorf("... %d problems in all", len(problems))
			break
		}
		t.Error(p)
	}
	t.Log(summary)
}

// journalSettle is how long checkJournal waits for the journal to agree
// with what the clients were told: a sweep interval of the stack that kills
// APIs (faultSweep) and its one-second wait before it writes a release.
const journalSettle = faultSweep + 5*time.Second

// faultSweep is BUFFERD_SWEEP_INTERVAL of the stacks that kill an API.
const faultSweep = time.Second

// journalProblems compares the journal with the grants (see checkJournal).
func journalProblems(t *testing.T, s *stack, grants []*grantRec) (problems []string, summary string) {
	t.Helper()
	rows := queryJournal(t, s.dbURL)
	byID := make(map[string]journalRow, len(rows))
	heldBy := map[string]string{}
	for _, r := range rows {
		byID[r.ID] = r
		if r.State == "held" || r.State == "submitted" {
			for _, h := range strings.Split(r.Hashes, ",") {
				if prev, dup := heldBy[h]; dup {
					problems = append(problems, fmt.Sprintf("journal: utxo %s is in two live rows: %s and %s", h, prev, r.ID))
				}
				heldBy[h] = r.ID
			}
		}
	}
	missing := 0
	for _, g := range grants {
		r, ok := byID[g.ID]
		want := "held"
		if g.Released {
			want = "released"
		}
		switch {
		case !ok:
			missing++
			problems = append(problems, fmt.Sprintf("granted reservation %s (fence %d, answered at %s) has no journal row", g.ID, g.Fence, g.Ret))
		case r.PoolID != s.pool || r.Fence != g.Fence || r.Hashes != g.Hash || r.State != want:
			problems = append(problems, fmt.Sprintf("journal row %+v does not match grant %+v (want state %s)", r, *g, want))
		}
		delete(byID, g.ID)
	}
	if missing > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d granted reservations have no journal row", missing, len(grants)))
	}
	states := map[string]int{}
	for _, r := range byID {
		states[r.State]++
	}
	return problems, fmt.Sprintf("journal: %d rows; %d rows no client was granted, by state: %v", len(rows), len(byID), states)
}

// checkLiveAfter reads every grant back through the API: one still live must
// be held with its fence, one released must read released.
func checkLiveAfter(t *testing.T, s *stack, grants []*grantRec) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		mu             sync.Mutex
		wg             sync.WaitGroup
		live, released int
		bad            []string
	)
	next := make(chan int)
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				g := grants[i]
				want := "held"
				if g.Released {
					want = "released"
				}
				r := getReservation(ctx, s.api(i), g.ID)
				mu.Lock()
				switch {
				case r.Err != nil || r.Status != http.StatusOK || r.Res.State != want || r.Res.Fence != g.Fence:
					bad = append(bad, fmt.Sprintf("GET reservation %s (fence %d, want %s): %s", g.ID, g.Fence, want, r))
				case g.Released:
					released++
				default:
					live++
				}
				mu.Unlock()
			}
		}()
	}
	for i := range grants {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, b := range bad {
		if i == 10 {
			t.Errorf("... %d reservations read back wrong in all", len(bad))
			break
		}
		t.Error(b)
	}
	t.Logf("after the run: %d live reservations read back held, %d released ones released", live, released)
}
