package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/bufferd/bufferd/config"
)

func TestUnknownSubcommandsAndBadFlagsExitTwoWithUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"nosuch"}, {"pool", "nosuch"}, {"migrate", "nosuch"}, {"bench", "nosuch"}, {"syncer", "extra"},
		{"api", "--nosuch"}, {"migrate", "up", "--nosuch"},
	} {
		code, out := run(t, nil, args...)
		if code != exitUsage || !strings.Contains(out, "unknown") || !strings.Contains(out, "Usage:") {
			t.Errorf("bufferd %s: exit %d, want 2 with usage:\n%s", strings.Join(args, " "), code, out)
		}
	}
	for _, args := range [][]string{{"version"}, {"pool"}, {"--help"}, {"bench", "--help"}} {
		if code, out := run(t, nil, args...); code != 0 {
			t.Errorf("bufferd %s: exit %d, want 0:\n%s", strings.Join(args, " "), code, out)
		}
	}
}

func TestConfigErrorsNameTheVariableAndTheFlag(t *testing.T) {
	t.Parallel()
	code, out := run(t, []string{"BUFFERD_SYNC_INTERVAL=abc"}, "syncer")
	if code != exitUsage || !strings.Contains(out, `BUFFERD_SYNC_INTERVAL="abc": invalid duration`) ||
		!strings.Contains(out, "(flag --sync-interval)") || strings.Contains(out, "SyncInterval") {
		t.Errorf("bad BUFFERD_SYNC_INTERVAL: exit %d:\n%s", code, out)
	}
	code, out = run(t, nil, "syncer", "--sync-interval=abc")
	if code != exitUsage || !strings.Contains(out, `--sync-interval="abc": invalid duration (env BUFFERD_SYNC_INTERVAL)`) {
		t.Errorf("bad --sync-interval: exit %d:\n%s", code, out)
	}
	code, out = run(t, []string{"BUFFERD_DATABASE_URL=postgres://u:secret@h:99999/x"}, "migrate", "up")
	if code != exitUsage || !strings.Contains(out, "BUFFERD_DATABASE_URL=") || strings.Contains(out, "secret") {
		t.Errorf("bad BUFFERD_DATABASE_URL: exit %d (want 2, password hidden):\n%s", code, out)
	}
}

// listen opens a loopback listener that records whether anything connected.
func listen(t *testing.T) (addr string, connected func() bool) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{}, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
			select {
			case got <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return ln.Addr().String(), func() bool {
		select {
		case <-got:
			return true
		case <-time.After(100 * time.Millisecond):
			return false
		}
	}
}

func TestSettingsAreCheckedBeforeAnyConnection(t *testing.T) {
	t.Parallel()
	db, dbConnected := listen(t)
	rd, redisConnected := listen(t)
	base := []string{"BUFFERD_DATABASE_URL=postgres://postgres@" + db + "/x?sslmode=disable&connect_timeout=1",
		"BUFFERD_REDIS_URL=redis://" + rd + "/0", "BUFFERD_METRICS_ADDR=127.0.0.1:0", "BUFFERD_ADDR=127.0.0.1:0"}
	for _, c := range []struct {
		bad  []string
		args []string
		want string
	}{
		{[]string{"BUFFERD_REDIS_URL=nonsense"}, []string{"api"}, `BUFFERD_REDIS_URL="nonsense"`},
		{[]string{"BUFFERD_REDIS_URL=redis://" + rd + "/x"}, []string{"api"}, "invalid database number"},
		{[]string{"BUFFERD_LEADER_TTL=-1s"}, []string{"syncer"}, "BUFFERD_LEADER_TTL"},
		{[]string{"BUFFERD_CHAIN_KIND=nope"}, []string{"syncer"}, "BUFFERD_CHAIN_KIND"},
		{[]string{"BUFFERD_CHAIN_URL=localhost"}, []string{"syncer"}, "BUFFERD_CHAIN_URL"},
		{[]string{"BUFFERD_ADDR=3100"}, []string{"api"}, "BUFFERD_ADDR"},
		{[]string{"BUFFERD_CORS_ORIGINS=app.example"}, []string{"api"}, "CORS"},
		{[]string{"BUFFERD_LOG_LEVEL=loud"}, []string{"syncer"}, "BUFFERD_LOG_LEVEL"},
		{nil, []string{"syncer", "--database-max-conns=0"}, "--database-max-conns"},
	} {
		env := append(append([]string{}, base...), c.bad...)
		code, out := run(t, env, c.args...)
		if code != exitUsage || !strings.Contains(out, c.want) {
			t.Errorf("%v %v: exit %d, want 2 naming %q:\n%s", c.bad, c.args, code, c.want, out)
		}
		if dbConnected() || redisConnected() {
			t.Errorf("%v %v: a connection was tried before the settings were checked:\n%s", c.bad, c.args, out)
		}
	}
}

func TestNoFlagUsageHasBackquotes(t *testing.T) {
	t.Parallel()
	// pflag takes a `quoted` word of a usage as the flag's value name.
	var walk func(*cobra.Command)
	walk = func(cmd *cobra.Command) {
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if strings.Contains(f.Usage, "`") {
				t.Errorf("%s --%s: backquotes in %q", cmd.CommandPath(), f.Name, f.Usage)
			}
		})
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	if code := execute(root, []string{"bench", "--help"}, io.Discard); code != 0 {
		t.Fatalf("bench --help: exit %d", code)
	}
	if !strings.Contains(out.String(), "--floor string ") {
		t.Errorf("bench --help shows --floor without its value type:\n%s", out.String())
	}
	// Flag descriptions wrap (at 100 columns off a terminal); only a word
	// longer than that may stick out.
	for _, line := range strings.Split(out.String(), "\n") {
		if len(line) > 100 && len(strings.Fields(line)) > 1 {
			t.Errorf("bench --help: a line of %d columns: %q", len(line), line)
		}
	}
}

func TestGoRedisLogsThroughSlog(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	_, err = newLogger(&config.Config{LogLevel: "info", LogFormat: "json"})
	os.Stderr = stderr
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		logging.Enable()
		_, _ = newLogger(&config.Config{LogLevel: "info", LogFormat: "json"})
	})
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 50 * time.Millisecond})
	defer func() { _ = rdb.Close() }()
	// go-redis warns that it truncates a TTL under a millisecond.
	_ = rdb.Set(context.Background(), "k", "v", time.Microsecond).Err()
	_ = w.Close()
	sc := bufio.NewScanner(r)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		var rec map[string]any
		if strings.Contains(sc.Text(), "truncating to 1ms") {
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec["component"] != "go-redis" || rec["level"] != "WARN" {
				t.Fatalf("go-redis's message is not a JSON log record (%v): %s", err, sc.Text())
			}
			return
		}
	}
	t.Fatalf("go-redis's message not logged; stderr had:\n%s", strings.Join(lines, "\n"))
}

func TestFlagErrorsNameTheVariableOnlyOfSettings(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	code := execute(newRootCmd(), []string{"bench", "chaos", "--sweep-interval=x"}, &out)
	if first, _, _ := strings.Cut(out.String(), "\n"); code != exitUsage || strings.Contains(first, "BUFFERD_") ||
		!strings.Contains(first, "--sweep-interval") {
		t.Errorf("bench chaos --sweep-interval=x (its own flag): exit %d:\n%s", code, out.String())
	}
	out.Reset()
	if code := execute(newRootCmd(), []string{"syncer", "--sweep-interval=x"}, &out); code != exitUsage ||
		!strings.Contains(out.String(), `--sweep-interval="x": invalid duration (env BUFFERD_SWEEP_INTERVAL)`) {
		t.Errorf("syncer --sweep-interval=x: exit %d:\n%s", code, out.String())
	}
}
