// Package loadgen is `bufferd bench`: a load generator that drives one or more
// bufferd API replicas through the scenarios of the performance report,
// checks every grant for duplicates (client-side and against the journal) and
// writes the report.
package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ErrTarget means the deployment under test did not answer as expected.
var ErrTarget = errors.New("loadgen: unexpected answer")

// Target is the deployment a run drives.
type Target struct {
	APIs       []string // API base URLs, used round robin
	Chain      string   // the simulated chain's base URL
	Floor      string   // the floor server's base URL (scenario e)
	AdminToken string
}

// Options shape a run.
type Options struct {
	Duration  time.Duration // per scenario
	Scenarios []string      // of "a" to "e", "half" (p99 at half load) and "memory"
	PoolSize  int           // UTXOs of scenario a's pool
	// MemoryReservations is how many live reservations the memory scenario makes.
	MemoryReservations int
	Log                *slog.Logger
}

// Scenario is what one scenario measured.
type Scenario struct {
	Key, Title string
	Clients    int
	Elapsed    time.Duration
	Requests   int64          // HTTP requests answered
	Cycles     int64          // completed operations (a reserve+release, a DApp cycle...)
	Answers    map[string]int // by status (and code when it is an error)
	Latency    Summary        // of the scenario's main request
	Extra      map[string]Summary
	Notes      []string
	Grants     int
	Duplicates []string // certain double grants seen by the clients
	PoolID     int64
}

// RequestRate is requests a second.
func (s *Scenario) RequestRate() float64 { return float64(s.Requests) / s.Elapsed.Seconds() }

// CycleRate is completed operations a second.
func (s *Scenario) CycleRate() float64 { return float64(s.Cycles) / s.Elapsed.Seconds() }

// runner drives one target.
type runner struct {
	t      Target
	o      Options
	client *http.Client
	next   atomic.Int64
}

func newRunner(t Target, o Options) *runner {
	tr := &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 512, IdleConnTimeout: time.Minute}
	return &runner{t: t, o: o, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (r *runner) api() string { return r.t.APIs[int(r.next.Add(1))%len(r.t.APIs)] }

// call sends one JSON request and returns the status and body.
func (r *runner) call(ctx context.Context, method, url string, body any, header ...string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// must is call expecting want.
func (r *runner) must(ctx context.Context, want int, method, url string, body, out any, header ...string) error {
	status, b, err := r.call(ctx, method, url, body, header...)
	if err != nil {
		return err
	}
	if status != want {
		return fmt.Errorf("%w: %s %s: %d %s", ErrTarget, method, url, status, snippet(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func snippet(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

// pool is a contract pool made for a scenario.
type pool struct {
	ID             int64
	Asset, Program string
	Hashes         []string
}

// newPool mints n UTXOs of amount each on the simulated chain, registers
// their pool and waits until the syncer has offered them all.
func (r *runner) newPool(ctx context.Context, n int, amount int64) (pool, error) {
	p := pool{Asset: randHex(32), Program: "0020" + randHex(32)}
	for len(p.Hashes) < n {
		batch := min(n-len(p.Hashes), 100_000)
		amounts := make([]int64, batch)
		for i := range amounts {
			amounts[i] = amount
		}
		var minted struct {
			Hashes []string `json:"hashes"`
		}
		err := r.must(ctx, http.StatusOK, http.MethodPost, r.t.Chain+"/sim/utxos",
			map[string]any{"asset": p.Asset, "program": p.Program, "amounts": amounts}, &minted)
		if err != nil {
			return p, err
		}
		p.Hashes = append(p.Hashes, minted.Hashes...)
	}
	var created struct {
		ID int64 `json:"id"`
	}
	err := r.must(ctx, http.StatusCreated, http.MethodPost, r.t.APIs[0]+"/v1/pools",
		map[string]string{"asset": p.Asset, "program": p.Program}, &created, "Authorization", "Bearer "+r.t.AdminToken)
	if err != nil {
		return p, err
	}
	p.ID = created.ID
	deadline := time.Now().Add(2*time.Minute + time.Duration(n/1000)*time.Second)
	for {
		var got struct {
			Counts struct {
				Available int `json:"available"`
			} `json:"counts"`
		}
		if err := r.must(ctx, http.StatusOK, http.MethodGet, fmt.Sprintf("%s/v1/pools/%d", r.t.APIs[0], p.ID), nil, &got); err != nil {
			return p, err
		}
		if got.Counts.Available >= n {
			// The database has them; Redis follows in the same sync pass.
			time.Sleep(500 * time.Millisecond)
			return p, nil
		}
		if time.Now().After(deadline) {
			return p, fmt.Errorf("%w: pool %d has %d of %d utxos available", ErrTarget, p.ID, got.Counts.Available, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// reservation is the part of a v1 reservation the scenarios read.
type reservation struct {
	ID    string `json:"id"`
	Fence int64  `json:"fence"`
	UTXOs []struct {
		Hash   string `json:"hash"`
		Amount int64  `json:"amount"`
	} `json:"utxos"`
}

// answers counts answers by status and error code; safe for concurrent use.
type answers struct {
	mu sync.Mutex
	m  map[string]int
	n  atomic.Int64
}

func (a *answers) add(status int, body []byte, err error) {
	key := strconv.Itoa(status)
	switch {
	case err != nil:
		key = "transport error"
	case status >= 400:
		var e struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
			key += " " + e.Error.Code
		}
	}
	a.n.Add(1)
	a.mu.Lock()
	if a.m == nil {
		a.m = map[string]int{}
	}
	a.m[key]++
	a.mu.Unlock()
}

func (a *answers) snapshot() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]int, len(a.m))
	for k, v := range a.m {
		out[k] = v
	}
	return out
}

// clients runs n clients calling loop until the duration passes and returns
// how long they ran.
func (r *runner) clients(ctx context.Context, n int, loop func(ctx context.Context, c int)) time.Duration {
	ctx, cancel := context.WithTimeout(ctx, r.o.Duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for c := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				loop(ctx, c)
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// reserve asks for a reservation and returns it when granted (201).
func (r *runner) reserve(ctx context.Context, body map[string]any, ans *answers, lat *Latencies) (*reservation, int) {
	start := time.Now()
	status, b, err := r.call(ctx, http.MethodPost, r.api()+"/v1/reservations", body)
	if ctx.Err() != nil {
		return nil, 0 // cut by the end of the scenario: not an answer
	}
	if lat != nil {
		lat.Add(time.Since(start))
	}
	ans.add(status, b, err)
	if err != nil || status != http.StatusCreated {
		return nil, status
	}
	var res reservation
	if json.Unmarshal(b, &res) != nil || len(res.UTXOs) == 0 {
		return nil, status
	}
	return &res, status
}

// release deletes a reservation; it is sent even when the scenario's time is
// up, so that no grant is left held.
func (r *runner) release(ctx context.Context, id string, ans *answers, lat *Latencies) {
	ctx = context.WithoutCancel(ctx)
	start := time.Now()
	status, b, err := r.call(ctx, http.MethodDelete, r.api()+"/v1/reservations/"+id, nil)
	if lat != nil {
		lat.Add(time.Since(start))
	}
	ans.add(status, b, err)
}
