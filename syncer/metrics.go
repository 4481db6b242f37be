package syncer

import (
	"errors"
	"strconv"
	"time"

	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/metrics"
	"github.com/bufferd/bufferd/storage"
)

// observeSync records one pool sync in the metrics catalogue.
func observeSync(pool int64, err error, took time.Duration, res storage.SyncResult) {
	result := "success"
	if err != nil {
		result = "error"
	}
	metrics.SyncRuns.WithLabelValues(jobUTXO, result).Inc()
	metrics.SyncDuration.WithLabelValues(jobUTXO).Observe(took.Seconds())
	metrics.SyncChanges.WithLabelValues("added").Add(float64(len(res.Added)))
	metrics.SyncChanges.WithLabelValues("revived").Add(float64(len(res.Revived)))
	metrics.SyncChanges.WithLabelValues("spent").Add(float64(len(res.Spent)))
	if res.Unchanged {
		metrics.SyncSkipped.Inc()
	}
	if err == nil {
		metrics.SyncLastSuccess.WithLabelValues(poolLabel(pool), jobUTXO).Set(float64(now().UnixNano()) / 1e9)
	}
}

// observeJob records one pass of a job other than the UTXO sync.
func observeJob(job string, err error, took time.Duration) {
	result := "success"
	if err != nil {
		result = "error"
	}
	metrics.SyncRuns.WithLabelValues(job, result).Inc()
	metrics.SyncDuration.WithLabelValues(job).Observe(took.Seconds())
}

// poolLabel is a pool id as a label value.
func poolLabel(pool int64) string { return strconv.FormatInt(pool, 10) }

// isStale reports whether err is a write refused for a stale leadership
// epoch, without counting it.
func isStale(err error) bool {
	return errors.Is(err, storage.ErrStaleEpoch) || errors.Is(err, lockmgr.ErrStaleEpoch)
}

// staleEpoch counts a write refused because this process's leadership term
// ended (a newer one began); it reports whether err was one.
func staleEpoch(err error) bool {
	switch {
	case errors.Is(err, storage.ErrStaleEpoch):
		metrics.SyncStaleWrites.WithLabelValues("postgres").Inc()
	case errors.Is(err, lockmgr.ErrStaleEpoch):
		metrics.SyncStaleWrites.WithLabelValues("redis").Inc()
	default:
		return false
	}
	return true
}

// countRefused counts a journal write refused for a stale fence or an ended
// reservation; it reports whether err was one.
func countRefused(err error) bool {
	if errors.Is(err, storage.ErrStaleFence) || errors.Is(err, storage.ErrNotLive) || errors.Is(err, lockmgr.ErrEnded) {
		metrics.FencingRejections.Inc()
		return true
	}
	return false
}
