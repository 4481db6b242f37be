package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/handlers"
	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/syncer"
)

// The demo pool `bufferd dev` seeds: the BTM asset locked by a made-up contract.
var (
	demoAsset   = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
	demoProgram = func() string {
		s := sha256.Sum256([]byte("bufferd demo contract"))
		return "0020" + hex.EncodeToString(s[:])
	}()
)

// demoAmounts are 24 different amounts, from 0.5 to 12 BTM (in neu).
func demoAmounts() []uint64 {
	out := make([]uint64, 24)
	for i := range out {
		out[i] = uint64(i+1) * 50_000_000
	}
	return out
}

func newDevCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run everything in one process with embedded Redis and SQLite, the simulated chain and a demo pool (no setup)",
		Args:  cobra.NoArgs,
	}
	chainAddr := cmd.Flags().String("chain-addr", "127.0.0.1:3101", "listen address of the simulated chain")
	data := cmd.Flags().String("data", "./data", "directory of the embedded database")
	c := loadConfig(cmd, append([]string{"addr", "admin-token", "sync-interval", "shutdown-timeout"}, protectionFlags...)...)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if c.LogFormat == "json" && !cmd.Flags().Changed("log-format") && os.Getenv("BUFFERD_LOG_FORMAT") == "" {
			c.LogFormat = "text"
		}
		log, err := newLogger(c)
		if err != nil {
			return err
		}
		api := apiConfig(c, handlers.Config{})
		if err := api.Validate(); err != nil {
			return err
		}
		ctx, stop := signalContext()
		defer stop()
		d, err := startDev(ctx, devOptions{
			addr: c.Addr, chainAddr: *chainAddr, data: *data, adminToken: c.AdminToken,
			interval: c.SyncInterval, log: log, api: api,
		})
		if err != nil {
			return err
		}
		d.printWelcome(cmd.OutOrStdout())
		<-ctx.Done()
		log.Info("shutting down")
		return d.close(c.ShutdownGrace)
	}
	return cmd
}

type devOptions struct {
	addr, chainAddr, data, adminToken string
	interval                          time.Duration
	log                               *slog.Logger
	api                               handlers.Config // the API's protections (rate limit, CORS, proxy header)
}

// devStack is everything `bufferd dev` runs.
type devStack struct {
	apiURL, chainURL, adminToken string
	pool                         storage.Pool
	store                        *storage.Store
	journal                      *storage.Journal
	mini                         *miniredis.Miniredis
	rdb                          *redis.Client
	chain                        *sim.Chain
	stop                         context.CancelFunc
	done                         chan error
}

// startDev starts the simulated chain, the embedded stores, the syncer and the
// API, seeds the demo pool and syncs it once, so the API is ready on return.
func startDev(parent context.Context, o devOptions) (*devStack, error) {
	ctx, cancel := context.WithCancel(parent)
	d := &devStack{stop: cancel, adminToken: o.adminToken, done: make(chan error, 3)}
	ok := false
	defer func() {
		if !ok {
			_ = d.close(time.Second)
		}
	}()
	if d.adminToken == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		d.adminToken = hex.EncodeToString(b[:])
	}
	if err := os.MkdirAll(o.data, 0o755); err != nil {
		return nil, err
	}
	store, err := storage.Open(ctx, "sqlite://"+filepath.Join(o.data, "bufferd.db"))
	if err != nil {
		return nil, err
	}
	d.store = store

	// The simulated chain is in memory; its hashes are deterministic, so seeding
	// it the same way on every start gives the same UTXOs the database knows.
	d.chain = sim.New()
	if _, err := d.chain.AddUTXOs(demoAsset, demoProgram, demoAmounts()); err != nil {
		return nil, err
	}
	chainLn, err := net.Listen("tcp", o.chainAddr)
	if err != nil {
		return nil, fmt.Errorf("simulated chain: %w", err)
	}
	d.chainURL = "http://" + chainLn.Addr().String()
	go func() { d.done <- serveFiber(ctx, d.chain.Handler(), chainLn, time.Second) }()

	d.mini = miniredis.NewMiniRedis()
	if err := d.mini.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("embedded redis: %w", err)
	}
	go expireMiniKeys(ctx, d.mini)
	d.rdb = redis.NewClient(&redis.Options{Addr: d.mini.Addr()})
	d.journal = storage.NewJournal(store, storage.JournalOptions{})
	locks := lockmgr.New(d.rdb, lockmgr.Options{Prefix: "bufferd:", Journal: d.journal})

	d.pool, _, err = store.EnsurePool(ctx, demoAsset, demoProgram)
	if err != nil {
		return nil, err
	}
	// The syncer indexes the simulated node as it would a real bytomd.
	src := chain.NewBytomd(d.chainURL)
	rebuilder := syncer.NewRebuilder(store, locks, d.rdb, "bufferd:", o.log)
	registerPools(o.log, d.rdb, store)
	setBuildInfo()
	// One process, no election: the jobs run unfenced (epoch 0).
	runner := syncer.Jobs{
		Store: store, Locks: locks, Chain: src, Rebuild: rebuilder,
		Interval: o.interval, MaxBackoff: time.Minute, Log: o.log,
	}.ForTerm(0)
	if _, err := runner.Index.Pass(ctx); err != nil {
		return nil, err
	}
	if err := runner.Tick(ctx); err != nil {
		return nil, err
	}
	runner.Wake = locks.WatchSubmits(ctx)
	go func() { d.done <- runner.Run(ctx) }()

	apiLn, err := net.Listen("tcp", o.addr)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	d.apiURL = "http://" + apiLn.Addr().String()
	api := o.api
	api.Store, api.Locks, api.AdminToken, api.Logger, api.Ready = store, locks, d.adminToken, o.log, notRebuilding(rebuilder)
	app := handlers.New(api)
	go func() { d.done <- serveFiber(ctx, app, apiLn, time.Second) }()
	ok = true
	return d, nil
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

func (d *devStack) printWelcome(w io.Writer) {
	fmt.Fprintf(w, `
bufferd dev is ready.

  API              %[1]s   (legacy /dapp/*, /v1/*, /metrics)
  simulated chain  %[2]s   (blockcenter /api/v1/btm/*, bytomd, explorer, /sim/*)
  admin token      %[3]s
  demo pool        id %[4]d, asset %[5]s
                   program %[6]s

Try:

  curl -s -X POST '%[1]s/dapp/list-utxos?limit=5' -H 'Content-Type: application/json' \
    -d '{"asset":"%[5]s","program":"%[6]s","sort":{"by":"amount","order":"desc"}}'

  curl -s %[1]s/v1/pools

`, d.apiURL, d.chainURL, d.adminToken, d.pool.ID, d.pool.Asset, d.pool.Program)
}

// close stops every part, waiting at most grace for each server to drain.
func (d *devStack) close(grace time.Duration) error {
	d.stop()
	deadline := time.After(grace + time.Second)
	for i := 0; i < cap(d.done); i++ {
		select {
		case <-d.done:
		case <-deadline:
			i = cap(d.done)
		}
	}
	if d.rdb != nil {
		_ = d.rdb.Close()
	}
	if d.mini != nil {
		d.mini.Close()
	}
	if d.journal != nil {
		d.journal.Close()
	}
	if d.store != nil {
		return d.store.Close()
	}
	return nil
}
