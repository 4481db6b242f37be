package testenv

import (
	"net"
	"net/url"
	"os"
	"testing"
	"time"
)

// SkipWithoutServices skips t when neither TEST_REDIS_URL nor
// TEST_DATABASE_URL is set and the local default servers do not answer, so
// that `go test` of a package whose examples need nothing installed still
// passes on a bare machine. scripts/test.sh sets both variables (after
// starting the servers), so there the tests always run.
func SkipWithoutServices(t testing.TB) {
	t.Helper()
	if os.Getenv("TEST_REDIS_URL") != "" || os.Getenv("TEST_DATABASE_URL") != "" {
		return
	}
	for _, raw := range []string{DefaultRedisURL, DefaultDatabaseURL} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := net.DialTimeout("tcp", u.Host, time.Second)
		if err != nil {
			t.Skipf("no server at %s (%v): scripts/test.sh installs and starts Redis and PostgreSQL", u.Host, err)
		}
		_ = conn.Close()
	}
}
