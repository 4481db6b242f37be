package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-redsync/redsync/v4"
	redsyncredis "github.com/go-redsync/redsync/v4/redis"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/config"
)

// Redis client limits: an unreachable Redis must turn into a quick 503, not a
// request hanging through go-redis's default retries. They apply unless the
// URL sets the option itself (dial_timeout, read_timeout, write_timeout,
// max_retries).
const (
	redisDialTimeout = 500 * time.Millisecond
	redisIOTimeout   = 2 * time.Second
	redisMaxRetries  = 1
	redisPingTimeout = 5 * time.Second
)

// URL schemes of a master found through Redis Sentinel (the second with TLS),
// and the sentinels' port when an address has none.
const (
	sentinelScheme    = "redis+sentinel"
	sentinelTLSScheme = "rediss+sentinel"
	sentinelPort      = "26379"
)

// errRedisURL means BUFFERD_REDIS_URL cannot be used; it is wrapped with the reason.
var errRedisURL = errors.New("bufferd: bad BUFFERD_REDIS_URL")

// redisConns are the Redis connections of a process: data holds the
// reservations; quorum are the servers whose majority the leadership and
// rebuild mutexes need (data alone, unless several independent servers were
// given).
type redisConns struct {
	data   redis.UniversalClient
	quorum []redis.UniversalClient
}

// Mutexes returns the redsync of the quorum.
func (r *redisConns) Mutexes() *redsync.Redsync {
	pools := make([]redsyncredis.Pool, len(r.quorum))
	for i, c := range r.quorum {
		pools[i] = goredis.NewPool(c)
	}
	return redsync.New(pools...)
}

// Close closes every connection.
func (r *redisConns) Close() {
	for _, c := range r.quorum {
		if c != r.data {
			_ = c.Close()
		}
	}
	_ = r.data.Close()
}

// single is the connections of one data client that is its own quorum.
func single(c redis.UniversalClient) *redisConns {
	return &redisConns{data: c, quorum: []redis.UniversalClient{c}}
}

// newRedis connects to BUFFERD_REDIS_URL:
//   - a redis+sentinel:// URL (see parseSentinelURL) is the master that Redis
//     Sentinel names, followed through failovers;
//   - one redis:// URL is one server (or a replica set behind one address);
//   - several comma-separated ones are the seeds of a Redis Cluster when the
//     first has cluster mode enabled (see newClusterRedis);
//   - else independent servers: the first holds the reservations and all of
//     them form the Redlock quorum of the leadership and rebuild mutexes, so
//     that a lease survives the loss of a minority of them.
func newRedis(ctx context.Context, c *config.Config) (*redisConns, error) {
	if raw := strings.TrimSpace(c.RedisURL); isSentinelURL(raw) {
		return newSentinelRedis(ctx, raw)
	}
	urls := c.RedisAddrs()
	if len(urls) == 0 {
		return nil, fmt.Errorf("%w: it is empty", errRedisURL)
	}
	opts := make([]*redis.Options, len(urls))
	for i, u := range urls {
		opt, err := redis.ParseURL(withRedisScheme(u))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errRedisURL, err)
		}
		setLimits(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.MaxRetries, &opt.ContextTimeoutEnabled)
		opts[i] = opt
	}
	pctx, cancel := context.WithTimeout(ctx, redisPingTimeout)
	defer cancel()
	first := redis.NewClient(opts[0])
	if err := first.Ping(pctx).Err(); err != nil {
		_ = first.Close()
		return nil, fmt.Errorf("redis: %w", err)
	}
	if len(opts) == 1 {
		return single(first), nil
	}
	cluster, err := clusterEnabled(pctx, first)
	if err != nil {
		_ = first.Close()
		return nil, err
	}
	if cluster {
		_ = first.Close()
		return newClusterRedis(pctx, urls, opts)
	}
	// Independent servers: a minority may be down at start.
	conns := single(first)
	for _, o := range opts[1:] {
		conns.quorum = append(conns.quorum, redis.NewClient(o))
	}
	slog.Info("redis: independent servers form the Redlock quorum of the leadership and rebuild mutexes",
		"servers", len(opts), "quorum", len(opts)/2+1, "data", opts[0].Addr)
	return conns, nil
}

// redisURLRule is the config rule of BUFFERD_REDIS_URL: checkRedisURL's
// reason, if any.
func redisURLRule(v any) string {
	if err := checkRedisURL(v.(string)); err != nil {
		return strings.TrimPrefix(err.Error(), errRedisURL.Error()+": ")
	}
	return ""
}

// checkRedisURL reads BUFFERD_REDIS_URL as newRedis does, without
// connecting or resolving names.
func checkRedisURL(raw string) error {
	if raw = strings.TrimSpace(raw); isSentinelURL(raw) {
		_, err := parseSentinelURL(raw)
		return err
	}
	for _, u := range splitList(raw) {
		if _, err := redis.ParseURL(withRedisScheme(u)); err != nil {
			return fmt.Errorf("%w: %v", errRedisURL, err)
		}
	}
	return nil
}

// redisLogger sends go-redis's messages to slog's default logger, as
// warnings: they are about connections failing or being replaced.
type redisLogger struct{}

func (redisLogger) Printf(ctx context.Context, format string, v ...any) {
	slog.Default().WarnContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

// withRedisScheme adds redis:// to a bare host:port.
func withRedisScheme(u string) string {
	if !strings.Contains(u, "://") {
		return "redis://" + u
	}
	return u
}

// setLimits sets bufferd's Redis limits on the options a URL left at
// go-redis's defaults (zero), and makes the client obey its callers'
// context deadlines.
func setLimits(dial, read, write *time.Duration, retries *int, contextTimeout *bool) {
	*contextTimeout = true
	for _, d := range []struct {
		p   *time.Duration
		def time.Duration
	}{{dial, redisDialTimeout}, {read, redisIOTimeout}, {write, redisIOTimeout}} {
		if *d.p == 0 {
			*d.p = d.def
		}
	}
	if *retries == 0 {
		*retries = redisMaxRetries
	}
}

// clusterEnabled reports whether the server rdb talks to runs in cluster mode.
func clusterEnabled(ctx context.Context, rdb *redis.Client) (bool, error) {
	info, err := rdb.Info(ctx, "cluster").Result()
	if err != nil {
		return false, fmt.Errorf("redis: %w", err)
	}
	return strings.Contains(info, "cluster_enabled:1"), nil
}

// newClusterRedis connects to the Redis Cluster whose seeds are urls (parsed
// as seeds). The first URL, read by redis.ParseClusterURL, gives every node's
// user, password, TLS and options, so the other seeds must not name other
// credentials; only their addresses are used.
func newClusterRedis(ctx context.Context, urls []string, seeds []*redis.Options) (*redisConns, error) {
	opt, err := redis.ParseClusterURL(withRedisScheme(urls[0]))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errRedisURL, err)
	}
	for _, s := range seeds {
		if s.DB != 0 {
			return nil, fmt.Errorf("%w: %s names database %d, a Redis Cluster has only database 0", errRedisURL, s.Addr, s.DB)
		}
		if s.Username != opt.Username || s.Password != opt.Password || (s.TLSConfig == nil) != (opt.TLSConfig == nil) {
			return nil, fmt.Errorf("%w: the cluster seeds %s and %s differ in user, password or TLS", errRedisURL, seeds[0].Addr, s.Addr)
		}
	}
	for _, s := range seeds[1:] {
		opt.Addrs = append(opt.Addrs, s.Addr)
	}
	setLimits(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.MaxRetries, &opt.ContextTimeoutEnabled)
	cluster := redis.NewClusterClient(opt)
	if err := cluster.Ping(ctx).Err(); err != nil {
		_ = cluster.Close()
		return nil, fmt.Errorf("redis cluster: %w", err)
	}
	slog.Info("redis: cluster", "seeds", len(opt.Addrs), "tls", opt.TLSConfig != nil)
	return single(cluster), nil
}

// isSentinelURL reports whether raw names a master through Redis Sentinel.
func isSentinelURL(raw string) bool {
	scheme, _, ok := strings.Cut(raw, "://")
	return ok && (scheme == sentinelScheme || scheme == sentinelTLSScheme)
}

// newSentinelRedis connects to the master named by the sentinels of raw. The
// failover client follows the master through failovers; it is the quorum of
// the mutexes too (Sentinel's replicas copy the master, they do not vote).
func newSentinelRedis(ctx context.Context, raw string) (*redisConns, error) {
	opt, err := parseSentinelURL(raw)
	if err != nil {
		return nil, err
	}
	setLimits(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.MaxRetries, &opt.ContextTimeoutEnabled)
	rdb := redis.NewFailoverClient(opt)
	pctx, cancel := context.WithTimeout(ctx, redisPingTimeout)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis sentinel (master %q): %w", opt.MasterName, err)
	}
	slog.Info("redis: the master named by Redis Sentinel holds the reservations",
		"master", opt.MasterName, "sentinels", len(opt.SentinelAddrs), "tls", opt.TLSConfig != nil)
	return single(rdb), nil
}

// parseSentinelURL reads
//
//	redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master[/db][?options]
//
// (rediss+sentinel:// for TLS): the sentinels' addresses (port 26379 when
// left out), the name of the master they monitor and its database (0). The
// user and password are those of the master and its replicas; the options
// sentinel_username and sentinel_password are those of the sentinels
// themselves (none by default), and the other options are go-redis's
// (redis.ParseFailoverURL: dial_timeout, ...).
func parseSentinelURL(raw string) (*redis.FailoverOptions, error) {
	scheme, rest, _ := strings.Cut(raw, "://")
	authority, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority, tail = rest[:i], rest[i:]
	}
	userinfo, hosts := "", authority
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		userinfo, hosts = authority[:i+1], authority[i+1:]
	}
	// net/url reads all but the list of hosts, which it would refuse.
	u, err := url.Parse("redis://" + userinfo + "sentinel" + tail)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errRedisURL, err)
	}
	addrs, err := sentinelAddrs(hosts)
	if err != nil {
		return nil, err
	}
	master, db, err := sentinelPath(u.Path)
	if err != nil {
		return nil, err
	}
	// go-redis's own form: the sentinels' credentials as userinfo, the
	// master's as options.
	q := u.Query()
	g := url.URL{Scheme: strings.TrimSuffix(scheme, "+sentinel"), Host: addrs[0], Path: "/" + strconv.Itoa(db)}
	if su, sp := q.Get("sentinel_username"), q.Get("sentinel_password"); su != "" || sp != "" {
		g.User = url.UserPassword(su, sp)
	}
	q.Del("sentinel_username")
	q.Del("sentinel_password")
	if u.User != nil {
		pw, _ := u.User.Password()
		q.Set("username", u.User.Username())
		q.Set("password", pw)
	}
	q.Set("master_name", master)
	for _, a := range addrs[1:] {
		q.Add("addr", a)
	}
	g.RawQuery = q.Encode()
	opt, err := redis.ParseFailoverURL(g.String())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errRedisURL, err)
	}
	return opt, nil
}

// sentinelAddrs reads the comma-separated host[:port] list of a sentinel URL.
func sentinelAddrs(hosts string) ([]string, error) {
	var addrs []string
	for _, h := range strings.Split(hosts, ",") {
		u, err := url.Parse("redis://" + strings.TrimSpace(h))
		if err != nil || u.Hostname() == "" || u.User != nil || u.Path != "" {
			return nil, fmt.Errorf("%w: sentinel address %q: want host[:port]", errRedisURL, h)
		}
		port := u.Port()
		if port == "" {
			port = sentinelPort
		}
		addrs = append(addrs, net.JoinHostPort(u.Hostname(), port))
	}
	return addrs, nil
}

// sentinelPath reads /master[/db] from a sentinel URL's path.
func sentinelPath(path string) (master string, db int, err error) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if parts[0] == "" || len(parts) > 2 {
		return "", 0, fmt.Errorf("%w: a sentinel URL's path is /master-name[/db], not %q", errRedisURL, path)
	}
	if len(parts) == 2 {
		if db, err = strconv.Atoi(parts[1]); err != nil || db < 0 {
			return "", 0, fmt.Errorf("%w: database %q is not a number", errRedisURL, parts[1])
		}
	}
	return parts[0], db, nil
}
