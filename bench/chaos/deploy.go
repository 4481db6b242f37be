package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/internal/scratchdb"
	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/lockmgr"
)

// Timeouts of the deployment.
const (
	startTimeout = 60 * time.Second
	readyTimeout = 45 * time.Second
)

// Settings of every bufferd process: short enough that a quiet point comes
// within seconds.
const (
	syncInterval = 200 * time.Millisecond
	indexPoll    = 100 * time.Millisecond
	leaderTTL    = 2 * time.Second
)

// servers are the private Redis and PostgreSQL of a Run, shared by its
// trials (each trial has a database and a key prefix of its own).
type servers struct {
	redis *testenv.RedisServer
	pg    *testenv.PostgresServer
	rdb   *redis.Client
}

func startServers() (*servers, error) {
	rs, err := testenv.LaunchRedis()
	if err != nil {
		return nil, fmt.Errorf("%w: redis: %w", errSetup, err)
	}
	pg, err := testenv.LaunchPostgres()
	if err != nil {
		_ = rs.Close()
		return nil, fmt.Errorf("%w: postgres: %w", errSetup, err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr(), ContextTimeoutEnabled: true, MaxRetries: 1,
		DialTimeout: 500 * time.Millisecond, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	return &servers{redis: rs, pg: pg, rdb: rdb}, nil
}

func (s *servers) close() {
	_ = s.rdb.Close()
	_ = s.redis.Close()
	_ = s.pg.Close()
}

// node is one bufferd process of a deployment.
type node struct {
	name string
	url  string // base URL of an API ("" for a syncer)
	id   string // a syncer's instance id
	proc *testenv.Process
}

func (n *node) exited() bool {
	select {
	case <-n.proc.Exited():
		return true
	default:
		return false
	}
}

// poolInfo is one contract pool of a deployment.
type poolInfo struct {
	ID      int64
	Asset   string
	Program string
}

// deployment is one trial's bufferd on the run's servers: its database and
// key prefix, the simulated chain, the APIs and the syncers.
type deployment struct {
	srv     *servers
	exe     string
	dir     string
	dbName  string
	dbURL   string
	prefix  string
	admin   string
	env     []string
	chain   string
	sim     *testenv.Process
	apis    []*node
	syncers []*node
	pools   []poolInfo
	locks   *lockmgr.Manager
	web     *web
}

// deploy starts trial n's deployment: a fresh database, migrations, the
// simulated chain, the APIs, the pools with their first UTXOs, the syncers;
// it returns once every pool is offered.
func deploy(ctx context.Context, srv *servers, o *Options, pl planner, n int, dir string, w *web) (*deployment, error) {
	d := &deployment{srv: srv, exe: o.Executable, dir: dir, dbName: fmt.Sprintf("chaos_trial_%d", n),
		prefix: fmt.Sprintf("chaos%d:", n), admin: "chaos-admin-" + pl.hex32(99)[:16], web: w}
	d.locks = lockmgr.New(srv.rdb, lockmgr.Options{Prefix: d.prefix})
	steps := []func(context.Context) error{d.createDatabase, d.configure(o), d.migrate, d.startChain, d.startAPIs,
		d.createPools(pl, o), d.startSyncers}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			d.stop()
			return nil, fmt.Errorf("%w: %w", errSetup, err)
		}
	}
	return d, nil
}

// createDatabase creates the trial's database, dropping one of its name
// left behind by an earlier run first.
func (d *deployment) createDatabase(ctx context.Context) error {
	if err := scratchdb.Drop(ctx, d.srv.pg.URL(), d.dbName); err != nil {
		return err
	}
	db, err := scratchdb.Create(ctx, d.srv.pg.URL(), d.dbName)
	if err != nil {
		return err
	}
	d.dbURL = db.URL
	return nil
}

func (d *deployment) configure(o *Options) func(context.Context) error {
	return func(context.Context) error {
		port, err := testenv.FreeLoopbackPort()
		if err != nil {
			return err
		}
		d.chain = fmt.Sprintf("http://127.0.0.1:%d", port)
		d.env = append(os.Environ(),
			"BUFFERD_DATABASE_URL="+d.dbURL,
			"BUFFERD_DATABASE_MAX_CONNS=6",
			"BUFFERD_REDIS_URL="+d.srv.redis.URL(),
			"BUFFERD_REDIS_PREFIX="+d.prefix,
			"BUFFERD_CHAIN_URL="+d.chain,
			"BUFFERD_CHAIN_KIND=bytomd",
			"BUFFERD_ADMIN_TOKEN="+d.admin,
			"BUFFERD_SYNC_INTERVAL="+syncInterval.String(),
			"BUFFERD_SYNC_MAX_BACKOFF=1s",
			"BUFFERD_INDEX_POLL="+indexPoll.String(),
			"BUFFERD_SWEEP_INTERVAL="+o.SweepInterval.String(),
			"BUFFERD_LEADER_TTL="+leaderTTL.String(),
			"BUFFERD_METRICS_ADDR=127.0.0.1:0",
			"BUFFERD_SHUTDOWN_TIMEOUT=2s",
			"BUFFERD_RESERVE_RATE=0",
			"BUFFERD_LOG_LEVEL="+o.ProcessLogLevel,
			"BUFFERD_LOG_FORMAT=json",
		)
		return nil
	}
}

func (d *deployment) migrate(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, d.exe, "migrate", "up")
	cmd.Env = d.env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("migrate up: %w: %s", err, out)
	}
	return nil
}

// launch starts `bufferd args...` logging to the deployment's directory.
func (d *deployment) launch(name string, env []string, args ...string) (*testenv.Process, error) {
	return testenv.Launch(name, d.exe, args, env, filepath.Join(d.dir, name+".log"))
}

func (d *deployment) startChain(ctx context.Context) error {
	p, err := d.launch("simchain", d.env, "simchain", "--addr", strings.TrimPrefix(d.chain, "http://"))
	if err != nil {
		return err
	}
	d.sim = p
	return d.waitHTTP(ctx, d.chain+"/status", p)
}

func (d *deployment) startAPIs(ctx context.Context) error {
	for i := 0; i < defaultAPIs; i++ {
		port, err := testenv.FreeLoopbackPort()
		if err != nil {
			return err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		name := fmt.Sprintf("api%d", i)
		p, err := d.launch(name, d.env, "api", "--addr", addr)
		if err != nil {
			return err
		}
		d.apis = append(d.apis, &node{name: name, url: "http://" + addr, proc: p})
	}
	return d.waitAPIs(ctx)
}

// waitAPIs waits until every API answers /readyz with 200.
func (d *deployment) waitAPIs(ctx context.Context) error {
	for _, a := range d.apis {
		if err := d.waitHTTP(ctx, a.url+"/readyz", a.proc); err != nil {
			return err
		}
	}
	return nil
}

func (d *deployment) startSyncers(ctx context.Context) error {
	for i := 0; i < defaultSyncers; i++ {
		id := fmt.Sprintf("syncer-%d", i)
		p, err := d.launch(id, append(d.env, "BUFFERD_INSTANCE_ID="+id), "syncer")
		if err != nil {
			return err
		}
		d.syncers = append(d.syncers, &node{name: id, id: id, proc: p})
	}
	return nil
}

// createPools registers the pools (indexed from block 1; outputs of pending
// transactions offered) and funds each with its first UTXOs.
func (d *deployment) createPools(pl planner, o *Options) func(context.Context) error {
	return func(ctx context.Context) error {
		for i := 0; i < o.Pools; i++ {
			p := poolInfo{Asset: pl.hex32(uint64(2 * i)), Program: "0020" + pl.hex32(uint64(2*i+1))}
			var created struct {
				ID int64 `json:"id"`
			}
			a := d.web.call(ctx, http.MethodPost, d.apis[0].url+"/v1/pools",
				map[string]any{"asset": p.Asset, "program": p.Program, "from_height": 1}, "Authorization", "Bearer "+d.admin)
			if err := a.decode(&created); err != nil {
				return fmt.Errorf("create pool: %w", err)
			}
			p.ID = created.ID
			a = d.web.call(ctx, http.MethodPost, d.chain+"/sim/utxos",
				map[string]any{"asset": p.Asset, "program": p.Program, "amounts": pl.initialAmounts(i, o.UTXOs)})
			if a.Err != nil || a.Status != http.StatusOK {
				return fmt.Errorf("fund pool: %s", a)
			}
			d.pools = append(d.pools, p)
		}
		return nil
	}
}

// waitHTTP waits until u answers 200, failing early when p exited.
func (d *deployment) waitHTTP(ctx context.Context, u string, p *testenv.Process) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		a := d.web.call(cctx, http.MethodGet, u, nil)
		cancel()
		if a.Err == nil && a.Status == http.StatusOK {
			return nil
		}
		select {
		case <-p.Exited():
			return fmt.Errorf("%s exited before %s answered: %s", u, u, p.LogTail())
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not ready within %s: %s", u, readyTimeout, a)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// api returns the i-th API's base URL, round robin.
func (d *deployment) api(i int) string { return d.apis[i%len(d.apis)].url }

// leader returns the syncer leading the sync jobs, as GET /v1/status tells.
func (d *deployment) leader(ctx context.Context) (*node, error) {
	var st statusJSON
	var err error
	for i := range d.apis {
		if err = d.web.call(ctx, http.MethodGet, d.api(i)+"/v1/status", nil).decode(&st); err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	if st.Leader == nil {
		return nil, errors.New("no leader")
	}
	for _, s := range d.syncers {
		if s.id == st.Leader.ID {
			return s, nil
		}
	}
	return nil, fmt.Errorf("unknown leader %q", st.Leader.ID)
}

// restore undoes every fault: paused processes continue, the servers and
// the processes that exited start again. It returns what it restored.
func (d *deployment) restore(ctx context.Context) ([]string, error) {
	var did []string
	var errs []error
	if !d.srv.redis.Running() {
		did = append(did, "redis relaunched")
		errs = append(errs, d.srv.redis.Relaunch())
	}
	_ = d.srv.redis.Resume()
	if !d.srv.pg.Running() {
		did = append(did, "postgres relaunched")
		errs = append(errs, d.srv.pg.Relaunch())
	}
	_ = d.srv.pg.Resume()
	for _, n := range slices.Concat(d.apis, d.syncers) {
		if n.exited() {
			did = append(did, n.name+" relaunched")
			errs = append(errs, n.proc.Relaunch())
			continue
		}
		_ = n.proc.Signal(syscall.SIGCONT)
	}
	if err := errors.Join(errs...); err != nil {
		return did, err
	}
	return did, d.waitAPIs(ctx)
}

// stop kills every process of the deployment and drops its database.
func (d *deployment) stop() {
	for _, n := range slices.Concat(d.apis, d.syncers) {
		_ = n.proc.Signal(syscall.SIGCONT)
		_ = n.proc.Kill()
	}
	if d.sim != nil {
		_ = d.sim.Kill()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if !d.srv.pg.Running() {
		_ = d.srv.pg.Relaunch()
	}
	_ = d.srv.pg.Resume()
	_ = scratchdb.Drop(ctx, d.srv.pg.URL(), d.dbName)
	if !d.srv.redis.Running() {
		_ = d.srv.redis.Relaunch()
	}
	_ = d.srv.redis.Resume()
}

// probe is what Options.beforeCheck gets.
func (d *deployment) probe(round int) probe {
	p := probe{Round: round, DatabaseURL: d.dbURL, RedisURL: d.srv.redis.URL(), Prefix: d.prefix}
	for _, pool := range d.pools {
		p.Pools = append(p.Pools, pool.ID)
		p.Assets = append(p.Assets, pool.Asset)
		p.Programs = append(p.Programs, pool.Program)
	}
	return p
}

// statusJSON is the part of GET /v1/status the checker reads.
type statusJSON struct {
	Leader *struct {
		ID    string `json:"id"`
		Epoch int64  `json:"epoch"`
	} `json:"leader"`
	Pools []struct {
		ID   int64 `json:"id"`
		Sync map[string]struct {
			Height    int64  `json:"height"`
			BlockHash string `json:"block_hash"`
		} `json:"sync"`
	} `json:"pools"`
}
