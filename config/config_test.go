package config

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestEnvironmentThenFlags(t *testing.T) {
	t.Setenv("BUFFERD_ADDR", "127.0.0.1:9000")
	t.Setenv("BUFFERD_SYNC_INTERVAL", "5s")
	t.Setenv("BUFFERD_ADMIN_TOKEN", "secret")
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:9000" || c.SyncInterval != 5*time.Second || c.AdminToken != "secret" {
		t.Fatalf("from env: %+v", c)
	}
	if c.ChainKind != "blockcenter" {
		t.Fatalf("default chain kind %q", c.ChainKind)
	}
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	c.Bind(fs, "addr", "sync-interval")
	if err := fs.Parse([]string{"--addr", "127.0.0.1:9001"}); err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:9001" {
		t.Fatalf("flag did not override: %q", c.Addr)
	}
	if c.SyncInterval != 5*time.Second {
		t.Fatalf("unset flag lost the env value: %s", c.SyncInterval)
	}
}

func TestBadEnvironmentIsAnError(t *testing.T) {
	t.Setenv("BUFFERD_SYNC_INTERVAL", "soon")
	if _, err := Load(); err == nil {
		t.Fatal("bad duration accepted")
	}
}

func TestHelpNamesEveryVariable(t *testing.T) {
	h := Help()
	for _, v := range []string{"BUFFERD_DATABASE_URL", "BUFFERD_REDIS_URL", "BUFFERD_CHAIN_URL", "BUFFERD_CHAIN_KIND", "BUFFERD_ADMIN_TOKEN", "BUFFERD_ADDR"} {
		if !strings.Contains(h, v) {
			t.Errorf("help lacks %s", v)
		}
	}
}

func TestRedisAddrs(t *testing.T) {
	c := Config{RedisURL: "redis://a:1, redis://b:2,,"}
	if got := c.RedisAddrs(); len(got) != 2 || got[1] != "redis://b:2" {
		t.Fatalf("got %q", got)
	}
}

func TestProtectionSettings(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.ReserveRate != 50 || c.ReserveBurst != 100 || c.CORSOrigins != "" || c.LegacyCORS != "*" || c.ProxyHeader != "" {
		t.Fatalf("defaults: rate %v burst %d cors %q legacy %q proxy %q", c.ReserveRate, c.ReserveBurst, c.CORSOrigins, c.LegacyCORS, c.ProxyHeader)
	}
	t.Setenv("BUFFERD_RESERVE_RATE", "2.5")
	t.Setenv("BUFFERD_RESERVE_BURST", "7")
	t.Setenv("BUFFERD_CORS_ORIGINS", "https://app.example")
	t.Setenv("BUFFERD_LEGACY_CORS_ORIGINS", "none")
	t.Setenv("BUFFERD_TRUSTED_PROXY_HEADER", "X-Real-IP")
	if c, err = Load(); err != nil {
		t.Fatal(err)
	}
	if c.ReserveRate != 2.5 || c.ReserveBurst != 7 || c.CORSOrigins != "https://app.example" || c.LegacyCORS != "none" || c.ProxyHeader != "X-Real-IP" {
		t.Fatalf("from env: %+v", c)
	}
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	c.Bind(fs, "reserve-rate", "reserve-burst", "cors-origins", "legacy-cors-origins", "trusted-proxy-header")
	if err := fs.Parse([]string{"--reserve-rate", "0", "--reserve-burst=3"}); err != nil {
		t.Fatal(err)
	}
	if c.ReserveRate != 0 || c.ReserveBurst != 3 || c.ProxyHeader != "X-Real-IP" {
		t.Fatalf("flags: rate %v burst %d proxy %q", c.ReserveRate, c.ReserveBurst, c.ProxyHeader)
	}
	t.Setenv("BUFFERD_RESERVE_BURST", "many")
	if _, err := Load(); err == nil {
		t.Fatal("bad burst accepted")
	}
}

func TestLoadNamesTheVariableAndTheFlag(t *testing.T) {
	t.Setenv("BUFFERD_SYNC_INTERVAL", "abc")
	t.Setenv("BUFFERD_DATABASE_MAX_CONNS", "many")
	_, err := Load()
	for _, want := range []string{`BUFFERD_SYNC_INTERVAL="abc": invalid duration`, "(flag --sync-interval)",
		`BUFFERD_DATABASE_MAX_CONNS="many": invalid integer (flag --database-max-conns)`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load: %v, want %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "SyncInterval") {
		t.Errorf("Load names the Go field: %v", err)
	}
}

func TestCheck(t *testing.T) {
	all := []string{"addr", "metrics-addr", "api-metrics-addr", "pprof-addr", "database-url", "redis-url", "chain-url",
		"chain-kind", "chain-timeout", "sync-interval", "database-max-conns", "reserve-rate", "log-level", "log-format"}
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	c.Bind(fs, all...)
	if err := c.CheckWith(fs, nil, all...); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	for _, bad := range []struct{ flag, value, want string }{
		{"addr", "3100", "--addr"},
		{"redis-url", "nonsense", "--redis-url"},
		{"redis-url", "redis://", "--redis-url"},
		{"database-url", "mysql://x", "--database-url"},
		{"database-url", "postgres://u:hidden@h:0x/db", `"postgres://***@h:0x/db"`},
		{"chain-url", "127.0.0.1:3101", "--chain-url"},
		{"chain-kind", "explorer", "want blockcenter or bytomd"},
		{"sync-interval", "0s", "above 0"},
		{"database-max-conns", "0", "at least 1"},
		{"reserve-rate", "-1", "--reserve-rate"},
		{"log-format", "xml", "json or text"},
	} {
		c2 := c
		fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
		c2.Bind(fs, all...)
		if err := fs.Parse([]string{"--" + bad.flag + "=" + bad.value}); err != nil {
			t.Fatal(err)
		}
		err := c2.CheckWith(fs, nil, all...)
		if err == nil || !strings.Contains(err.Error(), bad.want) || strings.Contains(err.Error(), "hidden") {
			t.Errorf("--%s=%s: %v, want %q", bad.flag, bad.value, err, bad.want)
		}
	}
	for _, good := range []string{"127.0.0.1:6379", "redis://u:p@h:1/2", "rediss://h:1,h2:2", "redis+sentinel://s1,s2:5/mymaster"} {
		c2 := c
		c2.RedisURL = good
		if err := c2.CheckWith(fs, nil, "redis-url"); err != nil {
			t.Errorf("%s: %v", good, err)
		}
	}
}
