package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/bufferd/bufferd/handlers"
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
	c := loadConfig(cmd, "addr", "database-url", "redis-url", "redis-prefix", "admin-token", "shutdown-timeout")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		log, err := newLogger(c)
		if err != nil {
			return err
		}
		ctx, stop := signalContext()
		defer stop()
		b, err := openBackends(ctx, c)
		if err != nil {
			return err
		}
		defer b.Close()
		store, rdb := b.store, b.rdb
		journal := storage.NewJournal(store, storage.JournalOptions{})
		defer journal.Close() // after the server has drained, before the store closes
		locks := lockmgr.New(rdb, lockmgr.Options{Prefix: c.RedisPrefix, Journal: journal})
		defer locks.Close()
		// Any replica may rebuild a pool Redis lost, so reserves recover quickly.
		go syncer.NewRebuilder(store, locks, rdb, c.RedisPrefix, log).Watch(ctx, rebuildWatchInterval)
		app := newAPIApp(handlers.Config{Store: store, Locks: locks, AdminToken: c.AdminToken, Logger: log})
		ln, err := net.Listen("tcp", c.Addr)
		if err != nil {
			return err
		}
		log.Info("api listening", "addr", ln.Addr().String())
		return serveFiber(ctx, app, ln, c.ShutdownGrace)
	}
	return cmd
}

// newAPIApp is the API with the process metrics mounted.
func newAPIApp(cfg handlers.Config) *fiber.App {
	app := handlers.New(cfg)
	app.Get("/metrics", adaptor.HTTPHandler(promhttp.Handler()))
	return app
}

// serveFiber serves app on ln until ctx ends, then drains in-flight requests
// for at most grace.
func serveFiber(ctx context.Context, app *fiber.App, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- app.Listener(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	return app.ShutdownWithTimeout(grace)
}
