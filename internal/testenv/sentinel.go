package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// StartRedisSentinel starts a private Redis Sentinel (redis-server --sentinel)
// on a free loopback port that monitors master under masterName, waits until
// it answers PING and kills it when the test ends. It is a quorum of one: it
// alone declares the master down (after 1 s without an answer) and runs the
// failover. The master's --requirepass, if any, is its auth-pass (the
// replicas must share it); args are appended to its command line, e.g.
// "--requirepass", PASSWORD for a password of the sentinel itself.
func StartRedisSentinel(t testing.TB, master *RedisServer, masterName string, args ...string) *RedisServer {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	if err := os.WriteFile(conf, []byte(sentinelConf(master, masterName)), 0o600); err != nil {
		t.Fatalf("testenv: sentinel config: %v", err)
	}
	return startRedis(t, func() int { return FreePort(t) }, []string{conf, "--sentinel"}, args)
}

// sentinelConf is the configuration file of a sentinel monitoring master.
func sentinelConf(master *RedisServer, name string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "sentinel monitor %s 127.0.0.1 %d 1\n", name, master.port)
	fmt.Fprintf(&b, "sentinel down-after-milliseconds %s 1000\n", name)
	fmt.Fprintf(&b, "sentinel failover-timeout %s 10000\n", name)
	if master.password != "" {
		fmt.Fprintf(&b, "sentinel auth-pass %s %s\n", name, master.password)
	}
	return b.String()
}
