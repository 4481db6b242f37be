// Package config reads bufferd's configuration from BUFFERD_* environment
// variables (github.com/caarlos0/env) and lets command-line flags override them.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/pflag"
)

// Config is every setting of every subcommand. The `flag` tag names the flag
// that overrides the variable; `help` is what --help says about it.
type Config struct {
	Addr             string        `env:"BUFFERD_ADDR" envDefault:"127.0.0.1:3100" flag:"addr" help:"HTTP listen address of the API"`
	DatabaseURL      string        `env:"BUFFERD_DATABASE_URL" envDefault:"postgres://postgres@127.0.0.1:5432/bufferd?sslmode=disable" flag:"database-url" help:"PostgreSQL URL (postgres://...)"`
	DatabaseMaxConns int           `env:"BUFFERD_DATABASE_MAX_CONNS" envDefault:"10" flag:"database-max-conns" help:"most PostgreSQL connections one process opens"`
	RedisURL         string        `env:"BUFFERD_REDIS_URL" envDefault:"redis://127.0.0.1:6379/0" flag:"redis-url" help:"Redis URL: redis://[[user]:password@]host:port/db (rediss:// with TLS) is one server; several comma-separated are a Redis Cluster's seeds (the first URL's user, password and TLS apply to every node) or independent servers whose majority the leadership and rebuild locks need (Redlock; the first holds the reservations); redis+sentinel://[[user]:password@]sentinels/master[/db] (sentinels: host[:port], comma-separated; master: its name; option ?sentinel_password=...; rediss+sentinel:// with TLS) is the master Redis Sentinel names, the password being the master's"`
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

// Load reads the environment. A value that does not parse is reported as a
// *SettingError naming the variable and its flag (several are joined).
func Load() (Config, error) {
	var c Config
	err := env.Parse(&c)
	var agg env.AggregateError
	if err == nil || !errors.As(err, &agg) {
		return c, err
	}
	t := reflect.TypeOf(c)
	errs := make([]error, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if !errors.As(e, &pe) {
			errs = append(errs, fmt.Errorf("config: %w", e))
			continue
		}
		f, ok := t.FieldByName(pe.Name)
		if !ok {
			errs = append(errs, fmt.Errorf("config: %w", e))
			continue
		}
		name := f.Tag.Get("env")
		errs = append(errs, &SettingError{Env: name, Flag: f.Tag.Get("flag"), Value: os.Getenv(name), Reason: "invalid " + typeName(f.Type)})
	}
	return c, errors.Join(errs...)
}

// SettingError is a setting with a bad value, from its environment variable
// or (FromFlag) its flag.
type SettingError struct {
	Env, Flag, Value string
	FromFlag         bool
	Reason           string
}

func (e *SettingError) Error() string {
	v := strconv.Quote(redactURL(e.Value))
	if e.FromFlag {
		return fmt.Sprintf("--%s=%s: %s (env %s)", e.Flag, v, e.Reason, e.Env)
	}
	return fmt.Sprintf("%s=%s: %s (flag --%s)", e.Env, v, e.Reason, e.Flag)
}

// typeName is how a setting's type is named in errors.
func typeName(t reflect.Type) string {
	switch {
	case t == reflect.TypeOf(time.Duration(0)):
		return "duration (e.g. 250ms, 2s, 1m)"
	case t.Kind() == reflect.Float64:
		return "number"
	case t.Kind() == reflect.Uint64:
		return "integer (>= 0)"
	case t.Kind() == reflect.Int:
		return "integer"
	}
	return t.String()
}

// redactURL hides the user information (passwords) of the URLs in s, even of
// those that do not parse.
func redactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		scheme, rest, ok := strings.Cut(p, "://")
		if !ok {
			continue
		}
		host, tail := rest, ""
		if j := strings.IndexAny(rest, "/?#"); j >= 0 {
			host, tail = rest[:j], rest[j:]
		}
		if j := strings.LastIndexByte(host, '@'); j >= 0 {
			host = "***@" + host[j+1:]
		}
		if path, _, ok := strings.Cut(tail, "?"); ok && strings.Contains(strings.ToLower(tail), "password") {
			tail = path + "?***"
		}
		parts[i] = scheme + "://" + host + tail
	}
	return strings.Join(parts, ",")
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

// Rule is a check of a setting's value that the config package cannot make
// itself (a parser that lives with the code using the setting): it returns
// what is wrong, or "".
type Rule func(v any) string

// CheckWith validates the named settings (by flag name) without connecting
// to anything: addresses are host:port, URLs parse (names are not resolved),
// durations and sizes are in range, the log level and format exist; then it
// applies rules, by flag name, to the settings that pass those checks. fs,
// the flag set the settings were bound to, tells a flag's value from a
// variable's.
func (c *Config) CheckWith(fs *pflag.FlagSet, rules map[string]Rule, names ...string) error {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	var errs []error
	for _, name := range names {
		f, ok := fieldOfFlag(t, name)
		if !ok {
			panic("config: no setting with flag " + name)
		}
		fv := v.FieldByIndex(f.Index)
		reason := check(name, fv.Interface())
		if rule := rules[name]; reason == "" && rule != nil {
			reason = rule(fv.Interface())
		}
		if reason == "" {
			continue
		}
		e := &SettingError{Env: f.Tag.Get("env"), Flag: name, Reason: reason, Value: fmt.Sprint(fv.Interface())}
		if fl := fs.Lookup(name); fl != nil && fl.Changed {
			e.FromFlag = true
		} else if raw, set := os.LookupEnv(e.Env); set {
			e.Value = raw
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// EnvOfFlag is the environment variable of the setting whose flag is name.
func EnvOfFlag(name string) (string, bool) {
	f, ok := fieldOfFlag(reflect.TypeOf(Config{}), name)
	return f.Tag.Get("env"), ok
}

// fieldOfFlag is the field of t whose flag is name.
func fieldOfFlag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); f.Tag.Get("flag") == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// check returns what is wrong with the value v of the setting of flag name,
// or "".
func check(name string, v any) string {
	switch name {
	case "addr", "metrics-addr":
		return checkAddr(v.(string), false)
	case "api-metrics-addr", "pprof-addr":
		return checkAddr(v.(string), true)
	case "database-url":
		return checkDatabaseURL(v.(string))
	case "redis-url":
		return checkRedisURL(v.(string))
	case "chain-url":
		u, err := url.Parse(v.(string))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "want an http:// or https:// URL"
		}
	case "chain-kind":
		if s := v.(string); s != "blockcenter" && s != "bytomd" {
			return "want blockcenter or bytomd"
		}
	case "chain-timeout", "sync-interval", "sync-max-backoff", "leader-ttl", "index-poll", "sweep-interval":
		if v.(time.Duration) <= 0 {
			return "want a duration above 0"
		}
	case "shutdown-timeout":
		if v.(time.Duration) < 0 {
			return "want a duration of 0 or more"
		}
	case "database-max-conns":
		if v.(int) < 1 {
			return "want at least 1"
		}
	case "reserve-rate":
		if r := v.(float64); r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
			return "want a finite number >= 0"
		}
	case "reserve-burst", "legacy-list-sample":
		if v.(int) < 0 {
			return "want 0 or more"
		}
	case "log-level":
		var l slog.Level
		if l.UnmarshalText([]byte(v.(string))) != nil {
			return "want debug, info, warn or error"
		}
	case "log-format":
		if s := v.(string); s != "json" && s != "text" {
			return "want json or text"
		}
	}
	return ""
}

// checkAddr accepts host:port with a numeric port (an empty host listens on
// every interface); empty when optional.
func checkAddr(addr string, optional bool) string {
	if addr == "" && optional {
		return ""
	}
	_, port, err := net.SplitHostPort(addr)
	if n, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil || n > 65535 {
		return "want host:port (e.g. 127.0.0.1:3100)"
	}
	return ""
}

// checkDatabaseURL accepts what storage.Open does: a PostgreSQL URL that pgx
// parses, or sqlite:// and file: paths.
func checkDatabaseURL(s string) string {
	switch {
	case strings.HasPrefix(s, "postgres://"), strings.HasPrefix(s, "postgresql://"):
		if _, err := pgconn.ParseConfig(s); err != nil {
			return "not a PostgreSQL URL: " + parseReason(err)
		}
	case strings.HasPrefix(s, "sqlite://"), strings.HasPrefix(s, "file:"):
	default:
		return "want postgres://user@host:port/database (or sqlite:// or file:)"
	}
	return ""
}

// parseReason is pgx's message without the connection string it quotes
// (redacted only as well as pgx can).
func parseReason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "`: "); i >= 0 {
		return msg[i+3:]
	}
	return "does not parse"
}

// checkRedisURL checks the form of each comma-separated part of a Redis URL
// (a redis+sentinel:// URL as one): a redis://, rediss://, redis+sentinel://
// or rediss+sentinel:// URL with a host, or a bare host:port. The full reading
// of the URL's options is the caller's, also before connecting.
func checkRedisURL(s string) string {
	const want = "want redis://host:port[/db] (or rediss://, redis+sentinel://, comma-separated host:port)"
	s = strings.TrimSpace(s)
	if s == "" {
		return want
	}
	if scheme, rest, ok := strings.Cut(s, "://"); ok && strings.HasSuffix(scheme, "+sentinel") {
		if (scheme != "redis+sentinel" && scheme != "rediss+sentinel") || rest == "" {
			return want
		}
		return ""
	}
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !strings.Contains(p, "://") {
			if checkAddr(p, false) != "" {
				return want
			}
			continue
		}
		u, err := url.Parse(p)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") || (u.Host == "" && u.Scheme != "unix") {
			return want
		}
	}
	return ""
}
