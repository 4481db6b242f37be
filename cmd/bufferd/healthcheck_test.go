package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/storage"
)

// run runs the bufferd binary to completion and returns its exit code and output.
func run(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	default:
		t.Fatalf("bufferd %s: %v", strings.Join(args, " "), err)
		return -1, ""
	}
}

func TestHealthcheckExitsZeroOnlyOn200(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/livez":
			_, _ = w.Write([]byte(`{"status":"ok"}`))
		case "/readyz":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/moved":
			w.WriteHeader(http.StatusNoContent)
		case "/slow":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	defer close(release)

	if code, out := run(t, nil, "healthcheck", "--url", srv.URL+"/livez"); code != 0 {
		t.Fatalf("healthy URL: exit %d: %s", code, out)
	}
	for _, path := range []string{"/readyz", "/moved", "/missing"} {
		if code, out := run(t, nil, "healthcheck", "--url", srv.URL+path); code != 1 {
			t.Errorf("%s: exit %d, want 1: %s", path, code, out)
		}
	}

	// A server that never answers fails within the 2 s timeout.
	began := time.Now()
	code, out := run(t, nil, "healthcheck", "--url", srv.URL+"/slow")
	if code != 1 {
		t.Errorf("hanging URL: exit %d, want 1: %s", code, out)
	}
	if took := time.Since(began); took > 4*time.Second {
		t.Errorf("hanging URL took %s, want about 2s", took)
	}

	// Nothing listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/livez"
	_ = ln.Close()
	if code, out := run(t, nil, "healthcheck", "--url", closed); code != 1 {
		t.Errorf("closed port: exit %d, want 1: %s", code, out)
	}
}

func TestHealthcheckProbesTheDefaultAPIAddress(t *testing.T) {
	// The default URL is the API's default address; skip when something else has it.
	ln, err := net.Listen("tcp", "127.0.0.1:3100")
	if err != nil {
		t.Skip("127.0.0.1:3100 is busy")
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/livez" {
			http.NotFound(w, r)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	defer func() { _ = srv.Close() }()
	if code, out := run(t, nil, "healthcheck"); code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
}

func TestPoolAddRegistersOnce(t *testing.T) {
	t.Parallel()
	dbURL := testenv.Postgres(t)
	env := []string{"BUFFERD_DATABASE_URL=" + dbURL}
	if code, out := run(t, env, "migrate", "up"); code != 0 {
		t.Fatalf("migrate up: exit %d: %s", code, out)
	}

	upper := strings.ToUpper(demoProgram)
	code, out := run(t, env, "pool", "add", "--asset", demoAsset, "--program", upper)
	if code != 0 || !strings.Contains(out, "created") {
		t.Fatalf("first pool add: exit %d: %s", code, out)
	}
	code, out = run(t, env, "pool", "add", "--asset", demoAsset, "--program", demoProgram)
	if code != 0 || !strings.Contains(out, "exists") {
		t.Fatalf("second pool add: exit %d: %s", code, out)
	}

	for _, bad := range [][]string{
		{"--asset", demoAsset},                          // no program
		{"--program", demoProgram},                      // no asset
		{"--asset", "ff", "--program", demoProgram},     // short asset
		{"--asset", demoAsset, "--program", "00zz"},     // not hex
		{"--asset", demoAsset, "--program", "0020abc"},  // odd length
		{"--asset", demoAsset + "'", "--program", "00"}, // injection attempt
	} {
		if code, out := run(t, env, append([]string{"pool", "add"}, bad...)...); code != exitUsage {
			t.Errorf("pool add %v: exit %d, want 2: %s", bad, code, out)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store, err := storage.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = store.Close() }()
	pools, err := store.ListPools(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(pools) != 1 || pools[0].Asset != demoAsset || pools[0].Program != demoProgram {
		t.Fatalf("pools after two adds and six bad ones: %+v", pools)
	}
}
