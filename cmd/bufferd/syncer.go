package main

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/handlers"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/lockmgr/leader"
	"github.com/bufferd/bufferd/metrics"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

func newSyncerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "syncer",
		Short: "Run the sync jobs: follow the chain and keep the database and Redis in step",
		Args:  cobra.NoArgs,
	}
	c := loadConfig(cmd, "database-url", "database-max-conns", "redis-url", "redis-prefix", "chain-url", "chain-kind", "chain-timeout",
		"sync-interval", "sync-max-backoff", "metrics-addr", "instance-id", "leader-ttl", "index-start-depth",
		"index-poll", "sweep-interval")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		log, err := newLogger(c)
		if err != nil {
			return err
		}
		ctx, stop := signalContext()
		defer stop()
		// A leader paused inside a transaction loses it once its lease is
		// over, so its row locks do not hold up the next leader.
		b, err := openBackends(ctx, c, "syncer", storage.WithIdleInTransactionTimeout(c.LeaderTTL))
		if err != nil {
			return err
		}
		defer b.Close()
		store, rdb := b.store, b.rdb
		src, err := chain.New(c.ChainKind, c.ChainURL, chain.WithTimeout(c.ChainTimeout))
		if err != nil {
			return err
		}
		locks := lockmgr.New(rdb, lockmgr.Options{Prefix: c.RedisPrefix})
		if err := metrics.Register(nil); err != nil {
			log.Warn("metrics", "err", err)
		}
		registerPools(log, rdb, store)
		setBuildInfo()
		rebuilder := syncer.NewRebuilder(store, locks, rdb, c.RedisPrefix, log)
		rebuilder.Mutexes = b.redis.Mutexes()
		jobs := syncer.Jobs{
			Store: store, Locks: locks, Chain: src, Rebuild: rebuilder,
			Interval: c.SyncInterval, MaxBackoff: c.SyncBackoff, StartDepth: c.IndexStartDepth,
			IndexPoll: c.IndexPoll, SweepInterval: c.SweepInterval, Log: log,
		}
		// The runner of the term this process leads, if any: not ready while
		// its chain source fails.
		var leading atomic.Pointer[syncer.Runner]
		ready := []handlers.ReadyCheck{
			{Name: "redis", Check: locks.Ping},
			{Name: "postgres", Check: store.Ping},
			{Name: "ready", Check: notRebuilding(rebuilder)},
			{Name: "chain", Check: func(context.Context) error {
				if r := leading.Load(); r != nil && r.ChainError() != "" {
					return fmt.Errorf("chain source: %s", r.ChainError())
				}
				return nil
			}},
		}
		log.Info("syncer starting", "chain", c.ChainURL, "kind", c.ChainKind, "interval", c.SyncInterval)
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return serveOps(gctx, c.MetricsAddr, ready, log) })
		// One syncer leads; the others stand by and take over when it stops
		// (it releases the lease on SIGTERM) or can no longer renew.
		elector := &leader.Elector{
			Mutexes: b.redis.Mutexes(), Job: syncer.LeaderJob, Prefix: c.RedisPrefix,
			LeaderID: c.InstanceID, TTL: c.LeaderTTL, Epochs: store, Log: log,
		}
		g.Go(func() error {
			err := elector.Run(gctx, func(ctx context.Context, t leader.Term) {
				// Every write of the term carries its epoch.
				runner := jobs.ForTerm(t.Epoch)
				runner.Wake = locks.WatchSubmits(ctx)
				leading.Store(runner)
				defer leading.Store(nil)
				if err := runner.Run(ctx); err != nil {
					log.Warn("sync jobs stopped", "epoch", t.Epoch, "err", err)
				}
			})
			log.Info("syncer stopped")
			return err
		})
		return g.Wait()
	}
	return cmd
}
