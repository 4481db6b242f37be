package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/bufferd/bufferd/bench"
	"github.com/bufferd/bufferd/bench/chaos"
	"github.com/bufferd/bufferd/internal/fiberserve"
)

func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load generator: drive the API through the benchmark scenarios and write the performance report",
		Long: `bench drives bufferd API replicas through the scenarios of the performance report,
checks every grant for duplicates (client-side and in the PostgreSQL journal) and
writes a markdown report.

Scenarios (--scenarios, in this order):
  e       the floor: fiber + go-redis doing one EVALSHA of SET NX PX per request
  a       reserve + release cycles on a large pool, closed loop, 64 clients
  half    the same, open loop at half of a's throughput (or --rate)
  b       contention: 200 clients, 10 UTXOs
  c       the DApp flow on the simulated chain: reserve by amount, spend with
          change, submit, the change reserved again (submit -> reservable)
  d       the legacy frontend, 32 users on a small pool: list-utxos, the frontend's
          pick, update-utxo; won UTXOs are given back (needs --database-url)
  memory  Redis used_memory and journal growth for --memory-reservations

With --local N it starts a whole deployment as child processes on free loopback
ports (a fresh database on --database-url's server, migrations, the simulated
chain, N APIs without reserve rate limit, a syncer and the floor server) and
stops it at the end. Otherwise give --api, --chain (the simulated chain the
deployment's syncer follows) and --admin-token; --database-url enables the
journal check, --redis-url the memory scenario and, without --floor, a local
floor server. Set BUFFERD_RESERVE_RATE=0 on APIs you benchmark.`,
		Args: cobra.NoArgs,
	}
	c := loadConfig(cmd, "database-url", "redis-url", "admin-token")
	var (
		apis, chainURL, floorURL, scenarios, out string
		executable                               string
		local, poolSize, legacyPoolSize, pools   int
		memoryN                                  int
		duration, contentionWait                 time.Duration
		rate                                     float64
	)
	f := cmd.Flags()
	f.IntVar(&local, "local", 0, "start a deployment of N API replicas (plus syncer, simulated chain, floor) and benchmark it")
	f.StringVar(&executable, "local-executable", "", "with --local: run the deployment from this bufferd binary (another version, to compare) instead of this one")
	f.StringVar(&apis, "api", "", "comma-separated base URLs of running API replicas (without --local)")
	f.StringVar(&chainURL, "chain", "", "base URL of the simulated chain the deployment follows (without --local)")
	f.StringVar(&floorURL, "floor", "", "base URL of a running floor server, bufferd bench floor (default: start one with --redis-url)")
	f.StringVar(&scenarios, "scenarios", strings.Join(bench.Scenarios, ","), "comma-separated scenarios to run")
	f.DurationVar(&duration, "duration", bench.DefaultDuration, "measured length of each timed scenario (after a warm-up of a fifth of it, at most 2s)")
	f.Float64Var(&rate, "rate", 0, "cycles a second of the open-loop scenario half (0: half of what a measured)")
	f.IntVar(&poolSize, "pool-size", bench.DefaultPoolSize, "UTXOs of the large pools (a, half)")
	f.IntVar(&legacyPoolSize, "legacy-pool-size", bench.DefaultLegacyPoolSize, "UTXOs of scenario d's pool")
	f.IntVar(&pools, "pools", 1, "spread scenarios a and half over this many pools (on a Redis Cluster, over its shards)")
	f.IntVar(&memoryN, "memory-reservations", bench.DefaultMemoryReservations, "live reservations of the memory scenario")
	f.DurationVar(&contentionWait, "contention-wait", bench.DefaultContentionWait, "wait_seconds of scenario b's reserves (0: retry after a 1-5 ms pause)")
	f.StringVar(&out, "out", "", "write the markdown report to this file (default: standard output)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		log, err := newLogger(c)
		if err != nil {
			return err
		}
		ctx, stop := signalContext()
		defer stop()
		self, err := os.Executable()
		if err != nil {
			return err
		}
		deployed := self
		if executable != "" {
			deployed = executable
		}
		t := bench.Target{APIs: splitList(apis), Chain: chainURL, Floor: floorURL, AdminToken: c.AdminToken,
			DatabaseURL: c.DatabaseURL, RedisURL: c.RedisURL}
		var procs map[int]string
		deployment := fmt.Sprintf("running deployment: %d API(s)", len(t.APIs))
		if local > 0 {
			l, err := bench.StartLocal(ctx, bench.LocalOptions{Executable: deployed, APIs: local,
				DatabaseURL: c.DatabaseURL, RedisURL: c.RedisURL, Log: log})
			defer l.Stop()
			if err != nil {
				return err
			}
			t, procs = l.Target, l.Processes()
			deployment = fmt.Sprintf("local: %d × `bufferd api` (BUFFERD_RESERVE_RATE=0), 1 × `bufferd syncer`, `bufferd simchain`, "+
				"`bufferd bench floor`, all child processes on loopback; PostgreSQL and Redis at %s, %s (fresh database, own key prefix)",
				local, redact(c.DatabaseURL), redact(c.RedisURL))
		} else if t.Floor == "" && t.RedisURL != "" && wantsFloor(scenarios) {
			u, stopFloor, err := bench.StartFloor(ctx, self, t.RedisURL, os.Stderr)
			if err != nil {
				return err
			}
			defer stopFloor()
			t.Floor = u
			deployment += "; floor started locally on " + redact(t.RedisURL)
		}
		rep, err := bench.Run(ctx, t, bench.Options{
			Scenarios: splitList(scenarios), Duration: duration, Rate: rate, PoolSize: poolSize, LegacyPoolSize: legacyPoolSize, Pools: pools,
			MemoryReservations: memoryN, ContentionWait: contentionWait, Command: commandLine(os.Args), Processes: procs, Log: log,
		})
		if rep != nil {
			rep.Deployment = deployment
			md := rep.Markdown()
			if out == "" {
				if _, werr := fmt.Fprint(cmd.OutOrStdout(), md); werr != nil {
					return errors.Join(err, werr)
				}
			} else if werr := os.WriteFile(out, []byte(md), 0o644); werr != nil {
				return werr
			} else {
				log.Info("report written", "file", out)
			}
		}
		return err
	}
	cmd.AddCommand(newBenchFloorCmd(), newBenchChaosCmd(), newBenchIndexCmd())
	return cmd
}

// newBenchChaosCmd is `bench chaos`: the randomized lifecycle checker (see
// package bench/chaos), run for as long as asked.
func newBenchChaosCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Randomized lifecycle checker of a local deployment: clients, chain events, faults",
		Long: `chaos starts private redis-server and PostgreSQL processes on free loopback
ports (their binaries must be installed) and a deployment of this bufferd on
them (simulated chain, 3 APIs, 2 syncers), then runs rounds of client
operations, chain events and faults drawn from --seed until --duration
passed, checking at each quiet point that no UTXO was lost or doubled, that
the pool counts equal what can be reserved, that fences only grow and that
every acknowledged reservation is in the journal. On a violation it prints the
seed and the shortest failing history it found within --shrink, and exits
non-zero.`,
		Args: cobra.NoArgs,
	}
	c := loadConfig(cmd)
	var o chaos.Options
	f := cmd.Flags()
	f.Uint64Var(&o.Seed, "seed", 1, "seed of every random choice")
	f.DurationVar(&o.Duration, "duration", time.Minute, "how long to start new rounds for")
	f.IntVar(&o.Clients, "clients", chaos.DefaultClients, "clients running at once")
	f.IntVar(&o.Pools, "pools", chaos.DefaultPools, "contract pools")
	f.IntVar(&o.UTXOs, "utxos", chaos.DefaultUTXOs, "UTXOs each pool starts with")
	f.DurationVar(&o.Round, "round", chaos.DefaultRound, "activity between two quiet points")
	f.DurationVar(&o.SweepInterval, "sweep-interval", chaos.DefaultSweepInterval, "the syncers' sweep interval")
	f.DurationVar(&o.ShrinkBudget, "shrink", 10*time.Minute, "time to look for a shorter failing history after a violation (0: none)")
	f.BoolVar(&o.NoFaults, "no-faults", false, "leave out the faults")
	f.StringVar(&o.WorkDir, "work-dir", "", "keep the processes' logs and the histories there (default: a temporary directory, kept on failure)")
	f.StringVar(&o.ProcessLogLevel, "process-log-level", "warn", "log level of the bufferd processes it starts")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		log, err := newLogger(c)
		if err != nil {
			return err
		}
		ctx, stop := signalContext()
		defer stop()
		if o.Executable, err = os.Executable(); err != nil {
			return err
		}
		o.Log = log
		rep, err := chaos.Run(ctx, o)
		if rep != nil {
			err = errors.Join(err, rep.Write(cmd.OutOrStdout()))
		}
		return err
	}
	return cmd
}

// newBenchFloorCmd is the hidden `bench floor`: the floor scenario's server,
// run as its own process so that it competes for the CPUs as the APIs do.
func newBenchFloorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:    "floor",
		Short:  "Serve the benchmark's floor: POST /floor runs one EVALSHA of a SET NX PX script",
		Args:   cobra.NoArgs,
		Hidden: true,
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
		log.Info("bench floor listening", "addr", ln.Addr().String())
		return fiberserve.Serve(ctx, bench.FloorApp(conns.data, c.RedisPrefix), ln, c.ShutdownGrace)
	}
	return cmd
}

func wantsFloor(scenarios string) bool {
	for _, s := range splitList(scenarios) {
		if s == "e" {
			return true
		}
	}
	return false
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

// commandLine is args with secrets hidden: the admin token and URL passwords.
func commandLine(args []string) string {
	out := make([]string, len(args))
	hideNext := false
	for i, a := range args {
		switch {
		case hideNext:
			a, hideNext = "***", false
		case a == "--admin-token":
			hideNext = true
		case strings.HasPrefix(a, "--admin-token="):
			a = "--admin-token=***"
		default:
			if k, v, ok := strings.Cut(a, "="); ok && strings.Contains(v, "://") {
				a = k + "=" + redact(v)
			} else {
				a = redact(a)
			}
		}
		out[i] = a
	}
	out[0] = "bufferd"
	return strings.Join(out, " ")
}

// redact hides the passwords of the comma-separated URLs in s.
func redact(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		if u, err := url.Parse(p); err == nil && u.User != nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}
