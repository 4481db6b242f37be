package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/internal/freeport"
)

// redisReadyTimeout bounds how long a private Redis may take to answer PING.
const redisReadyTimeout = 15 * time.Second

// RedisServer is a private redis-server process on a loopback port, owned by one
// test: it can be killed, paused and restarted without touching the shared
// Redis. Its methods call t.Fatal on failure, so call them from the test's
// goroutine. A server from LaunchRedis has no test: use its methods that
// return errors (Crash, Pause, Resume, Relaunch, Close).
type RedisServer struct {
	t    testing.TB
	port int
	proc *process
	// password is the --requirepass of its command line, used by its own
	// clients (readiness, Client, a cluster's checks).
	password string
	// owned is the directory Close removes (LaunchRedis's servers only).
	owned string
}

// StartRedis starts a private redis-server on a free 127.0.0.1 port with its own
// temporary directory, no persistence (--save "" --appendonly no) and args
// appended to its command line, waits until it answers PING and kills it when
// the test ends. A "--requirepass", PASSWORD pair in args is used by the
// server's own clients (the readiness check, Client). Without redis-server on
// PATH the test fails, or is skipped when TESTENV_ALLOW_SKIP=1.
func StartRedis(t testing.TB, args ...string) *RedisServer {
	t.Helper()
	return startRedis(t, func() int { return FreePort(t) }, nil, args)
}

// startRedis starts redis-server with lead (a configuration file, --sentinel)
// before the usual arguments and args after them.
func startRedis(t testing.TB, pickPort func() int, lead, args []string) *RedisServer {
	t.Helper()
	s, err := launchRedis(t.TempDir(), func() (int, error) { return pickPort(), nil }, lead, args,
		func(s *RedisServer) {
			t.Cleanup(func() {
				if err := s.proc.kill(); err != nil {
					t.Error(err)
				}
			})
		})
	if err != nil {
		fatalOrUnavailable(t, err)
		return nil
	}
	s.t = t
	return s
}

// LaunchRedis is StartRedis for code that runs outside a test (the chaos
// checker): it starts a private redis-server in a temporary directory of its
// own and returns it once it answers PING. The caller ends it with Close.
func LaunchRedis(args ...string) (*RedisServer, error) {
	dir, err := os.MkdirTemp("", "testenv-redis-")
	if err != nil {
		return nil, fmt.Errorf("testenv: redis temp dir: %w", err)
	}
	s, err := launchRedis(dir, freeport.Pick, nil, args, func(*RedisServer) {})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	s.owned = dir
	return s, nil
}

// launchRedis starts redis-server in dir on a port from pickPort, trying a
// few ports; lead comes first on its command line and args last; started is
// called with each server process started.
func launchRedis(dir string, pickPort func() (int, error), lead, args []string, started func(*RedisServer)) (*RedisServer, error) {
	bin, ok := lookBinary("redis-server")
	if !ok {
		return nil, &missingError{msg: "redis-server not found on PATH"}
	}
	var lastErr error
	// A port chosen by FreePort may be taken before redis-server binds it;
	// try a few ports before giving up.
	for attempt := 0; attempt < 3; attempt++ {
		port, err := pickPort()
		if err != nil {
			return nil, err
		}
		s := &RedisServer{port: port, password: passwordArg(args), proc: &process{
			name:    fmt.Sprintf("redis-server :%d", port),
			bin:     bin,
			args:    append(append([]string{}, lead...), redisArgs(port, dir, args)...),
			dir:     dir,
			logPath: filepath.Join(dir, "redis.log"),
		}}
		if err := s.proc.start(); err != nil {
			return nil, err
		}
		started(s)
		err = s.waitReady()
		if err == nil {
			return s, nil
		}
		lastErr = err
		_ = s.proc.kill()
		if !strings.Contains(s.proc.logTail(), "Address already in use") {
			break
		}
	}
	return nil, lastErr
}

func redisArgs(port int, dir string, extra []string) []string {
	a := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--daemonize", "no",
		"--save", "",
		"--appendonly", "no",
		"--logfile", "",
	}
	return append(a, extra...)
}

// passwordArg returns the value of the last "--requirepass" in args ("" if none).
func passwordArg(args []string) string {
	pw := ""
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--requirepass" {
			pw = args[i+1]
		}
	}
	return pw
}

// waitReady polls PING until it answers or the process exits.
func (s *RedisServer) waitReady() error {
	rdb := redis.NewClient(&redis.Options{
		Addr:                  s.Addr(),
		Password:              s.password,
		DialTimeout:           200 * time.Millisecond,
		ReadTimeout:           500 * time.Millisecond,
		WriteTimeout:          500 * time.Millisecond,
		MaxRetries:            -1,
		PoolSize:              1,
		ContextTimeoutEnabled: true,
	})
	defer func() { _ = rdb.Close() }()
	return waitUntil(redisReadyTimeout, s.proc, func(ctx context.Context) error {
		return rdb.Ping(ctx).Err()
	})
}

// waitUntil calls check every 25 ms until it succeeds, proc exits, or timeout.
func waitUntil(timeout time.Duration, proc *process, check func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	exited := proc.exited()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := check(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("testenv: %s exited before it was ready: %v\n%s", proc.name, err, proc.logTail())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testenv: %s not ready after %v: %v\n%s", proc.name, timeout, err, proc.logTail())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Addr is the server's host:port (127.0.0.1:PORT).
func (s *RedisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL is the server's redis:// URL, database 0.
func (s *RedisServer) URL() string { return "redis://" + s.Addr() + "/0" }

// Port is the server's TCP port.
func (s *RedisServer) Port() int { return s.port }

// Client returns a new client for the server on every call, closed when the
// test ends. Its options are go-redis's defaults except ContextTimeoutEnabled
// (a context deadline bounds each call, even against a stopped server) and the
// server's --requirepass, if any.
func (s *RedisServer) Client() *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), Password: s.password, ContextTimeoutEnabled: true})
	s.t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// Pid is the process id of the current redis-server process.
func (s *RedisServer) Pid() int { return s.proc.pid() }

// Kill sends SIGKILL to the server (and any child) and waits until it has exited; killing a
// server that is not running does nothing.
func (s *RedisServer) Kill() {
	s.t.Helper()
	if err := s.Crash(); err != nil {
		s.t.Fatal(err)
	}
}

// Stop pauses the server with SIGSTOP: connections are still accepted by the
// kernel but nothing answers until Cont.
func (s *RedisServer) Stop() {
	s.t.Helper()
	if err := s.Pause(); err != nil {
		s.t.Fatal(err)
	}
}

// Cont resumes a server paused by Stop with SIGCONT.
func (s *RedisServer) Cont() {
	s.t.Helper()
	if err := s.Resume(); err != nil {
		s.t.Fatal(err)
	}
}

// Restart starts the server again on the same port and directory and waits
// until it answers PING; a server still running is killed first. The data is
// gone unless persistence was turned on through StartRedis's args.
func (s *RedisServer) Restart() {
	s.t.Helper()
	if err := s.Relaunch(); err != nil {
		s.t.Fatal(err)
	}
}

// Crash is Kill returning its error: SIGKILL, then wait for the exit.
func (s *RedisServer) Crash() error { return s.proc.kill() }

// Pause is Stop returning its error.
func (s *RedisServer) Pause() error { return s.proc.signal(syscall.SIGSTOP) }

// Resume is Cont returning its error.
func (s *RedisServer) Resume() error { return s.proc.signal(syscall.SIGCONT) }

// Relaunch is Restart returning its error.
func (s *RedisServer) Relaunch() error {
	if err := s.proc.kill(); err != nil {
		return err
	}
	if err := s.proc.start(); err != nil {
		return err
	}
	return s.waitReady()
}

// Running reports whether the server process runs (paused or not).
func (s *RedisServer) Running() bool { return s.proc.running() }

// Close kills a server from LaunchRedis and removes its directory.
func (s *RedisServer) Close() error {
	err := s.proc.kill()
	if s.owned != "" {
		err = errors.Join(err, os.RemoveAll(s.owned))
	}
	return err
}

// RedisCluster is a private Redis Cluster of masters only, each a RedisServer.
type RedisCluster struct {
	t        testing.TB
	nodes    []*RedisServer
	password string
}

// StartRedisCluster starts masters (at least 3) cluster-enabled redis-servers on
// free loopback ports, args appended to each one's command line, joins them with
// `redis-cli --cluster create` (no replicas), waits until every node reports
// cluster_state:ok and kills them all when the test ends. With "--requirepass",
// PASSWORD in args (and "--masterauth" the same, for replicas added later) the
// nodes need that password, and the helpers here use it.
func StartRedisCluster(t testing.TB, masters int, args ...string) *RedisCluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("testenv: a Redis Cluster needs at least 3 masters, not %d", masters)
	}
	cli, ok := lookBinary("redis-cli")
	if !ok {
		unavailable(t, "redis-cli not found on PATH")
	}
	c := &RedisCluster{t: t, password: passwordArg(args)}
	nodeArgs := append([]string{
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", "2000",
	}, args...)
	for i := 0; i < masters; i++ {
		c.nodes = append(c.nodes, startRedis(t, func() int { return clusterPort(t) }, nil, nodeArgs))
	}
	cliArgs := append([]string{"--cluster", "create"}, c.Addrs()...)
	cliArgs = append(cliArgs, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	create := exec.CommandContext(ctx, cli, cliArgs...)
	if c.password != "" {
		create.Env = append(os.Environ(), "REDISCLI_AUTH="+c.password)
	}
	out, err := create.CombinedOutput()
	if err != nil {
		t.Fatalf("testenv: redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, n := range c.nodes {
		if err := n.waitClusterOK(); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// clusterPort returns a free port whose cluster bus port (port+10000) is free too.
func clusterPort(t testing.TB) int {
	t.Helper()
	for i := 0; i < 100; i++ {
		p := FreePort(t)
		if p+10000 <= 65535 && freeport.Free(p+10000) {
			return p
		}
	}
	t.Fatal("testenv: no free port pair for a cluster node")
	return 0
}

// errClusterNotOK is returned while a node does not report cluster_state:ok.
var errClusterNotOK = errors.New("testenv: cluster_state is not ok")

func (s *RedisServer) waitClusterOK() error {
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), Password: s.password, MaxRetries: -1, PoolSize: 1, ContextTimeoutEnabled: true})
	defer func() { _ = rdb.Close() }()
	return waitUntil(redisReadyTimeout, s.proc, func(ctx context.Context) error {
		info, err := rdb.ClusterInfo(ctx).Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return errClusterNotOK
		}
		return nil
	})
}

// Addrs lists the nodes' host:port addresses.
func (c *RedisCluster) Addrs() []string {
	a := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		a[i] = n.Addr()
	}
	return a
}

// Nodes returns the cluster's servers, to kill or pause one of them.
func (c *RedisCluster) Nodes() []*RedisServer { return c.nodes }

// Client returns a new cluster client on every call, seeded with all nodes and
// closed when the test ends; like RedisServer.Client it has
// ContextTimeoutEnabled set.
func (c *RedisCluster) Client() *redis.ClusterClient {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), Password: c.password, ContextTimeoutEnabled: true})
	c.t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}
