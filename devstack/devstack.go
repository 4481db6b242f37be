// Package devstack runs the whole of bufferd in one process with no outside
// services: a simulated Bytom node, an embedded Redis (miniredis), SQLite,
// the chain index and settlement jobs, and the HTTP API, with a demo pool of
// 24 UTXOs. It is what `bufferd dev` runs, and what examples and tests of
// API clients start when they need a real server on any machine.
//
// It is for development only: the embedded Redis and SQLite are neither
// durable nor fast, and the chain is simulated.
package devstack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gofiber/fiber/v2"
	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/handlers"
	"github.com/bufferd/bufferd/internal/connset"
	"github.com/bufferd/bufferd/internal/fiberserve"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

// The demo pool (chain/sim's): the BTM asset locked by a made-up contract,
// 24 UTXOs of 0.5 to 12 BTM.
var (
	DemoAsset   = sim.DemoAsset
	DemoProgram = sim.DemoProgram
	DemoAmounts = sim.DemoAmounts
)

// errAddrInUse is returned by Start when a listen address is taken.
var errAddrInUse = errors.New("devstack: address already in use")

// Options configure a Stack. The zero value is a stack on free loopback
// ports with its database in a temporary directory.
type Options struct {
	// Addr is the API's listen address; empty means 127.0.0.1:0 (a free port).
	Addr string
	// ChainAddr is the simulated node's listen address; empty means 127.0.0.1:0.
	ChainAddr string
	// DataDir holds the SQLite database; a restart on the same directory finds
	// its history again. Empty means a temporary directory removed by Close.
	DataDir string
	// AdminToken guards the admin routes; empty means a random one (see
	// Stack.AdminToken).
	AdminToken string
	// SyncInterval is the chain index's polling interval; 0 means 1 s.
	SyncInterval time.Duration
	// Logger receives the logs; nil discards them.
	Logger *slog.Logger
	// API holds the API's protections (rate limit, CORS, proxy header); its
	// Store, Locks, AdminToken, Logger and Ready are set by Start.
	API handlers.Config
}

// Stack is a running bufferd. Close stops it.
type Stack struct {
	// APIURL is the API's base URL, for example http://127.0.0.1:3100.
	APIURL string
	// ChainURL is the simulated node's base URL.
	ChainURL string
	// AdminToken is the admin routes' bearer token.
	AdminToken string
	// Pool is the demo pool.
	Pool storage.Pool
	// Store and Redis are the embedded database and Redis, for metrics and
	// inspection.
	Store *storage.Store
	Redis *redis.Client
	// Chain is the simulated node: add UTXOs or mine blocks through it.
	Chain *sim.Chain

	journal *storage.Journal
	mini    *miniredis.Miniredis
	tmpDir  string
	stop    context.CancelFunc
	done    chan error
	servers int
	// quit, closed by Shutdown once grace is set, stops the servers.
	quit      chan struct{}
	grace     time.Duration
	closeOnce sync.Once
	closeErr  error
}

// Start starts a stack and returns once the demo pool is synced and the API
// answers. Cancelling ctx stops the chain jobs; Close stops everything. Both listen addresses are taken before anything else is touched,
// so a stack that cannot listen fails without writing to DataDir.
func Start(ctx context.Context, o Options) (*Stack, error) {
	o.setDefaults()
	apiLn, err := listen(o.Addr, "api")
	if err != nil {
		return nil, err
	}
	chainLn, err := listen(o.ChainAddr, "simulated chain")
	if err != nil {
		_ = apiLn.Close()
		return nil, err
	}
	s, err := start(ctx, o, apiLn, chainLn)
	if err != nil {
		_ = apiLn.Close()
		_ = chainLn.Close()
		return nil, err
	}
	return s, nil
}

func (o *Options) setDefaults() {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.ChainAddr == "" {
		o.ChainAddr = "127.0.0.1:0"
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// listen opens addr, naming what it is for when the address is taken.
func listen(addr, what string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if isAddrInUse(err) {
			return nil, fmt.Errorf("%w: %s listen address %s", errAddrInUse, what, addr)
		}
		return nil, fmt.Errorf("devstack: %s listen address %s: %w", what, addr, err)
	}
	return ln, nil
}

func isAddrInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }

func start(parent context.Context, o Options, apiLn, chainLn net.Listener) (*Stack, error) {
	ctx, cancel := context.WithCancel(parent)
	s := &Stack{stop: cancel, AdminToken: o.AdminToken, done: make(chan error, 3), quit: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			_ = s.Shutdown(time.Second)
		}
	}()
	if s.AdminToken == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		s.AdminToken = hex.EncodeToString(b[:])
	}
	dir := o.DataDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "bufferd-dev-"); err != nil {
			return nil, err
		}
		s.tmpDir = dir
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	store, err := storage.Open(ctx, "sqlite://"+filepath.Join(dir, "bufferd.db"))
	if err != nil {
		return nil, err
	}
	s.Store = store

	// The simulated chain is in memory; its hashes are deterministic, so seeding
	// it the same way on every start gives the same UTXOs the database knows.
	s.Chain = sim.New()
	if _, err := s.Chain.AddUTXOs(DemoAsset, DemoProgram, DemoAmounts()); err != nil {
		return nil, err
	}
	s.ChainURL = "http://" + chainLn.Addr().String()
	s.serve(s.Chain.Handler(), chainLn)

	s.mini = miniredis.NewMiniRedis()
	if err := s.mini.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("devstack: embedded redis: %w", err)
	}
	go expireMiniKeys(ctx, s.mini)
	s.Redis = redis.NewClient(&redis.Options{Addr: s.mini.Addr()})
	s.journal = storage.NewJournal(store, storage.JournalOptions{})
	locks := lockmgr.New(s.Redis, lockmgr.Options{Prefix: "bufferd:", Journal: s.journal})

	s.Pool, _, err = store.EnsurePool(ctx, DemoAsset, DemoProgram)
	if err != nil {
		return nil, err
	}
	// The syncer indexes the simulated node as it would a real bytomd.
	rebuilder := syncer.NewRebuilder(store, locks, s.Redis, "bufferd:", o.Logger)
	// One process, no election: the jobs run unfenced (epoch 0).
	runner := syncer.Jobs{
		Store: store, Locks: locks, Chain: chain.NewBytomd(s.ChainURL), Rebuild: rebuilder,
		Interval: o.SyncInterval, MaxBackoff: time.Minute, Log: o.Logger,
	}.ForTerm(0)
	if err := runner.Index(ctx); err != nil {
		return nil, err
	}
	if err := runner.Tick(ctx); err != nil {
		return nil, err
	}
	runner.Wake = locks.WatchSubmits(ctx)
	s.servers++
	go func() { s.done <- runner.Run(ctx) }()

	s.APIURL = "http://" + apiLn.Addr().String()
	api := o.API
	api.Store, api.Locks, api.AdminToken, api.Logger = store, locks, s.AdminToken, o.Logger
	api.Ready = func(context.Context) error {
		if rebuilder.Rebuilding() {
			return errRebuilding
		}
		return nil
	}
	s.serve(handlers.New(api), apiLn)
	ok = true
	return s, nil
}

// errRebuilding fails readiness while the stack rebuilds a pool's Redis state.
var errRebuilding = errors.New("devstack: rebuilding a pool's redis state")

// serve serves app on ln until Shutdown. It drains with fiberserve.Drain
// rather than serving through fiberserve.Serve: the grace is Shutdown's,
// known only once quit is closed.
func (s *Stack) serve(app *fiber.App, ln net.Listener) {
	s.servers++
	conns := &connset.Set{}
	go func() {
		errc := make(chan error, 1)
		go func() { errc <- app.Listener(conns.Listener(ln)) }()
		select {
		case err := <-errc:
			s.done <- err
		case <-s.quit:
			s.done <- fiberserve.Drain(app, conns, s.grace)
		}
	}()
}

// expireMiniKeys moves the embedded Redis's clock for key TTLs along with real
// time (miniredis only expires keys when told time has passed).
func expireMiniKeys(ctx context.Context, m *miniredis.Miniredis) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m.FastForward(now.Sub(last))
			last = now
		}
	}
}

// Close stops the stack, waiting up to a second for in-flight requests.
func (s *Stack) Close() error { return s.Shutdown(time.Second) }

// Shutdown stops every part, waiting at most grace (plus a second) for the
// servers and jobs to return, and removes a temporary data directory.
// Idle client connections are closed at once and hold nothing up
// (fiberserve.Drain).
// Calls after the first return its result.
func (s *Stack) Shutdown(grace time.Duration) error {
	s.closeOnce.Do(func() { s.closeErr = s.shutdown(grace) })
	return s.closeErr
}

func (s *Stack) shutdown(grace time.Duration) error {
	s.grace = grace
	close(s.quit)
	s.stop()
	deadline := time.After(grace + time.Second)
	var errs []error // of the servers and the jobs: a failed start or drain
wait:
	for range s.servers {
		select {
		case err := <-s.done:
			errs = append(errs, err)
		case <-deadline:
			break wait
		}
	}
	if s.Redis != nil {
		_ = s.Redis.Close()
	}
	if s.mini != nil {
		s.mini.Close()
	}
	if s.journal != nil {
		s.journal.Close()
	}
	err := errors.Join(errs...)
	if s.Store != nil {
		err = errors.Join(err, s.Store.Close())
	}
	if s.tmpDir != "" {
		err = errors.Join(err, os.RemoveAll(s.tmpDir))
	}
	return err
}
