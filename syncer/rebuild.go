package syncer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-redsync/redsync/v4"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/metrics"
	"github.com/bufferd/bufferd/storage"
)

// Rebuilder restores a pool's Redis state from PostgreSQL when Redis lost it
// (restart without persistence, flush, failover to a stale replica). Syncers
// and API replicas may all run one: a redsync mutex per pool lets one of them
// rebuild while the others' reserves answer "rebuilding".
type Rebuilder struct {
	store   rebuildStore
	locks   rebuildLocks
	Mutexes *redsync.Redsync
	// Prefix is put before the mutex names (the Redis key prefix).
	prefix string
	log    *slog.Logger
	// progressEvery is how often Watch logs its progress through many lost
	// pools (DefaultProgressEvery when 0).
	progressEvery time.Duration

	rebuilding atomic.Int32 // rebuilds under way in this process
}

// Rebuilding reports whether this Rebuilder is rebuilding a pool right now
// (readiness fails meanwhile).
func (r *Rebuilder) Rebuilding() bool { return r.rebuilding.Load() > 0 }

// maxRebuildTries bounds the snapshots a rebuild takes while syncs keep
// changing the pool under it.
const maxRebuildTries = 5

// RebuildIfLost rebuilds the pool when Redis does not have it; it reports
// whether it did. When another process holds the pool's rebuild mutex it
// returns at once without waiting.
func (r *Rebuilder) RebuildIfLost(ctx context.Context, pool int64) (rebuilt bool, err error) {
	loaded, err := r.locks.Loaded(ctx, pool)
	if err != nil || loaded {
		return false, err
	}
	mu := r.Mutexes.NewMutex(r.prefix+"rebuild:{p"+strconv.FormatInt(pool, 10)+"}",
		redsync.WithExpiry(30*time.Second), redsync.WithTries(1))
	if err := mu.TryLockContext(ctx); err != nil {
		var taken *redsync.ErrTaken
		if errors.As(err, &taken) || errors.Is(err, redsync.ErrFailed) {
			return false, nil
		}
		return false, fmt.Errorf("syncer: rebuild mutex: %w", err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_, _ = mu.UnlockContext(uctx)
	}()
	if loaded, err := r.locks.Loaded(ctx, pool); err != nil || loaded {
		return false, err
	}
	r.rebuilding.Add(1)
	metrics.RedisRebuildsRunning.Inc()
	defer func() {
		r.rebuilding.Add(-1)
		metrics.RedisRebuildsRunning.Dec()
		if err != nil {
			metrics.RedisRebuildFailures.Inc()
		}
	}()
	start := time.Now()
	r.logger().Info("rebuilding pool state in redis", "pool", pool)
	// The journal learns the new load before the snapshot is taken: a grant
	// of the lost load still in flight is then either in the snapshot or
	// refused by the journal, never acknowledged without being restored.
	load, err := lockmgr.NewLoadID()
	if err != nil {
		return false, err
	}
	if err := r.store.BeginLoad(ctx, pool, load); err != nil {
		return false, err
	}
	var snap lockmgr.Snapshot
	for try := 1; ; try++ {
		// The generation is read before the snapshot: a sync applied after it
		// makes the rebuild refuse instead of overwriting the sync's changes.
		gen, err := r.locks.SyncGeneration(ctx, pool)
		if err != nil {
			return false, err
		}
		if snap, err = r.store.LockSnapshot(ctx, pool); err != nil {
			return false, fmt.Errorf("syncer: snapshot of pool %d: %w", pool, err)
		}
		snap.SyncGen, snap.Load = gen, load
		err = r.locks.Rebuild(ctx, pool, snap)
		if err == nil {
			break
		}
		if !errors.Is(err, lockmgr.ErrStaleSnapshot) || try == maxRebuildTries {
			return false, err
		}
	}
	metrics.RedisRebuilds.Inc()
	r.logger().Info("rebuilt pool state in redis", "pool", pool, "utxos", len(snap.Available),
		"live_reservations", len(snap.Live), "fence_floor", snap.FenceFloor, "took", time.Since(start).Round(time.Millisecond))
	return true, nil
}

// Watch checks every pool every interval and rebuilds those Redis lost, until
// ctx ends. API replicas run it so that reserves recover without waiting for a
// syncer.
func (r *Rebuilder) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		pools, err := r.store.ListPools(ctx)
		if err != nil && ctx.Err() == nil {
			r.logger().Warn("rebuild watch: list pools", "err", err)
		}
		start, reported, rebuilt := time.Now(), time.Now(), 0
		for i, p := range pools {
			if p.SyncedAt == nil {
				continue // the syncer has not the pool's whole UTXO set yet
			}
			did, err := r.RebuildIfLost(ctx, p.ID)
			if err != nil && ctx.Err() == nil {
				r.logger().Warn("rebuild", "pool", p.ID, "err", err)
			}
			if did {
				rebuilt++
			}
			// Many pools lost at once take a while: say how far it got.
			if now := time.Now(); rebuilt > 0 && now.Sub(reported) >= cmp.Or(r.progressEvery, DefaultProgressEvery) {
				r.logger().Info("rebuild of lost pools", "progress", fmt.Sprintf("%d/%d pools", i+1, len(pools)),
					"rebuilt", rebuilt, "elapsed", now.Sub(start).Round(time.Second).String())
				reported = now
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Rebuilder) logger() *slog.Logger {
	if r.log != nil {
		return r.log
	}
	return slog.Default()
}

// NewRebuilder returns a Rebuilder whose mutexes live in rdb.
func NewRebuilder(store *storage.Store, locks *lockmgr.Manager, rdb redis.UniversalClient, prefix string, log *slog.Logger) *Rebuilder {
	return &Rebuilder{store: store, locks: locks, Mutexes: redsync.New(goredis.NewPool(rdb)), prefix: prefix, log: log}
}
