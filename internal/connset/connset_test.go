package connset_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/bufferd/bufferd/internal/connset"
	"github.com/bufferd/bufferd/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// serve serves a one-route app on a loopback listener wrapped by set.
func serve(t *testing.T, set *connset.Set) (*fiber.App, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Get("/", func(c *fiber.Ctx) error { return c.SendString("ok") })
	go func() { _ = app.Listener(set.Listener(ln)) }()
	return app, "http://" + ln.Addr().String() + "/"
}

// get makes one request and leaves its connection in the client's pool.
func get(t *testing.T, c *http.Client, url string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
}

// A fiber shutdown waits for a connection that never sent a request (one
// net/http dialed for a request another connection served, then pooled); it
// never goes away by itself. Closing the server's accepted set lets the
// shutdown end at once.
func TestShutdownWaitsForAnUnusedConnectionUntilTheSetClosesIt(t *testing.T) {
	t.Parallel()
	var accepted connset.Set
	app, url := serve(t, &accepted)
	get(t, http.DefaultClient, url) // served, then idle: the shutdown closes it
	unused, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unused.Close() }()
	testenv.Eventually(t, 5*time.Second, testenv.Is(func() bool { return accepted.Len() == 2 }))
	if err := app.ShutdownWithTimeout(300 * time.Millisecond); err == nil {
		t.Fatal("the shutdown did not wait for the unused connection: the test proves nothing")
	}
	accepted.CloseAll()
	done := make(chan error, 1)
	go func() { done <- app.ShutdownWithTimeout(10 * time.Second) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown after CloseAll: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown still waits after CloseAll")
	}
}

// A client's set closes every connection it dialed, and refuses to dial
// once closed.
func TestDialerTracksAndRefusesAfterClose(t *testing.T) {
	t.Parallel()
	var accepted, dialed connset.Set
	app, url := serve(t, &accepted)
	defer func() {
		accepted.CloseAll()
		_ = app.Shutdown()
	}()
	c := &http.Client{Transport: &http.Transport{DialContext: dialed.Dialer(&net.Dialer{Timeout: time.Second})}}
	get(t, c, url)
	if n := dialed.Len(); n != 1 {
		t.Fatalf("dialed %d connections, want 1", n)
	}
	dialed.CloseAll()
	if n := dialed.Len(); n != 0 {
		t.Fatalf("%d connections open after CloseAll", n)
	}
	_, err := c.Get(url)
	if !errors.Is(err, connset.ErrClosed) {
		t.Fatalf("a dial after CloseAll: %v, want ErrClosed", err)
	}
}

// CloseReadUnused makes the server close a connection no request came on
// and keeps one that served a request; a fiber shutdown then closes that
// one itself and ends at once.
func TestCloseReadUnusedEndsOnlyWhatNeverCarriedARequest(t *testing.T) {
	t.Parallel()
	var accepted connset.Set
	app, url := serve(t, &accepted)
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	get(t, c, url)
	unused, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unused.Close() }()
	testenv.Eventually(t, 5*time.Second, testenv.Is(func() bool { return accepted.Len() == 2 }))

	accepted.CloseReadUnused()
	_ = unused.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := unused.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("the unused connection: %d bytes, %v; want EOF (closed by the server)", n, err)
	}
	testenv.Eventually(t, 5*time.Second, testenv.Is(func() bool { return accepted.Len() == 1 }))
	if err := app.ShutdownWithTimeout(5 * time.Second); err != nil {
		t.Fatalf("shutdown after CloseReadUnused: %v", err)
	}
}

// CloseReadAll lets a request stalled in its headers end: the server reads
// the end of its input, answers 400 and closes the connection.
func TestCloseReadAllEndsAStalledRequest(t *testing.T) {
	t.Parallel()
	var accepted connset.Set
	app, url := serve(t, &accepted)
	defer func() { _ = app.Shutdown() }()
	stalled, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stalled.Close() }()
	if _, err := io.WriteString(stalled, "GET / HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, testenv.Is(func() bool { return accepted.Len() == 1 }))

	accepted.CloseReadAll()
	_ = stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(stalled); err != nil {
		t.Fatalf("the stalled connection: %v, want an answer and EOF", err)
	}
	testenv.Eventually(t, 5*time.Second, testenv.Is(func() bool { return accepted.Len() == 0 }))
}
