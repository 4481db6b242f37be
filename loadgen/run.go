package loadgen

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// Probes read the deployment's state beside its API; each is optional.
type Probes struct {
	// Journal returns the journal rows of the pools.
	Journal func(ctx context.Context, pools []int64) ([]JournalRow, error)
	// RedisMemory returns Redis's used_memory in bytes.
	RedisMemory func(ctx context.Context) (int64, error)
	// JournalBytes returns the size of the journal table with its indexes.
	JournalBytes func(ctx context.Context) (int64, error)
}

// Memory is what the memory scenario measured.
type Memory struct {
	Reservations int
	RedisBytes   int64 // growth of Redis's used_memory
	JournalBytes int64 // growth of the journal table and its indexes
}

// Report is a whole run.
type Report struct {
	Started           time.Time
	Target            Target
	Options           Options
	Scenarios         []*Scenario
	JournalChecked    bool
	JournalRows       int
	JournalDuplicates []string
	Memory            *Memory
}

// Scenario returns the scenario with key, or nil.
func (r *Report) Scenario(key string) *Scenario {
	for _, s := range r.Scenarios {
		if s.Key == key {
			return s
		}
	}
	return nil
}

// AllScenarios are the scenario keys in the order they run.
var AllScenarios = []string{"a", "half", "b", "c", "d", "e", "memory"}

// Run drives t through the scenarios of o and returns the report.
func Run(ctx context.Context, t Target, o Options, probes Probes) (*Report, error) {
	if len(t.APIs) == 0 {
		return nil, fmt.Errorf("%w: no API URL", ErrTarget)
	}
	if o.Duration <= 0 {
		o.Duration = 20 * time.Second
	}
	if o.PoolSize <= 0 {
		o.PoolSize = 20_000
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = AllScenarios
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	r := newRunner(t, o)
	rep := &Report{Started: time.Now(), Target: t, Options: o}
	want := func(k string) bool { return slices.Contains(o.Scenarios, k) }
	var pools []int64
	add := func(s *Scenario) {
		rep.Scenarios = append(rep.Scenarios, s)
		if s.PoolID != 0 && !slices.Contains(pools, s.PoolID) {
			pools = append(pools, s.PoolID)
		}
		o.Log.Info("scenario done", "scenario", s.Key, "requests", s.Requests, "req_per_s", int(s.RequestRate()),
			"p50", s.Latency.P50, "p99", s.Latency.P99, "duplicates", len(s.Duplicates))
	}
	newPool := func(n int, amount int64) (pool, error) {
		o.Log.Info("making a pool", "utxos", n)
		return r.newPool(ctx, n, amount)
	}

	if want("a") || want("half") {
		p, err := newPool(o.PoolSize, 1000)
		if err != nil {
			return rep, err
		}
		a := r.reserveRelease(ctx, p, 64)
		if want("a") {
			add(a)
		}
		if want("half") && a.CycleRate() > 0 {
			add(r.halfLoad(ctx, p, a.CycleRate()/2))
		}
	}
	if want("b") {
		p, err := newPool(10, 1000)
		if err != nil {
			return rep, err
		}
		add(r.contention(ctx, p, 200))
	}
	if want("c") {
		if t.Chain == "" {
			return rep, fmt.Errorf("%w: scenario c needs the simulated chain's URL", ErrTarget)
		}
		p, err := newPool(64, 100_000)
		if err != nil {
			return rep, err
		}
		add(r.dappFlow(ctx, p, 8))
	}
	if want("d") {
		p, err := newPool(o.PoolSize, 1000)
		if err != nil {
			return rep, err
		}
		add(r.legacyFlow(ctx, p, 64))
	}
	if want("e") {
		if t.Floor == "" {
			return rep, fmt.Errorf("%w: scenario e needs the floor server's URL", ErrTarget)
		}
		add(r.floor(ctx, 64))
	}
	if probes.Journal != nil && len(pools) > 0 {
		rows, err := probes.Journal(ctx, pools)
		if err != nil {
			return rep, fmt.Errorf("loadgen: read the journal: %w", err)
		}
		rep.JournalChecked, rep.JournalRows = true, len(rows)
		rep.JournalDuplicates = JournalDuplicates(rows, 50*time.Millisecond)
	}
	if want("memory") && o.MemoryReservations > 0 && probes.RedisMemory != nil {
		p, err := newPool(o.MemoryReservations, 1000)
		if err != nil {
			return rep, err
		}
		m, err := measureMemory(ctx, r, p, probes)
		if err != nil {
			return rep, err
		}
		rep.Memory = m
	}
	return rep, nil
}

func measureMemory(ctx context.Context, r *runner, p pool, probes Probes) (*Memory, error) {
	redisBefore, err := probes.RedisMemory(ctx)
	if err != nil {
		return nil, err
	}
	var journalBefore int64
	if probes.JournalBytes != nil {
		if journalBefore, err = probes.JournalBytes(ctx); err != nil {
			return nil, err
		}
	}
	n, err := r.holdMany(ctx, p, 64)
	if err != nil {
		return nil, err
	}
	m := &Memory{Reservations: n}
	redisAfter, err := probes.RedisMemory(ctx)
	if err != nil {
		return nil, err
	}
	m.RedisBytes = redisAfter - redisBefore
	if probes.JournalBytes != nil {
		after, err := probes.JournalBytes(ctx)
		if err != nil {
			return nil, err
		}
		m.JournalBytes = after - journalBefore
	}
	return m, nil
}
