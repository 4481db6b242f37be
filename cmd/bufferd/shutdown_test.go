package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/storage"
)

// SIGTERM drains: a request in flight (a long-polling reserve) still gets its
// answer, new connections are refused, and the process exits cleanly.
func TestAPIDrainsInFlightRequestsOnSIGTERM(t *testing.T) {
	t.Parallel()
	dbURL := testenv.Postgres(t)
	rdb, prefix := testenv.Redis(t)
	env := []string{
		"BUFFERD_DATABASE_URL=" + dbURL, "BUFFERD_REDIS_URL=" + testenv.RedisURL(), "BUFFERD_REDIS_PREFIX=" + prefix,
		"BUFFERD_ADMIN_TOKEN=s3cret", "BUFFERD_DATABASE_MAX_CONNS=4", "BUFFERD_SHUTDOWN_TIMEOUT=10s",
	}
	cmd := exec.Command(binary, "migrate", "up")
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("migrate: %v %s", err, out)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	api := "http://" + addr
	p := start(t, env, "api", "--addr", addr)
	waitHTTP(t, api+"/readyz", 20*time.Second)
	raw := postJSON(t, api+"/v1/pools", map[string]string{"asset": demoAsset, "program": demoProgram}, "Authorization", "Bearer s3cret")
	if !bytes.Contains(raw, []byte(`"id":1`)) {
		t.Fatalf("create pool: %s", raw)
	}
	// bufferd 2 loads only pools the syncer has the whole UTXO set of, and no
	// syncer runs here: mark the pool synced as the syncer would, with no UTXO.
	store, err := storage.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = store.Close() }()
	if err := store.MarkSynced(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	// The pool has no UTXO: a reserve with wait_seconds waits its full time.
	type answer struct {
		status int
		body   string
		err    error
	}
	done := make(chan answer, 1)
	go func() {
		var a answer
		err := testenv.Poll(20*time.Second, func() error { // until the replica has loaded the new pool
			resp, err := http.Post(api+"/v1/reservations", "application/json",
				strings.NewReader(`{"pool":1,"count":1,"wait_seconds":3}`))
			if err != nil {
				a = answer{err: err}
				return nil
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			a = answer{status: resp.StatusCode, body: string(b)}
			if resp.StatusCode == 503 {
				return fmt.Errorf("reserve: %d %s", resp.StatusCode, b)
			}
			return nil
		})
		if err != nil {
			a.err = err
		}
		done <- a
	}()
	// The reserve is waiting: the API's lock manager listens for released
	// UTXOs (a message on another pool's channel reaches it), which it
	// starts doing for the first waiter.
	testenv.Eventually(t, 20*time.Second, func() error {
		if n, err := rdb.Publish(context.Background(), prefix+"{p1000}:freed", "").Result(); err != nil || n == 0 {
			return fmt.Errorf("publish reached %d subscribers: %v", n, err)
		}
		return nil
	})
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	a := <-done
	if a.err != nil || a.status != 409 || !strings.Contains(a.body, "no_utxo_available") {
		t.Fatalf("in-flight request during shutdown: %d %q %v", a.status, a.body, a.err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("api exited with %v:\n%s", err, p.output())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("api did not exit after draining")
	}
}
