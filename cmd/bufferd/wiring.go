package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"golang.org/x/term"

	"github.com/bufferd/bufferd/config"
	"github.com/bufferd/bufferd/handlers"
	"github.com/bufferd/bufferd/lockmgr/leader"
	"github.com/bufferd/bufferd/metrics"
	"github.com/bufferd/bufferd/storage"
)

// newLogger returns the process logger as configured (JSON by default).
func newLogger(c *config.Config) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", c.LogLevel, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch c.LogFormat {
	case "json":
		h = slog.NewJSONHandler(os.Stderr, opts)
	case "text":
		h = slog.NewTextHandler(os.Stderr, opts)
	default:
		return nil, fmt.Errorf("log format %q: want json or text", c.LogFormat)
	}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		h = newProgressHandler(h, os.Stderr)
	}
	l := slog.New(h)
	slog.SetDefault(l)
	redis.SetLogger(redisLogger{})
	return l, nil
}

// serveOps serves /metrics, /livez and /readyz on addr for processes without the
// API (the syncer) until ctx ends. /readyz runs checks and answers as the API's
// does (handlers.CheckReady).
func serveOps(ctx context.Context, addr string, checks []handlers.ReadyCheck, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.Handler())
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		status, body := handlers.CheckReady(r.Context(), log, checks)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("ops endpoints listening", "addr", ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// servePprof serves Go's profiles on addr until ctx ends, the blocking and
// mutex profiles sampled too; an empty addr serves nothing.
func servePprof(ctx context.Context, addr string, log *slog.Logger) {
	if addr == "" {
		return
	}
	runtime.SetBlockProfileRate(pprofBlockRate)
	runtime.SetMutexProfileFraction(pprofMutexFraction)
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		log.Info("pprof listening", "addr", addr)
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			log.Warn("pprof", "err", err)
		}
	}()
}

// Sampling of the blocking profile (one event per this many nanoseconds
// blocked) and of the mutex profile (one contention in this many).
const (
	pprofBlockRate     = 100_000
	pprofMutexFraction = 100
)

// registerPools adds the Redis and database connection pool statistics to
// the default registry (what /metrics serves); a failure is only logged.
func registerPools(log *slog.Logger, rdb redis.UniversalClient, store *storage.Store) {
	db, err := store.DB().DB()
	if err != nil {
		log.Warn("database pool metrics", "err", err)
		db = nil
	}
	if err := metrics.RegisterPools(nil, rdb, db); err != nil {
		log.Warn("pool metrics", "err", err)
	}
}

// backends are the database and Redis a long-running process works on.
type backends struct {
	store *storage.Store
	rdb   redis.UniversalClient // holds the reservations
	redis *redisConns
}

// openBackends connects to BUFFERD_DATABASE_URL and BUFFERD_REDIS_URL; role
// ("api" or "syncer") and the instance id name the database sessions.
func openBackends(ctx context.Context, c *config.Config, role string, opts ...storage.Option) (*backends, error) {
	id := c.InstanceID
	if id == "" {
		id = leader.DefaultID()
	}
	opts = append([]storage.Option{storage.WithMaxConns(c.DatabaseMaxConns),
		storage.WithApplicationName("bufferd-" + role + " " + id)}, opts...)
	store, err := storage.Open(ctx, c.DatabaseURL, opts...)
	if err != nil {
		return nil, err
	}
	conns, err := newRedis(ctx, c)
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	return &backends{store: store, rdb: conns.data, redis: conns}, nil
}

// Close closes Redis, then the database.
func (b *backends) Close() {
	b.redis.Close()
	_ = b.store.Close()
}
