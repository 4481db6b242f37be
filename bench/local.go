package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/internal/freeport"
	"github.com/bufferd/bufferd/internal/scratchdb"
)

// Timeouts of a local deployment.
const (
	startTimeout = 60 * time.Second
	stopTimeout  = 30 * time.Second
)

// LocalOptions describe a deployment StartLocal runs on this machine.
type LocalOptions struct {
	// Executable is the bufferd binary (os.Executable of `bufferd bench`).
	Executable string
	// APIs is how many API processes to start.
	APIs int
	// DatabaseURL names a PostgreSQL server (and a database there to connect
	// to); the deployment gets a fresh database on it, dropped at Stop.
	DatabaseURL string
	// RedisURL is the Redis the deployment uses, under a key prefix of its
	// own whose keys are deleted at Stop.
	RedisURL string
	Log      *slog.Logger
}

// Local is a deployment running as child processes: the simulated chain,
// API replicas, one syncer and the floor server.
type Local struct {
	Target Target
	// Prefix is the Redis key prefix of the deployment.
	prefix string
	procs  []*exec.Cmd
	names  map[int]string
	undo   []func()
	log    *slog.Logger
}

// StartLocal creates a fresh database, migrates it, and starts `bufferd
// simchain`, o.APIs × `bufferd api` (reserve rate limit off), `bufferd syncer`
// and `bufferd bench floor` on free loopback ports; it returns once every
// process answers. Stop it when done, also after an error.
func StartLocal(ctx context.Context, o LocalOptions) (*Local, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	l := &Local{log: o.Log, prefix: "bench" + randomHex(4) + ":", names: map[int]string{}}
	l.Target.AdminToken = randomHex(16)
	l.Target.RedisURL = o.RedisURL
	scratch, err := scratchdb.Create(ctx, o.DatabaseURL, scratchdb.Name("bufferd_bench_"))
	if errors.Is(err, scratchdb.ErrAdminURL) {
		return l, fmt.Errorf("bench: --database-url must be a postgres:// URL")
	}
	if err != nil {
		return l, fmt.Errorf("bench: database: %w", err)
	}
	l.undo = append(l.undo, scratch.Discard)
	db := scratch.URL
	l.Target.DatabaseURL = db
	l.undo = append(l.undo, func() { deleteKeys(o.RedisURL, l.prefix, o.Log) })

	env := append(os.Environ(),
		"BUFFERD_DATABASE_URL="+db,
		"BUFFERD_REDIS_URL="+o.RedisURL,
		"BUFFERD_REDIS_PREFIX="+l.prefix,
		"BUFFERD_ADMIN_TOKEN="+l.Target.AdminToken,
		"BUFFERD_RESERVE_RATE=0",
		"BUFFERD_LOG_LEVEL=warn", // no access log
		"BUFFERD_SHUTDOWN_TIMEOUT=5s",
	)
	migrate := exec.CommandContext(ctx, o.Executable, "migrate", "up")
	migrate.Env = env
	if out, err := migrate.CombinedOutput(); err != nil {
		return l, fmt.Errorf("bench: migrate: %w: %s", err, out)
	}

	start := func(env []string, args ...string) error {
		cmd := exec.Command(o.Executable, args...)
		cmd.Env, cmd.Stdout, cmd.Stderr = env, os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("bench: start %s: %w", strings.Join(args, " "), err)
		}
		l.procs = append(l.procs, cmd)
		l.names[cmd.Process.Pid] = "bufferd " + strings.Join(args[:min(len(args), 2)], " ")
		if args[0] != "bench" {
			l.names[cmd.Process.Pid] = "bufferd " + args[0]
		}
		return nil
	}
	serve := func(env []string, args ...string) (string, error) {
		addr, err := freeAddr()
		if err != nil {
			return "", err
		}
		if err := start(env, append(args, "--addr", addr)...); err != nil {
			return "", err
		}
		return "http://" + addr, nil
	}
	if l.Target.Chain, err = serve(env, "simchain"); err != nil {
		return l, err
	}
	if err := waitHTTP(ctx, l.Target.Chain+"/status", http.MethodGet); err != nil {
		return l, err
	}
	env = append(env, "BUFFERD_CHAIN_URL="+l.Target.Chain, "BUFFERD_CHAIN_KIND=blockcenter")
	for range o.APIs {
		u, err := serve(env, "api")
		if err != nil {
			return l, err
		}
		l.Target.APIs = append(l.Target.APIs, u)
	}
	metrics, err := freeAddr()
	if err != nil {
		return l, err
	}
	if err := start(append(env, "BUFFERD_METRICS_ADDR="+metrics), "syncer"); err != nil {
		return l, err
	}
	if l.Target.Floor, err = serve(env, "bench", "floor"); err != nil {
		return l, err
	}
	for _, u := range append(withPath(l.Target.APIs, "/readyz"), "http://"+metrics+"/readyz", l.Target.Floor+"/livez") {
		if err := waitHTTP(ctx, u, http.MethodGet); err != nil {
			return l, err
		}
	}
	l.log.Info("local deployment up", "apis", l.Target.APIs, "chain", l.Target.Chain, "floor", l.Target.Floor, "prefix", l.prefix)
	return l, nil
}

// withPath returns each of bases followed by path.
func withPath(bases []string, path string) []string {
	out := make([]string, len(bases))
	for i, b := range bases {
		out[i] = b + path
	}
	return out
}

// Processes names the deployment's processes by pid ("bufferd api"...).
func (l *Local) Processes() map[int]string { return l.names }

// Stop ends every process (SIGTERM, then SIGKILL after a while), deletes the
// deployment's Redis keys and drops its database.
func (l *Local) Stop() {
	done := make([]chan struct{}, len(l.procs))
	for i, p := range l.procs {
		_ = p.Process.Signal(syscall.SIGTERM)
		done[i] = make(chan struct{})
		go func() { _ = p.Wait(); close(done[i]) }()
	}
	deadline := time.After(stopTimeout)
	for i := range l.procs {
		select {
		case <-done[i]:
			continue
		case <-deadline:
		}
		// Past the deadline: kill whatever is still running.
		for j := i; j < len(l.procs); j++ {
			select {
			case <-done[j]:
			default:
				l.log.Warn("process did not stop, killing it", "process", l.names[l.procs[j].Process.Pid])
				_ = l.procs[j].Process.Kill()
				<-done[j]
			}
		}
		break
	}
	for i := len(l.undo) - 1; i >= 0; i-- {
		l.undo[i]()
	}
}

// StartFloor starts `bufferd bench floor` alone on a free loopback port
// against redisURL; stop it by cancelling nothing but calling the returned func.
func StartFloor(ctx context.Context, executable, redisURL string, stderr io.Writer) (string, func(), error) {
	addr, err := freeAddr()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(executable, "bench", "floor", "--addr", addr)
	cmd.Env = append(os.Environ(), "BUFFERD_REDIS_URL="+redisURL, "BUFFERD_REDIS_PREFIX=benchfloor"+randomHex(4)+":")
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(stopTimeout):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	u := "http://" + addr
	if err := waitHTTP(ctx, u+"/livez", http.MethodGet); err != nil {
		stop()
		return "", nil, err
	}
	return u, stop, nil
}

// freeAddr returns a loopback address whose port was free a moment ago, below
// the ephemeral range (see internal/freeport).
func freeAddr() (string, error) {
	port, err := freeport.Pick()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", port), nil
}

// waitHTTP waits until u answers method with a status below 500.
func waitHTTP(ctx context.Context, u, method string) error {
	deadline := time.Now().Add(startTimeout)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, method, u, nil)
		if err != nil {
			return err
		}
		req.Close = true // no idle connection to hold up the server's shutdown
		resp, err := hc.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %s did not answer within %s: %w", u, startTimeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// deleteKeys deletes every key under prefix in the Redis at redisURL.
func deleteKeys(redisURL, prefix string, log *slog.Logger) {
	first, _, _ := strings.Cut(redisURL, ",")
	if !strings.Contains(first, "://") {
		first = "redis://" + first
	}
	opt, err := redis.ParseURL(strings.TrimSpace(first))
	if err != nil {
		return
	}
	rdb := redis.NewClient(opt)
	defer func() { _ = rdb.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n := 0
	iter := rdb.Scan(ctx, 0, prefix+"*", 10_000).Iterator()
	var batch []string
	flush := func() {
		if len(batch) > 0 {
			_ = rdb.Unlink(ctx, batch...).Err()
			n += len(batch)
			batch = batch[:0]
		}
	}
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 1000 {
			flush()
		}
	}
	flush()
	log.Info("deleted the deployment's redis keys", "prefix", prefix, "keys", n, "err", iter.Err())
}
