// Package metrics is bufferd's catalogue of Prometheus collectors, shared by
// the API and the syncer (two processes, one set of names and labels).
//
// The collectors are process-wide; Register adds them to a registry (more
// than once is harmless). No label ever carries a UTXO hash, a transaction id
// or an address: labels are route templates, methods, status codes, outcome
// names, job names and pool ids.
package metrics

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Values of the outcome label of ReservationOutcomes.
const (
	OutcomeGranted     = "granted"     // a reservation was granted (v1 reserve, legacy update-utxo)
	OutcomeConflict    = "conflict"    // reserve refused: nothing free fits, or a requested UTXO is held
	OutcomeRebuilding  = "rebuilding"  // refused with 503 while the pool's Redis state is rebuilt
	OutcomeExtended    = "extended"    // a held reservation was extended
	OutcomeSubmitted   = "submitted"   // the client reported the spending transaction
	OutcomeReleased    = "released"    // released by its client, or by the syncer when its transaction failed
	OutcomeExpired     = "expired"     // the journal sweep expired it
	OutcomeSpent       = "spent"       // the chain spent its UTXOs
	OutcomeInvalidated = "invalidated" // the chain invalidated its UTXOs
)

// Outcomes lists every outcome; their series exist from the start, at 0.
var Outcomes = []string{
	OutcomeGranted, OutcomeConflict, OutcomeRebuilding, OutcomeExtended, OutcomeSubmitted,
	OutcomeReleased, OutcomeExpired, OutcomeSpent, OutcomeInvalidated,
}

// RouteUnmatched is the route label of a request no route matched.
const RouteUnmatched = "unmatched"

// HTTP (API process).
var (
	// HTTPRequests counts answered requests by method, route template and status code.
	HTTPRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bufferd_http_requests_total",
		Help: "HTTP requests answered, by method, route template and status code.",
	}, []string{"method", "route", "code"})
	// HTTPDuration observes request latency by method and route template.
	HTTPDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "bufferd_http_request_duration_seconds",
		Help:    "Time from a request's arrival to its answer, by method and route template.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"method", "route"})
)

// Reservations (both processes).
var (
	// ReservationOutcomes counts what happened to reservations, by outcome.
	ReservationOutcomes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bufferd_reservation_outcomes_total",
		Help: "Reservation outcomes: granted, conflict, rebuilding, extended, submitted, released, expired, spent, invalidated.",
	}, []string{"outcome"})
	// FencingRejections counts journal writes refused for a stale fence or an
	// ended reservation.
	FencingRejections = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bufferd_fencing_rejections_total",
		Help: "Journal writes refused because they carried a stale fence or the reservation had ended.",
	})
	// RedisRebuilds counts pools rebuilt in Redis from the database.
	RedisRebuilds = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bufferd_redis_rebuilds_total",
		Help: "Pools whose Redis state was rebuilt from the database after Redis lost it.",
	})
	// RedisRebuildsRunning is how many rebuilds of a pool's Redis state this
	// process is running now.
	RedisRebuildsRunning = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "bufferd_redis_rebuilds_running",
		Help: "Rebuilds of a pool's Redis state from the database this process is running now.",
	})
	// RedisRebuildFailures counts rebuilds that started and failed (they are
	// retried).
	RedisRebuildFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bufferd_redis_rebuild_failures_total",
		Help: "Rebuilds of a pool's Redis state that started and failed (retried later).",
	})
)

// Journal (API process).
var (
	// JournalDeferred is how many releases were applied in Redis and answered
	// while their journal write is still to commit.
	JournalDeferred = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "bufferd_journal_deferred_writes",
		Help: "Releases applied in Redis and answered whose journal write has not committed yet.",
	})
	// JournalDeferredDropped counts deferred journal writes given up: the
	// database failed until the reservation's expiry had long passed (the
	// journal then shows it expired instead of released).
	JournalDeferredDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bufferd_journal_deferred_writes_dropped_total",
		Help: "Deferred journal writes (releases) given up after the database failed past the reservation's expiry.",
	})
	// JournalEndingsAfterReload counts deferred endings (releases, withdrawn
	// grants) the journal wrote after their pool was reloaded into Redis:
	// the API then ends them in Redis again, where the rebuild may have
	// restored them.
	JournalEndingsAfterReload = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bufferd_journal_endings_after_reload_total",
		Help: "Deferred releases and withdrawn grants written after a rebuild of their pool began, ended again in Redis.",
	})
	// JournalCommitDuration observes how long one group commit of journal
	// writes (grants, extensions, submits, releases) took, failed ones too.
	JournalCommitDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "bufferd_journal_commit_duration_seconds",
		Help:    "Time one group commit of reservation journal writes took (failed commits included).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	})
)

// Sync jobs (syncer process).
var (
	// SyncRuns counts pool syncs by job and result (success or error).
	SyncRuns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bufferd_sync_runs_total",
		Help: "Pool syncs run, by job and result (success or error).",
	}, []string{"job", "result"})
	// SyncDuration observes how long one pool sync took.
	SyncDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "bufferd_sync_duration_seconds",
		Help:    "Time one pool sync took, by job.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
	}, []string{"job"})
	// SyncChanges counts UTXO state changes the sync applied.
	SyncChanges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bufferd_sync_utxo_changes_total",
		Help: "UTXO state changes the sync applied, by change (added, revived, spent).",
	}, []string{"change"})
	// SyncSkipped counts pool syncs that did not reconcile the database with
	// the listing because neither had changed.
	SyncSkipped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bufferd_sync_reconciliations_skipped_total",
		Help: "Pool syncs of a listing source that skipped comparing the pool's stored UTXOs with the listing: both were as at the pool's last sync that changed nothing.",
	})
	// SyncLastSuccess is the Unix time of the last successful sync per pool and job.
	SyncLastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bufferd_sync_last_success_timestamp_seconds",
		Help: "Unix time of the last successful sync, by pool id and job.",
	}, []string{"pool", "job"})
	// SyncBlocksBehind is how many blocks the chain tip is past the height a
	// pool was last synced at.
	SyncBlocksBehind = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bufferd_sync_blocks_behind",
		Help: "Chain tip height minus the tip height at the pool's last successful sync, by pool id.",
	}, []string{"pool"})
	// SyncLeader is 1 while this process runs the sync jobs.
	SyncLeader = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "bufferd_sync_leader",
		Help: "1 while this process runs the sync jobs, else 0.",
	})
	// SyncLeaderChanges counts the times this process started leading the sync jobs.
	SyncLeaderChanges = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bufferd_sync_leader_changes_total",
		Help: "Times this process became the leader of the sync jobs.",
	})
	// SyncStaleWrites counts writes of the sync jobs refused because a newer
	// leadership term had begun (this process was deposed), by backend.
	SyncStaleWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bufferd_sync_stale_epoch_writes_total",
		Help: "Writes of the sync jobs refused because they carried the epoch of an ended leadership term, by backend (postgres, redis).",
	}, []string{"backend"})
)

// Chain index (syncer process, node-backed sources).
var (
	// IndexBlocks counts blocks the chain index applied (its rate is the
	// index's speed in blocks/s).
	IndexBlocks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bufferd_index_blocks_total",
		Help: "Blocks the chain index applied (rate: blocks per second).",
	})
	// IndexBatchDuration observes how long applying one batch of blocks took.
	IndexBatchDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "bufferd_index_batch_duration_seconds",
		Help:    "Time the chain index took to fetch and apply one batch of blocks.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
	})
	// IndexReorgs counts reorganisations the index rolled back.
	IndexReorgs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bufferd_index_reorgs_total",
		Help: "Chain reorganisations the chain index rolled back.",
	})
	// ChainTipHeight is the height of the chain's best block as last seen.
	ChainTipHeight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "bufferd_chain_tip_height",
		Help: "Height of the chain's best block as the syncer last saw it.",
	})
	// ChainErrors counts failed passes over the chain source, by reason
	// (unreachable, other_chain, api_error, bad_response).
	ChainErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bufferd_chain_errors_total",
		Help: "Failed passes of the syncer over the chain source, by reason (unreachable, other_chain, api_error, bad_response).",
	}, []string{"reason"})
	// SweepRepairs counts what the sweep found out of step and repaired, by
	// kind (unsettled, offered, unoffered, orphan_hold, lost_release).
	SweepRepairs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bufferd_sweep_repairs_total",
		Help: "Things the sweep found out of step and repaired, by kind (unsettled, offered, unoffered, orphan_hold, lost_release).",
	}, []string{"kind"})
)

// Pools (syncer process, set by the leader at each sweep pass).
var (
	// PoolUTXOs is how many UTXOs each pool has in each state, as the journal
	// counts them (the pool counts of GET /v1/pools).
	PoolUTXOs = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bufferd_pool_utxos",
		Help: "UTXOs of a pool by state (available, reserved, spent, invalidated, immature), set by the sync leader at each sweep.",
	}, []string{"pool", "state"})
	// PoolOldestReservationAge is the age of the pool's oldest live
	// (held or submitted) reservation; 0 when it has none.
	PoolOldestReservationAge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bufferd_pool_oldest_reservation_age_seconds",
		Help: "Age of the oldest live (held or submitted) reservation of a pool, 0 when it has none; set by the sync leader at each sweep.",
	}, []string{"pool"})
)

// buildInfo is 1, labelled with the version and revision of the binary and
// the Go version that built it. Set it with SetBuildInfo.
var buildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "bufferd_build_info",
	Help: "1, labelled with the version and VCS revision of the bufferd binary and the Go version that built it.",
}, []string{"version", "revision", "goversion"})

// SetBuildInfo makes bufferd_build_info the one series of these labels.
func SetBuildInfo(version, revision, goVersion string) {
	buildInfo.Reset()
	buildInfo.WithLabelValues(version, revision, goVersion).Set(1)
}

// Reasons of ChainErrors and kinds of SweepRepairs.
var (
	chainErrorReasons = []string{"unreachable", "other_chain", "api_error", "bad_response"}
	sweepKinds        = []string{"unsettled", "offered", "unoffered", "orphan_hold", "lost_release"}
)

func init() {
	for _, r := range chainErrorReasons {
		ChainErrors.WithLabelValues(r)
	}
	for _, k := range sweepKinds {
		SweepRepairs.WithLabelValues(k)
	}
	for _, o := range Outcomes {
		ReservationOutcomes.WithLabelValues(o)
	}
	for _, b := range []string{"postgres", "redis"} {
		SyncStaleWrites.WithLabelValues(b)
	}
}

// Outcome counts one reservation outcome.
func Outcome(outcome string) { ReservationOutcomes.WithLabelValues(outcome).Inc() }

// all returns every collector of the catalogue.
func all() []prometheus.Collector {
	return []prometheus.Collector{
		HTTPRequests, HTTPDuration,
		ReservationOutcomes, FencingRejections, RedisRebuilds, RedisRebuildsRunning, RedisRebuildFailures, JournalDeferred, JournalDeferredDropped, JournalEndingsAfterReload,
		JournalCommitDuration,
		SyncRuns, SyncDuration, SyncChanges, SyncSkipped, SyncLastSuccess, SyncBlocksBehind, SyncLeader, SyncLeaderChanges,
		SyncStaleWrites, IndexBlocks, IndexBatchDuration, IndexReorgs, ChainTipHeight, ChainErrors, SweepRepairs,
		PoolUTXOs, PoolOldestReservationAge, buildInfo,
	}
}

// Register adds every collector of the catalogue to reg (nil means
// prometheus.DefaultRegisterer). Registering again is a no-op.
func Register(reg prometheus.Registerer) error {
	return registerCollectors(reg, all()...)
}

// registerCollectors adds cs to reg (nil means prometheus.DefaultRegisterer);
// a collector reg already has is skipped.
func registerCollectors(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		reg = prometheus.DefaultRegisterer
	}
	var errs []error
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) && are.ExistingCollector == c {
				continue
			}
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("metrics: register: %w", errors.Join(errs...))
	}
	return nil
}
