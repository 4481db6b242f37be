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
	"strings"
	"time"

	"github.com/go-redsync/redsync/v4"
	redsyncredis "github.com/go-redsync/redsync/v4/redis"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/config"
	"github.com/bufferd/bufferd/lockmgr"
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
	l := slog.New(h)
	slog.SetDefault(l)
	return l, nil
}

// Redis client limits: an unreachable Redis must turn into a quick 503, not a
// request hanging through go-redis's default retries.
const (
	redisDialTimeout = 500 * time.Millisecond
	redisIOTimeout   = 2 * time.Second
	redisMaxRetries  = 1
)

// redisConns are the Redis connections of a process: data holds the
// reservations; quorum are the servers whose majority the leadership and
// rebuild mutexes need (data alone, unless several independent servers were
// given).
type redisConns struct {
	data   redis.UniversalClient
	quorum []redis.UniversalClient
}

// Mutexes returns the redsync of the quorum.
func (r *redisConns) Mutexes() *redsync.Redsync {
	pools := make([]redsyncredis.Pool, len(r.quorum))
	for i, c := range r.quorum {
		pools[i] = goredis.NewPool(c)
	}
	return redsync.New(pools...)
}

// Close closes every connection.
func (r *redisConns) Close() {
	for _, c := range r.quorum {
		if c != r.data {
			_ = c.Close()
		}
	}
	_ = r.data.Close()
}

// newRedis connects to BUFFERD_REDIS_URL. One URL is a single server (or a
// replica set behind one address). Several comma-separated ones are either
// the seeds of a Redis Cluster (when the first has cluster mode enabled) or
// independent servers: then the first holds the reservations and all of them
// form the Redlock quorum of the leadership and rebuild mutexes, so that a
// lease survives the loss of a minority of them.
func newRedis(ctx context.Context, c *config.Config) (*redisConns, error) {
	addrs := c.RedisAddrs()
	if len(addrs) == 0 {
		return nil, errors.New("BUFFERD_REDIS_URL is empty")
	}
	opts := make([]*redis.Options, len(addrs))
	for i, a := range addrs {
		if !strings.Contains(a, "://") {
			a = "redis://" + a
		}
		opt, err := redis.ParseURL(a)
		if err != nil {
			return nil, fmt.Errorf("BUFFERD_REDIS_URL: %w", err)
		}
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = redisDialTimeout, redisIOTimeout, redisIOTimeout
		opt.MaxRetries, opt.ContextTimeoutEnabled = redisMaxRetries, true
		opts[i] = opt
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	first := redis.NewClient(opts[0])
	if err := first.Ping(pctx).Err(); err != nil {
		_ = first.Close()
		return nil, fmt.Errorf("redis: %w", err)
	}
	if len(opts) == 1 {
		return &redisConns{data: first, quorum: []redis.UniversalClient{first}}, nil
	}
	info, err := first.Info(pctx, "cluster").Result()
	if err != nil {
		_ = first.Close()
		return nil, fmt.Errorf("redis: %w", err)
	}
	if strings.Contains(info, "cluster_enabled:1") {
		_ = first.Close()
		hosts := make([]string, len(opts))
		for i, o := range opts {
			hosts[i] = o.Addr
		}
		cluster := redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: hosts, DialTimeout: redisDialTimeout, ReadTimeout: redisIOTimeout, WriteTimeout: redisIOTimeout,
			MaxRetries: redisMaxRetries, ContextTimeoutEnabled: true,
		})
		if err := cluster.Ping(pctx).Err(); err != nil {
			_ = cluster.Close()
			return nil, fmt.Errorf("redis cluster: %w", err)
		}
		return &redisConns{data: cluster, quorum: []redis.UniversalClient{cluster}}, nil
	}
	// Independent servers: a minority may be down at start.
	conns := &redisConns{data: first, quorum: []redis.UniversalClient{first}}
	for _, o := range opts[1:] {
		conns.quorum = append(conns.quorum, redis.NewClient(o))
	}
	slog.Info("redis: independent servers form the Redlock quorum of the leadership and rebuild mutexes",
		"servers", len(opts), "quorum", len(opts)/2+1, "data", opts[0].Addr)
	return conns, nil
}

// serveOps serves /metrics, /livez and /readyz on addr for processes without the
// API (the syncer) until ctx ends.
func serveOps(ctx context.Context, addr string, ready func(context.Context) error, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.Handler())
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := ready(r.Context()); err != nil {
			log.Warn("not ready", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]string{"status": "unavailable", "reason": err.Error()})
			return
		}
		_, _ = w.Write([]byte(`{"status":"ok"}`))
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
		id = lockmgr.DefaultLeaderID()
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
