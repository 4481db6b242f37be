package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Sentinel errors.
var (
	// ErrViolation is what Run returns (wrapped) when a check failed; the
	// Report says which and how.
	ErrViolation = errors.New("chaos: invariant violated")
	// ErrSetup means the deployment could not be started or restored.
	ErrSetup = errors.New("chaos: deployment setup failed")
	// ErrNotQuiet means a quiet point could not be reached in time (the
	// syncer did not catch up with the chain, an API did not become ready).
	ErrNotQuiet = errors.New("chaos: no quiet point reached")
	// ErrOptions means the options are unusable.
	ErrOptions = errors.New("chaos: bad options")
)

// Defaults of Options.
const (
	DefaultClients       = 8
	DefaultPools         = 3
	DefaultUTXOs         = 16
	DefaultRound         = 4 * time.Second
	DefaultSweepInterval = time.Second
	DefaultAPIs          = 3
	DefaultSyncers       = 2
)

// Options configure a Run.
type Options struct {
	// Seed makes every random choice; the same seed gives the same schedule.
	Seed uint64
	// Duration is how long rounds are started for, from the first round on
	// (the deployment's start is not counted): the round running when it
	// passes is the last one (at least one round runs).
	Duration time.Duration
	// Executable is the bufferd binary to run the deployment with.
	Executable string
	// Clients is how many clients run at once (DefaultClients), Pools how
	// many contract pools they share (DefaultPools), UTXOs how many UTXOs
	// each pool starts with (DefaultUTXOs).
	Clients, Pools, UTXOs int
	// Round is how long each round's clients, chain events and faults run
	// before a quiet point (DefaultRound).
	Round time.Duration
	// SweepInterval is the syncers' --sweep-interval (DefaultSweepInterval);
	// a long one effectively turns the sweep off.
	SweepInterval time.Duration
	// NoFaults leaves out the faults (clients and chain events only).
	NoFaults bool
	// ShrinkBudget bounds the time spent looking for a shorter history that
	// still fails after a violation (0: no shrinking).
	ShrinkBudget time.Duration
	// WorkDir receives the processes' logs and each trial's history
	// (default: a temporary directory, removed unless the run failed).
	WorkDir string
	// ProcessLogLevel is the bufferd processes' BUFFERD_LOG_LEVEL (default warn).
	ProcessLogLevel string
	// BeforeCheck, when set, runs at every quiet point right before the
	// checks, with the deployment's coordinates: tests inject known
	// violations through it to show that the checker catches them.
	BeforeCheck func(ctx context.Context, p Probe) error
	Log         *slog.Logger
}

// Probe is what BeforeCheck gets to reach the deployment.
type Probe struct {
	Round       int
	DatabaseURL string
	RedisURL    string
	// Prefix is the deployment's Redis key prefix.
	Prefix string
	// Pools are the pool ids, Programs and Assets theirs, in pool order.
	Pools    []int64
	Assets   []string
	Programs []string
}

func (o *Options) defaults() error {
	if o.Executable == "" {
		return fmt.Errorf("%w: Executable is required", ErrOptions)
	}
	if o.Clients <= 0 {
		o.Clients = DefaultClients
	}
	if o.Pools <= 0 {
		o.Pools = DefaultPools
	}
	if o.UTXOs <= 0 {
		o.UTXOs = DefaultUTXOs
	}
	if o.Round <= 0 {
		o.Round = DefaultRound
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.ProcessLogLevel == "" {
		o.ProcessLogLevel = "warn"
	}
	return nil
}

// Violation is one failed check.
type Violation struct {
	// Kind is one of the Kind* constants.
	Kind  string
	Round int
	// Pool is the pool's id (0 when the check is not per pool).
	Pool   int64
	Detail string
}

func (v Violation) String() string {
	if v.Pool != 0 {
		return fmt.Sprintf("round %d: %s: pool %d: %s", v.Round, v.Kind, v.Pool, v.Detail)
	}
	return fmt.Sprintf("round %d: %s: %s", v.Round, v.Kind, v.Detail)
}

// Kinds of violations.
const (
	// KindLost: an unspent UTXO neither reservable nor held by a live
	// reservation (journal and Redis agreeing).
	KindLost = "lost"
	// KindDoubled: a UTXO in two live reservations, or reservable while held.
	KindDoubled = "doubled"
	// KindPhantom: reservable, but not an unspent UTXO of the pool.
	KindPhantom = "phantom"
	// KindUnsettled: a held (not submitted) live reservation holds a UTXO
	// the chain no longer offers.
	KindUnsettled = "unsettled"
	// KindCounts: the pool counts of GET /v1/pools differ from what can be
	// reserved.
	KindCounts = "counts"
	// KindFence: a fence did not grow.
	KindFence = "fence"
	// KindUnjournalled: a reservation a client was told it holds is not in
	// the journal (or differs there).
	KindUnjournalled = "unjournalled"
	// KindOverlap: two clients held the same UTXO at the same time (client
	// side or in the journal).
	KindOverlap = "overlap"
	// KindRetry: an idempotent retry did not return the first reservation.
	KindRetry = "retry"
)

// Event is one entry of a run's history: a step carried out (Index is the
// step's), a fault restored or a quiet point checked (Index -1).
type Event struct {
	Seed  uint64
	Index int
	Round int
	// At is the time since the trial started.
	At     time.Duration
	Actor  string
	Kind   string
	Detail string
}

func (e Event) String() string {
	idx := "-"
	if e.Index >= 0 {
		idx = fmt.Sprint(e.Index)
	}
	return fmt.Sprintf("seed %d #%s r%d +%s %s %s: %s", e.Seed, idx, e.Round, e.At.Round(time.Millisecond), e.Actor, e.Kind, e.Detail)
}

// Report is what a Run did and found.
type Report struct {
	Seed     uint64
	Elapsed  time.Duration
	Rounds   int
	Ops      map[string]int // client operations by kind
	Outcomes map[string]int // client operation outcomes ("reserve 201", ...)
	Chain    map[string]int // chain events by kind
	Faults   map[string]int // faults by kind
	// QuietPoints counts the quiet points checked, Grants the UTXO grants
	// clients received.
	QuietPoints, Grants int
	Violations          []Violation
	// Lost counts the distinct UTXOs found lost.
	Lost int
	// History is the failing trial's history (every event), Shortest the
	// shortest history found that still fails, ShrinkTrials how many
	// replays the search took.
	History      []Event
	Shortest     []Event
	ShrinkTrials int
	// WorkDir holds the processes' logs when kept.
	WorkDir string
	// Error is why the run stopped early ("" when it did not).
	Error string
}

// Failed reports whether a check failed.
func (r *Report) Failed() bool { return len(r.Violations) > 0 }
