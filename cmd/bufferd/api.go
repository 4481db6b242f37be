package main

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/bufferd/bufferd/config"
	"github.com/bufferd/bufferd/handlers"
	"github.com/bufferd/bufferd/internal/fiberserve"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

// rebuildWatchInterval is how often an API replica checks that Redis still has
// every pool's state.
const rebuildWatchInterval = 500 * time.Millisecond

func newAPICmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "api",
		Short: "Serve the HTTP API (stateless: run as many as you like behind a load balancer)",
		Args:  cobra.NoArgs,
	}
	c := loadConfig(cmd, append([]string{"addr", "api-metrics-addr", "database-url", "database-max-conns", "redis-url", "redis-prefix", "admin-token", "shutdown-timeout", "pprof-addr"},
		protectionFlags...)...)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		log, err := newLogger(c)
		if err != nil {
			return err
		}
		if err := apiConfig(c, handlers.Config{}).Validate(); err != nil {
			return &usageError{err: err, config: true}
		}
		ctx, stop := signalContext()
		defer stop()
		b, err := openBackends(ctx, c, "api")
		if err != nil {
			return err
		}
		defer b.Close()
		store, rdb := b.store, b.rdb
		journal := storage.NewJournal(store, storage.JournalOptions{})
		defer journal.Close() // after the server has drained, before the store closes
		locks := lockmgr.New(rdb, lockmgr.Options{Prefix: c.RedisPrefix, Journal: journal})
		// It closes only the notification subscription: nothing to lose.
		defer func() { _ = locks.Close() }()
		// Any replica may rebuild a pool Redis lost, so reserves recover quickly.
		rebuilder := syncer.NewRebuilder(store, locks, rdb, c.RedisPrefix, log)
		rebuilder.Mutexes = b.redis.Mutexes()
		go rebuilder.Watch(ctx, rebuildWatchInterval)
		registerPools(log, rdb, store)
		setBuildInfo()
		app := handlers.New(apiConfig(c, handlers.Config{Store: store, Locks: locks, Logger: log,
			Ready: notRebuilding(rebuilder), MetricsElsewhere: c.APIMetricsAddr != ""}))
		ln, err := net.Listen("tcp", c.Addr)
		if err != nil {
			return err
		}
		servePprof(ctx, c.PprofAddr, log)
		log.Info("api listening", "addr", ln.Addr().String())
		if c.APIMetricsAddr == "" {
			return fiberserve.Serve(ctx, app, ln, c.ShutdownGrace)
		}
		// /metrics on its own port, off the public one; the ops server
		// answers /livez and /readyz there too.
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error {
			return serveOps(gctx, c.APIMetricsAddr, []handlers.ReadyCheck{
				{Name: "redis", Check: locks.Ping}, {Name: "postgres", Check: store.Ping},
				{Name: "ready", Check: notRebuilding(rebuilder)},
			}, log)
		})
		g.Go(func() error { return fiberserve.Serve(gctx, app, ln, c.ShutdownGrace) })
		return g.Wait()
	}
	return cmd
}

// protectionFlags are the settings of the API's protections (rate limit,
// CORS, client IP behind a proxy) and of the legacy listing.
var protectionFlags = []string{"reserve-rate", "reserve-burst", "cors-origins", "legacy-cors-origins", "trusted-proxy-header",
	"legacy-list-sample"}

// apiConfig is h with the API settings of c.
func apiConfig(c *config.Config, h handlers.Config) handlers.Config {
	h.AdminToken = c.AdminToken
	h.RateLimit, h.RateBurst = c.ReserveRate, c.ReserveBurst
	h.CORSOrigins, h.LegacyCORSOrigins = c.CORSOrigins, c.LegacyCORS
	h.ProxyHeader = c.ProxyHeader
	h.LegacyListSample = c.LegacyListSample
	return h
}

// errRebuilding fails readiness while this process rebuilds a pool.
var errRebuilding = errors.New("rebuilding a pool's redis state from the database")

// notRebuilding is a readiness check: it fails while rb rebuilds a pool.
func notRebuilding(rb *syncer.Rebuilder) func(context.Context) error {
	return func(context.Context) error {
		if rb.Rebuilding() {
			return errRebuilding
		}
		return nil
	}
}
