package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/bufferd/bufferd/config"
	"github.com/bufferd/bufferd/loadgen"
	"github.com/bufferd/bufferd/storage"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load generator: drive API replicas through the benchmark scenarios and write the performance report",
		Long: `bench drives one or more bufferd APIs through the scenarios of the performance report:
  a     reserve+release cycles on a large pool, 64 clients
  half  the same, open loop at half of a's throughput: the p99 reserve latency at half load
  b     contention: 200 clients, 10 UTXOs
  c     the DApp flow with the simulated chain: reserve by amount, spend with change, submit,
        the next client reserves the change (submit -> reservable latency)
  d     the legacy frontend flow: list-utxos, pick one, update-utxo
  e     the floor: the same HTTP stack doing one EVALSHA of a SET NX PX script per request
  memory  Redis and journal growth for --memory-reservations live reservations
Every grant is checked for duplicates by the clients and, with --database-url, in the journal.

With --local N it starts everything itself on loopback (migrate, simchain, N APIs, a syncer and
the floor server, all children of this binary) against --database-url and --redis-url;
otherwise give --api, --chain, --floor and --admin-token of a running deployment.`,
		Args: cobra.NoArgs,
	}
	c := loadConfig(cmd, "database-url", "redis-url", "admin-token")
	var (
		apis, scenarios, out  string
		chainURL, floorURL    string
		local, poolSize, memN int
		duration              time.Duration
	)
	f := cmd.Flags()
	f.StringVar(&apis, "api", "", "comma-separated API base URLs (without --local)")
	f.StringVar(&chainURL, "chain", "", "the simulated chain's base URL (scenario c; without --local)")
	f.StringVar(&floorURL, "floor", "", "the floor server's base URL (scenario e; without --local, `bufferd bench floor` serves it)")
	f.IntVar(&local, "local", 0, "start N API replicas, a syncer, the simulated chain and the floor server locally")
	f.DurationVar(&duration, "duration", 20*time.Second, "length of each scenario")
	f.StringVar(&scenarios, "scenarios", strings.Join(loadgen.AllScenarios, ","), "scenarios to run")
	f.IntVar(&poolSize, "pool-size", 20_000, "UTXOs of the large pools (scenarios a and d)")
	f.IntVar(&memN, "memory-reservations", 100_000, "live reservations of the memory scenario")
	f.StringVar(&out, "out", "", "write the markdown report to this file (default: standard output)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		log, err := newLogger(c)
		if err != nil {
			return err
		}
		ctx, stop := signalContext()
		defer stop()
		t := loadgen.Target{APIs: splitList(apis), Chain: chainURL, Floor: floorURL, AdminToken: c.AdminToken}
		if local > 0 {
			d, err := startLocal(ctx, c, local, log)
			if err != nil {
				return err
			}
			defer d.stop()
			t = d.target
		}
		probes, closeProbes, err := benchProbes(ctx, c)
		if err != nil {
			return err
		}
		defer closeProbes()
		rep, err := loadgen.Run(ctx, t, loadgen.Options{Duration: duration, Scenarios: splitList(scenarios),
			PoolSize: poolSize, MemoryReservations: memN, Log: log}, probes)
		if rep != nil {
			md := rep.Markdown()
			if out == "" {
				fmt.Print(md)
			} else if werr := os.WriteFile(out, []byte(md), 0o644); werr != nil {
				return werr
			}
		}
		return err
	}
	cmd.AddCommand(newBenchFloorCmd())
	return cmd
}

func newBenchFloorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "floor",
		Short: "Serve the benchmark's floor: POST /floor runs one EVALSHA of a SET NX PX script",
		Args:  cobra.NoArgs,
	}
	addr := cmd.Flags().String("addr", "127.0.0.1:3102", "listen address")
	c := loadConfig(cmd, "redis-url", "redis-prefix", "shutdown-timeout")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		log, err := newLogger(c)
		if err != nil {
			return err
		}
		ctx, stop := signalContext()
		defer stop()
		conns, err := newRedis(ctx, c)
		if err != nil {
			return err
		}
		defer conns.Close()
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			return err
		}
		log.Info("floor listening", "addr", ln.Addr().String())
		return serveFiber(ctx, loadgen.FloorApp(conns.data, c.RedisPrefix), ln, c.ShutdownGrace)
	}
	return cmd
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// benchProbes reads the journal and Redis's memory when their URLs are set.
func benchProbes(ctx context.Context, c *config.Config) (loadgen.Probes, func(), error) {
	var p loadgen.Probes
	var closers []func()
	done := func() {
		for _, f := range closers {
			f()
		}
	}
	if strings.HasPrefix(c.DatabaseURL, "postgres") {
		conn, err := pgx.Connect(ctx, c.DatabaseURL)
		if err != nil {
			return p, done, fmt.Errorf("bench: journal: %w", err)
		}
		closers = append(closers, func() { _ = conn.Close(context.Background()) })
		p.Journal = func(ctx context.Context, pools []int64) ([]loadgen.JournalRow, error) {
			rows, err := conn.Query(ctx, `SELECT id, fence, hashes, state, created_at, expires_at, updated_at
				FROM reservations WHERE pool_id = ANY($1)`, pools)
			if err != nil {
				return nil, err
			}
			return pgx.CollectRows(rows, func(r pgx.CollectableRow) (loadgen.JournalRow, error) {
				var j loadgen.JournalRow
				var hashes string
				err := r.Scan(&j.ID, &j.Fence, &hashes, &j.State, &j.CreatedAt, &j.ExpiresAt, &j.UpdatedAt)
				j.Hashes = storage.SplitHashes(hashes)
				return j, err
			})
		}
		p.JournalBytes = func(ctx context.Context) (int64, error) {
			var n int64
			err := conn.QueryRow(ctx, `SELECT pg_total_relation_size('reservations')`).Scan(&n)
			return n, err
		}
	}
	if c.RedisURL != "" {
		conns, err := newRedis(ctx, c)
		if err != nil {
			done()
			return p, func() {}, fmt.Errorf("bench: redis: %w", err)
		}
		closers = append(closers, conns.Close)
		p.RedisMemory = func(ctx context.Context) (int64, error) { return usedMemory(ctx, conns.data) }
	}
	return p, done, nil
}

// usedMemory reads used_memory from INFO memory.
func usedMemory(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("bench: INFO memory has no used_memory")
}

// localDeployment is what `bench --local` started.
type localDeployment struct {
	target loadgen.Target
	procs  []*exec.Cmd
	dropDB func()
}

// startLocal runs migrate and starts the simulated chain, n APIs, a syncer
// and the floor server on free loopback ports.
func startLocal(ctx context.Context, c *config.Config, n int, log *slog.Logger) (*localDeployment, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	token := randomToken()
	d := &localDeployment{target: loadgen.Target{AdminToken: token}}
	// A database of its own, so that earlier runs' pools add no sync load.
	dbURL, dropDB, err := benchDatabase(ctx, c.DatabaseURL)
	if err != nil {
		return nil, err
	}
	d.dropDB = dropDB
	env := append(os.Environ(),
		"BUFFERD_DATABASE_URL="+dbURL, "BUFFERD_REDIS_URL="+c.RedisURL,
		"BUFFERD_REDIS_PREFIX=bench-"+randomToken()[:8]+":", "BUFFERD_ADMIN_TOKEN="+token,
		"BUFFERD_RESERVE_RATE=0", "BUFFERD_LOG_LEVEL=warn",
		"BUFFERD_METRICS_ADDR=127.0.0.1:0", "BUFFERD_DATABASE_MAX_CONNS=20")
	c.DatabaseURL = dbURL // the journal probes read it too
	mig := exec.CommandContext(ctx, self, "migrate", "up")
	mig.Env = env
	if out, err := mig.CombinedOutput(); err != nil {
		d.stop()
		return nil, fmt.Errorf("bench: migrate: %v: %s", err, out)
	}
	start := func(args ...string) (string, error) {
		addr, err := freeAddr()
		if err != nil {
			return "", err
		}
		cmd := exec.Command(self, append(args, "--addr", addr)...)
		cmd.Env, cmd.Stderr = env, os.Stderr
		if err := cmd.Start(); err != nil {
			return "", err
		}
		d.procs = append(d.procs, cmd)
		return "http://" + addr, waitTCP(ctx, addr, 30*time.Second)
	}
	if d.target.Chain, err = start("simchain"); err != nil {
		d.stop()
		return nil, err
	}
	env = append(env, "BUFFERD_CHAIN_URL="+d.target.Chain)
	for range n {
		u, err := start("api")
		if err != nil {
			d.stop()
			return nil, err
		}
		d.target.APIs = append(d.target.APIs, u)
	}
	if d.target.Floor, err = start("bench", "floor"); err != nil {
		d.stop()
		return nil, err
	}
	syncer := exec.Command(self, "syncer")
	syncer.Env, syncer.Stderr = env, os.Stderr
	if err := syncer.Start(); err != nil {
		d.stop()
		return nil, err
	}
	d.procs = append(d.procs, syncer)
	for _, a := range d.target.APIs {
		if err := waitReady(ctx, a+"/readyz", 30*time.Second); err != nil {
			d.stop()
			return nil, err
		}
	}
	log.Info("local deployment up", "apis", d.target.APIs, "chain", d.target.Chain, "floor", d.target.Floor)
	return d, nil
}

// stop sends SIGTERM to every process and waits for them.
func (d *localDeployment) stop() {
	for _, p := range d.procs {
		_ = p.Process.Signal(os.Interrupt)
	}
	for _, p := range d.procs {
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
		}
	}
	if d.dropDB != nil {
		d.dropDB()
	}
}

// benchDatabase creates a fresh database on the server of url and returns its
// URL and a function dropping it.
func benchDatabase(ctx context.Context, url string) (string, func(), error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return "", nil, fmt.Errorf("bench: database: %w", err)
	}
	defer conn.Close(context.Background())
	name := "bufferd_bench_" + randomToken()[:12]
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("bench: create database: %w", err)
	}
	cfg := conn.Config()
	u := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name)
	if cfg.Password != "" {
		u = fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Password, cfg.Host, cfg.Port, name)
	}
	drop := func() {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if c, err := pgx.Connect(dctx, url); err == nil {
			_, _ = c.Exec(dctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			_ = c.Close(dctx)
		}
	}
	return u, drop, nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitTCP(ctx context.Context, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("bench: %s did not listen: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitReady(ctx context.Context, url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("bench: %s not ready", url)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
