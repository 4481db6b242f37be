// Package testenv gives integration tests real servers: the shared Redis and
// PostgreSQL named by TEST_REDIS_URL and TEST_DATABASE_URL (defaulting to the
// local servers), isolated per test, and private server processes on free
// loopback ports for tests that kill or pause them.
package testenv

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bufferd/bufferd/internal/scratchdb"
)

// Default URLs of the shared servers.
const (
	DefaultRedisURL    = "redis://127.0.0.1:6379/0"
	DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
)

// RedisURL is TEST_REDIS_URL or the local default.
func RedisURL() string { return envOr("TEST_REDIS_URL", DefaultRedisURL) }

// DatabaseURL is TEST_DATABASE_URL or the local default (an admin connection).
func DatabaseURL() string { return envOr("TEST_DATABASE_URL", DefaultDatabaseURL) }

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// RandomName returns prefix followed by 12 random hex characters.
func RandomName(prefix string) string { return scratchdb.Name(prefix) }

// Redis connects to the shared Redis and returns a client and a key prefix unique
// to this test; every key under the prefix is deleted when the test ends.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	opt, err := redis.ParseURL(RedisURL())
	if err != nil {
		t.Fatalf("testenv: TEST_REDIS_URL: %v", err)
	}
	rdb := redis.NewClient(opt)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("testenv: redis at %s: %v (run `make services` or set TEST_REDIS_URL)", RedisURL(), err)
	}
	prefix := RandomName("t") + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		_ = rdb.Close()
	})
	return rdb, prefix
}

// Postgres creates a fresh database for this test on the shared server and
// returns its URL; the database is dropped when the test ends.
func Postgres(t testing.TB) string {
	t.Helper()
	return CreateDatabase(t, DatabaseURL())
}

// CreateDatabase creates a fresh database on the server adminURL points at and
// returns its URL; it is dropped when the test ends.
func CreateDatabase(t testing.TB, adminURL string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	db, err := newDatabase(ctx, adminURL)
	if err != nil {
		t.Fatalf("testenv: %v (run `make services` or set TEST_DATABASE_URL)", err)
	}
	t.Cleanup(db.Discard)
	return db.URL
}

// newDatabase creates a test database (bufferd_test_ and a random suffix) on
// the server adminURL points at.
func newDatabase(ctx context.Context, adminURL string, opts ...scratchdb.Option) (*scratchdb.DB, error) {
	return scratchdb.Create(ctx, adminURL, scratchdb.Name("bufferd_test_"), opts...)
}

// Loopback reports whether a host:port names a loopback address; tests use it
// to refuse sending traffic anywhere else.
func Loopback(hostport string) bool {
	h := hostport
	if i := strings.LastIndex(hostport, ":"); i >= 0 {
		h = hostport[:i]
	}
	h = strings.Trim(h, "[]")
	return h == "localhost" || strings.HasPrefix(h, "127.") || h == "::1"
}
