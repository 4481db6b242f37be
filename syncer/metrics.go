package syncer

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/bufferd/bufferd/storage"
)

var (
	syncRuns = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "bufferd_sync_runs_total",
		Help: "Pool syncs run, by result (success or error).",
	}, []string{"job", "result"})
	syncDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "bufferd_sync_duration_seconds",
		Help:    "Time one pool sync took.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
	}, []string{"job"})
	rebuilds = promauto.NewCounter(prometheus.CounterOpts{
		Name: "bufferd_redis_rebuilds_total",
		Help: "Pools whose Redis state was rebuilt from the database after Redis lost it.",
	})
	reservationsSettled = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "bufferd_reservations_settled_total",
		Help: "Reservations the chain settled, by final state.",
	}, []string{"state"})
	syncChanges = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "bufferd_sync_utxo_changes_total",
		Help: "UTXO state changes the sync applied, by change (added, revived, spent).",
	}, []string{"change"})
)

func observeSync(err error, took time.Duration, res storage.SyncResult) {
	result := "success"
	if err != nil {
		result = "error"
	}
	syncRuns.WithLabelValues(JobUTXO, result).Inc()
	syncDuration.WithLabelValues(JobUTXO).Observe(took.Seconds())
	syncChanges.WithLabelValues("added").Add(float64(len(res.Added)))
	syncChanges.WithLabelValues("revived").Add(float64(len(res.Revived)))
	syncChanges.WithLabelValues("spent").Add(float64(len(res.Spent)))
}
