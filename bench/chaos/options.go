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
	// errViolation is what Run returns (wrapped) when a check failed; the
	// Report says which and how.
	errViolation = errors.New("chaos: invariant violated")
	// errSetup means the deployment could not be started or restored.
	errSetup = errors.New("chaos: deployment setup failed")
	// errNotQuiet means a quiet point could not be reached in time (the
	// syncer did not catch up with the chain, an API did not become ready).
	errNotQuiet = errors.New("chaos: no quiet point reached")
	// errOptions means the options are unusable.
	errOptions = errors.New("chaos: bad options")
)

// Defaults of Options.
const (
	DefaultClients       = 8
	DefaultPools         = 3
	DefaultUTXOs         = 16
	DefaultRound         = 4 * time.Second
	DefaultSweepInterval = time.Second
	defaultAPIs          = 3
	defaultSyncers       = 2
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
	Log             *slog.Logger

	// beforeCheck, when set, runs at every quiet point right before the
	// checks, with the deployment's coordinates: tests inject known
	// violations through it to show that the checker catches them.
	beforeCheck func(ctx context.Context, p probe) error
}

// probe is what beforeCheck gets to reach the deployment.
type probe struct {
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
		return fmt.Errorf("%w: Executable is required", errOptions)
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

// violation is one failed check.
type violation struct {
	// Kind is one of the kind* constants.
	Kind  string
	Round int
	// Pool is the pool's id (0 when the check is not per pool).
	Pool   int64
	Detail string
}

func (v violation) String() string {
	if v.Pool != 0 {
		return fmt.Sprintf("round %d: %s: pool %d: %s", v.Round, v.Kind, v.Pool, v.Detail)
	}
	return fmt.Sprintf("round %d: %s: %s", v.Round, v.Kind, v.Detail)
}

// Kinds of violations.
const (
	// kindLost: an unspent UTXO neither reservable nor held by a live
	// reservation (journal and Redis agreeing).
	kindLost = "lost"
	// kindDoubled: a UTXO in two live reservations, or reservable while held.
	kindDoubled = "doubled"
	// kindPhantom: reservable, but not an unspent UTXO of the pool.
	kindPhantom = "phantom"
	// kindUnsettled: a held (not submitted) live reservation holds a UTXO
	// the chain no longer offers.
	kindUnsettled = "unsettled"
	// kindCounts: the pool counts of GET /v1/pools differ from what can be
	// reserved.
	kindCounts = "counts"
	// kindFence: a fence did not grow.
	kindFence = "fence"
	// kindUnjournalled: a reservation a client was told it holds is not in
	// the journal (or differs there).
	kindUnjournalled = "unjournalled"
	// kindOverlap: two clients held the same UTXO at the same time (client
	// side or in the journal).
	kindOverlap = "overlap"
	// kindRetry: an idempotent retry did not return the first reservation.
	kindRetry = "retry"
)

// event is one entry of a run's history: a step carried out (Index is the
// step's), a fault restored or a quiet point checked (Index -1).
type event struct {
	Seed  uint64
	Index int
	Round int
	// At is the time since the trial started.
	At     time.Duration
	Actor  string
	Kind   string
	Detail string
}

func (e event) String() string {
	idx := "-"
	if e.Index >= 0 {
		idx = fmt.Sprint(e.Index)
	}
	return fmt.Sprintf("seed %d #%s r%d +%s %s %s: %s", e.Seed, idx, e.Round, e.At.Round(time.Millisecond), e.Actor, e.Kind, e.Detail)
}

// Report is what a Run did and found; Write renders it.
type Report struct {
	seed     uint64
	elapsed  time.Duration
	rounds   int
	ops      map[string]int // client operations by kind
	outcomes map[string]int // client operation outcomes ("reserve 201", ...)
	chain    map[string]int // chain events by kind
	faults   map[string]int // faults by kind
	// quietPoints counts the quiet points checked, grants the UTXO grants
	// clients received.
	quietPoints, grants int
	violations          []violation
	// lost counts the distinct UTXOs found lost.
	lost int
	// history is the failing trial's history (every event), shortest the
	// shortest history found that still fails, shrinkTrials how many
	// replays the search took.
	history      []event
	shortest     []event
	shrinkTrials int
	// workDir holds the processes' logs when kept.
	workDir string
	// stopReason is why the run stopped early ("" when it did not).
	stopReason string
}

// failed reports whether a check failed.
func (r *Report) failed() bool { return len(r.violations) > 0 }
