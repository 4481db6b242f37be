// Package bench is bufferd's load generator: it drives one or more API
// replicas (and the simulated chain) through the scenarios of the performance
// report, checks every grant for duplicates, on the client side and in the
// PostgreSQL journal, and writes the report as markdown.
//
// Scenarios:
//
//	e       the floor: the same HTTP stack (fiber + go-redis) doing one EVALSHA
//	        of a SET NX PX script per request (FloorApp, served as its own process)
//	a       reserve + release cycles on a large pool, closed loop, 64 clients
//	half    the same, open loop at half of a's throughput (or Options.Rate)
//	b       contention: 200 clients, 10 UTXOs
//	c       the DApp flow: reserve by amount, spend on the simulated chain with the
//	        change back to the pool, submit, and the next client reserves the
//	        change (submit -> reservable latency)
//	d       the legacy frontend flow: /dapp/list-utxos, pick one, /dapp/update-utxo
//	memory  Redis used_memory and journal growth per live reservation
//
// Each scenario works on pools of its own, registered through the API with
// UTXOs created on the simulated chain; pools of many UTXOs are spent on the
// chain when their scenario is over, so the syncer's polling of them does
// not weigh on the next scenarios.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Scenarios are the scenario names, in the order Run runs them.
var Scenarios = []string{"e", "a", "half", "b", "c", "d", "memory"}

// Defaults of Options.
const (
	DefaultDuration           = 20 * time.Second
	DefaultPoolSize           = 20_000
	DefaultMemoryReservations = 100_000
	// DefaultContentionWait is what `bufferd bench` gives ContentionWait.
	DefaultContentionWait = time.Second
)

// Clients of each scenario.
const (
	clientsA      = 64
	clientsHalf   = 128 // workers of the open loop, enough to absorb bursts
	clientsB      = 200
	clientsC      = 8
	clientsE      = 64
	clientsMemory = 64
	utxosB        = 10
)

// Errors.
var (
	errNoAPI   = errors.New("bench: no API URL")
	errNoChain = errors.New("bench: the scenarios need the simulated chain's URL")
	errUnknown = errors.New("bench: unknown scenario")
)

// journalTolerance is the clock tolerance of the journal check.
const journalTolerance = 5 * time.Millisecond

// Target is the deployment under test.
type Target struct {
	// APIs are the base URLs of the API replicas; clients are spread over them.
	APIs []string
	// Chain is the simulated chain the deployment's syncer follows.
	Chain string
	// Floor is the base URL of a `bufferd bench floor` server (scenario e).
	Floor string
	// AdminToken registers the pools.
	AdminToken string
	// DatabaseURL, when set, is read for the journal check and its growth.
	DatabaseURL string
	// RedisURL, when set, is the Redis whose INFO memory the memory scenario reads.
	RedisURL string
}

// Options tune a run.
type Options struct {
	// Scenarios to run (names of Scenarios); empty means all.
	Scenarios []string
	// Duration of each timed scenario, after a warm-up of a fifth of it (at most 2 s).
	Duration time.Duration
	// Rate is the cycles a second of the open-loop scenario "half"; 0 means
	// half of the throughput scenario a measured.
	Rate float64
	// PoolSize is the UTXOs of the large pools (a and half).
	PoolSize int
	// LegacyPoolSize is the UTXOs of scenario d's pool.
	LegacyPoolSize int
	// Pools spreads scenarios a and half over that many pools (0 or 1: one),
	// which share PoolSize UTXOs.
	Pools int
	// MemoryReservations is how many live reservations the memory scenario makes.
	MemoryReservations int
	// ContentionWait is the wait_seconds of scenario b's reserves (0: none,
	// a client refused retries after a short random pause).
	ContentionWait time.Duration
	// Command is the command line, shown in the report.
	Command string
	// Processes names the deployment's processes on this machine by pid
	// (api, syncer...), for the CPU breakdown of each scenario.
	Processes map[int]string
	// Log receives progress; nil means slog.Default().
	Log *slog.Logger
}

func (o *Options) defaults() {
	if o.Duration <= 0 {
		o.Duration = DefaultDuration
	}
	if o.LegacyPoolSize <= 0 {
		o.LegacyPoolSize = DefaultLegacyPoolSize
	}
	if o.PoolSize <= 0 {
		o.PoolSize = DefaultPoolSize
	}
	if o.MemoryReservations <= 0 {
		o.MemoryReservations = DefaultMemoryReservations
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = Scenarios
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
}

func (o *Options) warmup() time.Duration { return min(2*time.Second, o.Duration/5) }

// runner is one run of the scenarios against a target.
type runner struct {
	t     Target
	o     Options
	log   *slog.Logger
	apis  []*peer
	chain *peer
	floor *peer
	admin *peer
	rep   *Report
	cpu   *cpuUse // of the last loop
	// server is what the APIs' histograms counted in the last loop.
	server map[string]histogram
	// database is the name of the deployment's database, which its
	// PostgreSQL sessions show.
	database string
}

// Run runs the chosen scenarios against t and returns the report; on an
// error the report holds what was measured until then.
func Run(ctx context.Context, t Target, o Options) (*Report, error) {
	o.defaults()
	for _, s := range o.Scenarios {
		if !slices.Contains(Scenarios, s) {
			return nil, fmt.Errorf("%w %q (known: %s)", errUnknown, s, strings.Join(Scenarios, ", "))
		}
	}
	if len(t.APIs) == 0 {
		return nil, errNoAPI
	}
	if t.Chain == "" {
		return nil, errNoChain
	}
	hc, closeConns := newHTTPClient(clientsB + clientsHalf)
	r := &runner{t: t, o: o, log: o.Log,
		chain: &peer{base: strings.TrimRight(t.Chain, "/"), hc: hc},
		admin: &peer{base: strings.TrimRight(t.APIs[0], "/"), hc: hc, token: t.AdminToken},
		rep: &Report{started: time.Now(), command: o.Command, apis: len(t.APIs), duration: o.Duration,
			warmup: o.warmup(), cpus: runtime.NumCPU(), goVersion: runtime.Version(),
			journalTolerance: journalTolerance, loadBefore: loadAverage()},
	}
	if u, err := url.Parse(t.DatabaseURL); err == nil {
		r.database = strings.TrimPrefix(u.Path, "/")
	}
	for _, u := range t.APIs {
		r.apis = append(r.apis, &peer{base: strings.TrimRight(u, "/"), hc: hc})
	}
	if t.Floor != "" {
		r.floor = &peer{base: strings.TrimRight(t.Floor, "/"), hc: hc}
	}
	err := r.run(ctx)
	hc.CloseIdleConnections()
	closeConns() // servers being stopped need not wait for them
	r.rep.finished, r.rep.loadAfter = time.Now(), loadAverage()
	return r.rep, err
}

func (r *runner) want(name string) bool { return slices.Contains(r.o.Scenarios, name) }

// step runs the scenarios it names.
type step struct {
	names []string
	run   func(context.Context) error
}

func (r *runner) run(ctx context.Context) error {
	steps := []step{
		{[]string{"e"}, r.scenarioFloor},
		{[]string{"a", "half"}, r.scenarioCycles},
		{[]string{"b"}, r.scenarioContention},
		{[]string{"c"}, r.scenarioDApp},
		{[]string{"d"}, r.scenarioLegacy},
		{[]string{"memory"}, r.scenarioMemory},
	}
	steps = slices.DeleteFunc(steps, func(s step) bool { return !slices.ContainsFunc(s.names, r.want) })
	var current atomic.Value // the step under way
	stop := r.reportProgress(&current)
	defer stop()
	for i, s := range steps {
		name := strings.Join(s.names, "/")
		current.Store(fmt.Sprintf("scenario %s (%d/%d)", name, i+1, len(steps)))
		if err := s.run(ctx); err != nil {
			return fmt.Errorf("bench: scenario %s: %w", name, err)
		}
	}
	current.Store("journal check")
	return r.checkJournal(ctx)
}

// progressEvery is how often a run logs which step it is at.
const progressEvery = 5 * time.Second

// reportProgress logs the step in current every progressEvery (a "progress"
// record, which a terminal shows as one updating line) until stop is called.
func (r *runner) reportProgress(current *atomic.Value) (stop func()) {
	done := make(chan struct{})
	start := time.Now()
	go func() {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				if step, _ := current.Load().(string); step != "" {
					r.log.Info("bench running", "progress", step, "elapsed", now.Sub(start).Round(time.Second).String())
				}
			}
		}
	}()
	return func() { close(done) }
}

// checkJournal reads the journal rows of every pool of the run and checks them.
func (r *runner) checkJournal(ctx context.Context) error {
	if r.t.DatabaseURL == "" {
		return nil
	}
	byPool := map[int64]*scenarioResult{}
	var pools []int64
	for _, res := range r.rep.results {
		for _, p := range res.Pools {
			byPool[p] = res
			pools = append(pools, p)
		}
	}
	if len(pools) == 0 {
		return nil
	}
	rows, err := readJournal(ctx, r.t.DatabaseURL, pools)
	if err != nil {
		return err
	}
	r.rep.journalChecked, r.rep.journalRows = true, len(rows)
	for _, res := range r.rep.results {
		res.JournalChecked = true
	}
	for _, d := range CheckJournal(rows, journalTolerance) {
		res := byPool[d.Pool]
		res.JournalDuplicates = append(res.JournalDuplicates, d)
	}
	return nil
}

// randomHex returns n random bytes as hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
