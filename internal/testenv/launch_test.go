package testenv

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// A launched Redis loses its data when it crashes and comes back on the
// same port; Close removes its directory.
func TestLaunchRedisCrashRelaunch(t *testing.T) {
	t.Parallel()
	s, err := LaunchRedis()
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true})
	defer func() { _ = rdb.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Crash(); err != nil || s.Running() {
		t.Fatalf("crash: %v, running %v", err, s.Running())
	}
	if err := s.Relaunch(); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("after a crash the key exists %d times (%v), want 0", n, err)
	}
	dir := s.owned
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("Close left %s: %v", dir, err)
	}
}

// A clean shutdown of a launched PostgreSQL keeps every committed row.
func TestLaunchPostgresShutdownKeepsCommits(t *testing.T) {
	t.Parallel()
	s, err := LaunchPostgres()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	exec := func(sql string) error {
		conn, err := pgx.Connect(ctx, s.URL())
		if err != nil {
			return err
		}
		defer func() { _ = conn.Close(context.Background()) }()
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE TABLE t (n int); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(); err != nil || s.Running() {
		t.Fatalf("shutdown: %v, running %v", err, s.Running())
	}
	if err := exec("SELECT 1"); err == nil {
		t.Fatal("a stopped server answered")
	}
	if err := s.Relaunch(); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 1 {
		t.Fatalf("after a clean shutdown: %d rows (%v), want 1", n, err)
	}
}

// A launched process can be paused, resumed, killed and launched again.
func TestLaunchProcessSignals(t *testing.T) {
	t.Parallel()
	bin, ok := lookBinary("sleep")
	if !ok {
		t.Skip("no sleep binary")
	}
	p, err := Launch("sleep", bin, []string{"60"}, nil, filepath.Join(t.TempDir(), "sleep.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Kill() }()
	first := p.Pid()
	for _, sig := range []syscall.Signal{syscall.SIGSTOP, syscall.SIGCONT} {
		if err := p.Signal(sig); err != nil {
			t.Fatalf("%v: %v", sig, err)
		}
	}
	if err := p.Kill(); err != nil || p.Running() {
		t.Fatalf("kill: %v, running %v", err, p.Running())
	}
	if err := p.Relaunch(); err != nil || !p.Running() || p.Pid() == first {
		t.Fatalf("relaunch: %v, running %v, pid %d (was %d)", err, p.Running(), p.Pid(), first)
	}
}
