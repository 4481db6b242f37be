// Package testenv gives integration tests real servers: the shared Redis and
// PostgreSQL named by TEST_REDIS_URL and TEST_DATABASE_URL (defaulting to the
// local servers), isolated per test, and private server processes on free
// loopback ports for tests that kill or pause them.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
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
func RandomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

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
	return createDatabase(t, adminURL, "")
}

// createDatabase runs CREATE DATABASE <a fresh name> <options> on the server
// adminURL points at and returns the new database's URL; it is dropped when
// the test ends.
func createDatabase(t testing.TB, adminURL, options string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	u, drop, err := newDatabase(ctx, adminURL, options)
	if err != nil {
		t.Fatalf("testenv: %v (run `make services` or set TEST_DATABASE_URL)", err)
	}
	t.Cleanup(drop)
	return u
}

// newDatabase runs CREATE DATABASE <a fresh name> <options> on the server
// adminURL points at; it returns the new database's URL and a func that
// drops it.
func newDatabase(ctx context.Context, adminURL, options string) (string, func(), error) {
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", nil, fmt.Errorf("parse %s: %w", adminURL, err)
	}
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", nil, fmt.Errorf("postgres at %s: %w", adminURL, err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	name := RandomName("bufferd_test_")
	if _, err := conn.Exec(ctx, strings.TrimSpace("CREATE DATABASE "+name+" "+options)); err != nil {
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			return
		}
		defer func() { _ = c.Close(context.Background()) }()
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	}
	u.Path = "/" + name
	return u.String(), drop, nil
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
