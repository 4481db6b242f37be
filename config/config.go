// Package config reads bufferd's configuration from BUFFERD_* environment
// variables (github.com/caarlos0/env) and lets command-line flags override them.
package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/spf13/pflag"
)

// Config is every setting of every subcommand. The `flag` tag names the flag
// that overrides the variable; `help` is what --help says about it.
type Config struct {
	Addr             string        `env:"BUFFERD_ADDR" envDefault:"127.0.0.1:3100" flag:"addr" help:"HTTP listen address of the API"`
	DatabaseURL      string        `env:"BUFFERD_DATABASE_URL" envDefault:"postgres://postgres@127.0.0.1:5432/bufferd?sslmode=disable" flag:"database-url" help:"PostgreSQL URL (postgres://...)"`
	DatabaseMaxConns int           `env:"BUFFERD_DATABASE_MAX_CONNS" envDefault:"10" flag:"database-max-conns" help:"most PostgreSQL connections one process opens"`
	RedisURL         string        `env:"BUFFERD_REDIS_URL" envDefault:"redis://127.0.0.1:6379/0" flag:"redis-url" help:"Redis URL: redis://[[user]:password@]host:port/db (rediss:// with TLS) is one server; several comma-separated are a Redis Cluster's seeds (the first URL's user, password and TLS apply to every node) or independent servers whose majority the leadership and rebuild locks need (Redlock; the first holds the reservations); redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master-name[/db][?sentinel_password=...] (rediss+sentinel:// with TLS) is the master Redis Sentinel names, the password being the master's"`
	RedisPrefix      string        `env:"BUFFERD_REDIS_PREFIX" envDefault:"bufferd:" flag:"redis-prefix" help:"prefix of every Redis key (one bufferd per prefix)"`
	ChainURL         string        `env:"BUFFERD_CHAIN_URL" envDefault:"http://127.0.0.1:3101" flag:"chain-url" help:"base URL of the chain source"`
	ChainKind        string        `env:"BUFFERD_CHAIN_KIND" envDefault:"blockcenter" flag:"chain-kind" help:"chain source: blockcenter | bytomd"`
	ChainTimeout     time.Duration `env:"BUFFERD_CHAIN_TIMEOUT" envDefault:"10s" flag:"chain-timeout" help:"timeout of one call to the chain source"`
	AdminToken       string        `env:"BUFFERD_ADMIN_TOKEN" flag:"admin-token" help:"bearer token of the admin routes (empty: admin routes refused)"`
	SyncInterval     time.Duration `env:"BUFFERD_SYNC_INTERVAL" envDefault:"2s" flag:"sync-interval" help:"how often the syncer polls each pool"`
	SyncBackoff      time.Duration `env:"BUFFERD_SYNC_MAX_BACKOFF" envDefault:"1m" flag:"sync-max-backoff" help:"longest wait before retrying a failing pool"`
	InstanceID       string        `env:"BUFFERD_INSTANCE_ID" flag:"instance-id" help:"this replica's name in leader election (default <hostname>-<pid>)"`
	LeaderTTL        time.Duration `env:"BUFFERD_LEADER_TTL" envDefault:"9s" flag:"leader-ttl" help:"lease of the sync jobs' leader, renewed every third of it"`
	IndexStartDepth  uint64        `env:"BUFFERD_INDEX_START_DEPTH" envDefault:"10000" flag:"index-start-depth" help:"with a bytomd node: how many blocks below the tip the chain index starts a pool registered without from_height"`
	IndexPoll        time.Duration `env:"BUFFERD_INDEX_POLL" envDefault:"250ms" flag:"index-poll" help:"with a bytomd node: how often the chain index asks for new blocks and the mempool"`
	SweepInterval    time.Duration `env:"BUFFERD_SWEEP_INTERVAL" envDefault:"30s" flag:"sweep-interval" help:"how often the syncer checks that Redis, the reservations and the chain agree for each pool, and repairs them"`
	PprofAddr        string        `env:"BUFFERD_PPROF_ADDR" flag:"pprof-addr" help:"listen address of Go's /debug/pprof/ profiles (empty: off); keep it on loopback"`
	MetricsAddr      string        `env:"BUFFERD_METRICS_ADDR" envDefault:"127.0.0.1:9100" flag:"metrics-addr" help:"listen address of /metrics, /livez and /readyz of the syncer"`
	APIMetricsAddr   string        `env:"BUFFERD_API_METRICS_ADDR" flag:"api-metrics-addr" help:"listen address of the API's /metrics, /livez and /readyz; when set, the API's own address no longer serves /metrics (empty: /metrics on the API's address)"`
	ReserveRate      float64       `env:"BUFFERD_RESERVE_RATE" envDefault:"50" flag:"reserve-rate" help:"reserve requests a second per client IP, v1 and legacy together (0: no limit)"`
	ReserveBurst     int           `env:"BUFFERD_RESERVE_BURST" envDefault:"100" flag:"reserve-burst" help:"reserve requests a client IP may make at once before the rate applies"`
	CORSOrigins      string        `env:"BUFFERD_CORS_ORIGINS" flag:"cors-origins" help:"browser origins allowed on /v1: * or comma-separated scheme://host[:port] (empty or none: no CORS)"`
	LegacyCORS       string        `env:"BUFFERD_LEGACY_CORS_ORIGINS" envDefault:"*" flag:"legacy-cors-origins" help:"browser origins allowed on /dapp (none: no CORS)"`
	ProxyHeader      string        `env:"BUFFERD_TRUSTED_PROXY_HEADER" flag:"trusted-proxy-header" help:"header with the client IP set by your reverse proxy, e.g. X-Real-IP (empty: the peer address)"`
	LegacyListSample int           `env:"BUFFERD_LEGACY_LIST_SAMPLE" envDefault:"8" flag:"legacy-list-sample" help:"/dapp/list-utxos without start and limit (the frontend's call): with at least twice this many free UTXOs, a sample of about this many spread over the amounts, different for each caller, so that frontends do not all pick the same UTXO (0: the plain ranking)"`
	ShutdownGrace    time.Duration `env:"BUFFERD_SHUTDOWN_TIMEOUT" envDefault:"15s" flag:"shutdown-timeout" help:"how long a stopping process lets in-flight work finish"`
	LogLevel         string        `env:"BUFFERD_LOG_LEVEL" envDefault:"info" flag:"log-level" help:"debug | info | warn | error"`
	LogFormat        string        `env:"BUFFERD_LOG_FORMAT" envDefault:"json" flag:"log-format" help:"json | text"`
}

// Load reads the environment.
func Load() (Config, error) {
	var c Config
	if err := env.Parse(&c); err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// Bind registers on fs a flag for each named setting (by its flag name), with
// the value already read from the environment as default, so a flag given on the
// command line overrides the variable.
func (c *Config) Bind(fs *pflag.FlagSet, names ...string) {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for _, name := range names {
		f, ok := t.FieldByNameFunc(func(n string) bool {
			sf, _ := t.FieldByName(n)
			return sf.Tag.Get("flag") == name
		})
		if !ok {
			panic("config: no setting with flag " + name)
		}
		usage := f.Tag.Get("help") + " (env " + f.Tag.Get("env") + ")"
		p := v.FieldByIndex(f.Index).Addr().Interface()
		switch p := p.(type) {
		case *string:
			fs.StringVar(p, name, *p, usage)
		case *time.Duration:
			fs.DurationVar(p, name, *p, usage)
		case *float64:
			fs.Float64Var(p, name, *p, usage)
		case *int:
			fs.IntVar(p, name, *p, usage)
		case *uint64:
			fs.Uint64Var(p, name, *p, usage)
		default:
			panic("config: unsupported type of " + f.Name)
		}
	}
}

// Help returns a table of every environment variable with its default and meaning.
func Help() string {
	var b strings.Builder
	t := reflect.TypeOf(Config{})
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		def := f.Tag.Get("envDefault")
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(&b, "  %-29s %s (default %s; flag --%s)\n", f.Tag.Get("env"), f.Tag.Get("help"), def, f.Tag.Get("flag"))
	}
	return b.String()
}

// RedisAddrs splits RedisURL into its comma-separated parts (not meant for a
// redis+sentinel:// URL, whose list of sentinels has commas too).
func (c *Config) RedisAddrs() []string {
	var out []string
	for _, p := range strings.Split(c.RedisURL, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
