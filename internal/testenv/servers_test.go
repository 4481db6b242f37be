package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/internal/freeport"
)

func TestFreePort(t *testing.T) {
	p := FreePort(t)
	if p <= 0 || p > 65535 {
		t.Fatalf("FreePort = %d", p)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		t.Fatalf("port %d from FreePort is not free: %v", p, err)
	}
	defer func() { _ = l.Close() }()
	if freeport.Free(p) {
		t.Fatalf("freeport.Free(%d) = true while it is listened on", p)
	}
}

// fakeTB records Skipf and Fatalf instead of ending the goroutine.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Skipf(format string, args ...any)  { f.skipped = fmt.Sprintf(format, args...) }
func (f *fakeTB) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }

func TestUnavailableFailsUnlessSkipAllowed(t *testing.T) {
	t.Setenv(AllowSkipEnv, "")
	f := &fakeTB{TB: t}
	unavailable(f, "redis-server not found")
	if f.failed == "" || f.skipped != "" {
		t.Fatalf("without %s: failed=%q skipped=%q, want a failure", AllowSkipEnv, f.failed, f.skipped)
	}
	if !strings.Contains(f.failed, "redis-server not found") {
		t.Errorf("failure message %q lacks the reason", f.failed)
	}

	t.Setenv(AllowSkipEnv, "1")
	f = &fakeTB{TB: t}
	unavailable(f, "redis-server not found")
	if f.skipped == "" || f.failed != "" {
		t.Fatalf("with %s=1: failed=%q skipped=%q, want a skip", AllowSkipEnv, f.failed, f.skipped)
	}
}

func TestVersionLess(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{{"9.6", "15", true}, {"15", "9.6", false}, {"13", "15", true}, {"15", "15", false}, {"15", "15.1", true}} {
		if got := versionLess(c.a, c.b); got != c.want {
			t.Errorf("versionLess(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func pingWithin(rdb *redis.Client, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return rdb.Ping(ctx).Err()
}

func TestRedisKillRestart(t *testing.T) {
	t.Parallel()
	s := StartRedis(t)
	if !Loopback(s.Addr()) || !strings.HasPrefix(s.URL(), "redis://127.0.0.1:") {
		t.Fatalf("Addr %q / URL %q are not loopback", s.Addr(), s.URL())
	}
	opt, err := redis.ParseURL(s.URL())
	if err != nil || opt.Addr != s.Addr() {
		t.Fatalf("URL %q parses to %v, %v", s.URL(), opt, err)
	}
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: 300 * time.Millisecond, ContextTimeoutEnabled: true})
	defer func() { _ = rdb.Close() }()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	pid := s.Pid()

	s.Kill()
	if err := pingWithin(rdb, time.Second); err == nil {
		t.Fatal("PING answered after Kill")
	}
	s.Kill() // killing a dead server is a no-op

	s.Restart()
	if s.Pid() == pid || s.Pid() == 0 {
		t.Fatalf("pid after Restart = %d, before %d", s.Pid(), pid)
	}
	if err := pingWithin(rdb, time.Second); err != nil {
		t.Fatalf("PING on the same address after Restart: %v", err)
	}
	// No persistence by default: the key is gone.
	if n, err := rdb.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS k after restart = %d, %v; want 0", n, err)
	}
	if err := s.Client().Ping(ctx).Err(); err != nil {
		t.Fatalf("Client() after restart: %v", err)
	}
}

func TestRedisStopCont(t *testing.T) {
	t.Parallel()
	s := StartRedis(t)
	rdb := s.Client()
	if err := pingWithin(rdb, time.Second); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	start := time.Now()
	if err := pingWithin(rdb, 200*time.Millisecond); err == nil {
		s.Cont()
		t.Fatal("PING answered while the server was stopped")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("PING with a 200ms deadline took %v against a stopped server", d)
	}
	s.Cont()
	if err := pingWithin(rdb, 2*time.Second); err != nil {
		t.Fatalf("PING after Cont: %v", err)
	}
}

func TestRedisExtraArgs(t *testing.T) {
	t.Parallel()
	s := StartRedis(t, "--maxmemory", "1mb", "--appendonly", "yes")
	got, err := s.Client().ConfigGet(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if got["maxmemory"] != "1048576" || got["appendonly"] != "yes" || got["save"] != "" {
		t.Fatalf("maxmemory=%q appendonly=%q save=%q, want 1048576, yes (appended args win), empty",
			got["maxmemory"], got["appendonly"], got["save"])
	}
	if got["bind"] != "127.0.0.1" {
		t.Fatalf("bind = %q, want 127.0.0.1", got["bind"])
	}
}

func TestRedisCluster(t *testing.T) {
	t.Parallel()
	c := StartRedisCluster(t, 3)
	if len(c.Addrs()) != 3 || len(c.Nodes()) != 3 {
		t.Fatalf("Addrs = %v", c.Addrs())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rdb := c.Client()
	slots := map[int64]bool{}
	for i := 0; i < 30; i++ {
		key := fmt.Sprintf("key-%d", i)
		if err := rdb.Set(ctx, key, i, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
		slot, err := rdb.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		slots[slot] = true
	}
	if len(slots) < 3 {
		t.Fatalf("keys fell in only %d slots", len(slots))
	}
	// Every master must hold some of the keys: they really are spread.
	for _, n := range c.Nodes() {
		size, err := n.Client().DBSize(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if size == 0 {
			t.Errorf("node %s holds no key", n.Addr())
		}
	}
	for i := 0; i < 30; i++ {
		v, err := rdb.Get(ctx, fmt.Sprintf("key-%d", i)).Int()
		if err != nil || v != i {
			t.Fatalf("GET key-%d = %d, %v", i, v, err)
		}
	}
}

func pgQuery(url string, d time.Duration, sql string, args ...any) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var n int
	err = conn.QueryRow(ctx, sql, args...).Scan(&n)
	return n, err
}

func TestPostgresKillRestart(t *testing.T) {
	t.Parallel()
	s := StartPostgres(t)
	if !Loopback(s.Addr()) || !strings.HasPrefix(s.URL(), "postgres://postgres@127.0.0.1:") {
		t.Fatalf("Addr %q / URL %q", s.Addr(), s.URL())
	}
	dbURL := CreateDatabase(t, s.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"CREATE TABLE t (n int)",
		"INSERT INTO t VALUES (1), (2), (3)",
		"CHECKPOINT",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	pid := s.Pid()
	children := descendants(pid)
	if len(children) == 0 {
		t.Fatal("postmaster has no children (backends, checkpointer...)")
	}

	s.Kill()
	for _, c := range children {
		if alive(c) {
			t.Errorf("postmaster child %d still alive after Kill", c)
		}
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("open connection still works after Kill")
	}
	_ = conn.Close(context.Background())
	if _, err := pgQuery(s.URL(), time.Second, "SELECT 1"); err == nil {
		t.Fatal("new connection works after Kill")
	}

	s.Restart()
	if s.Pid() == pid || s.Pid() == 0 {
		t.Fatalf("pid after Restart = %d, before %d", s.Pid(), pid)
	}
	n, err := pgQuery(dbURL, 5*time.Second, "SELECT count(*) FROM t")
	if err != nil || n != 3 {
		t.Fatalf("rows after restart = %d, %v; want 3 (same data directory)", n, err)
	}
}

// alive reports whether pid is a live process (not gone, not a zombie),
// waiting up to 2 s for it to die.
func alive(pid int) bool {
	dead := Poll(2*time.Second, func() error {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return nil
		}
		if f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:])); len(f) > 0 && f[0] == "Z" {
			return nil
		}
		return fmt.Errorf("process %d alive", pid)
	})
	return dead != nil
}

func TestPostgresStopCont(t *testing.T) {
	t.Parallel()
	s := StartPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	s.Stop()
	// Both a new connection and one opened before Stop (its backend is paused
	// too) get no answer.
	if _, err := pgQuery(s.URL(), 200*time.Millisecond, "SELECT 1"); err == nil {
		s.Cont()
		t.Fatal("new connection answered while the server was stopped")
	}
	qctx, qcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = conn.Exec(qctx, "SELECT 1")
	qcancel()
	if err == nil {
		s.Cont()
		t.Fatal("existing connection answered while the server was stopped")
	}
	s.Cont()
	if n, err := pgQuery(s.URL(), 5*time.Second, "SELECT 7"); err != nil || n != 7 {
		t.Fatalf("after Cont: %d, %v", n, err)
	}
}
