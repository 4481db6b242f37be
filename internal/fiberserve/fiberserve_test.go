package fiberserve_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/bufferd/bufferd/internal/fiberserve"
	"github.com/bufferd/bufferd/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// serve starts app on a loopback port; cancel stops it, and the returned
// channel carries Serve's result.
func serve(t *testing.T, app *fiber.App, grace time.Duration) (addr string, cancel func(), result <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fiberserve.Serve(ctx, app, ln, grace) }()
	return ln.Addr().String(), cancel, done
}

// A connection a client opened and sent nothing on, and one kept alive
// after a request, do not hold the shutdown up: it returns without running
// out its grace (fiber's shutdown says context.DeadlineExceeded when it
// does), and the server closes both.
func TestShutdownDoesNotWaitForIdleConnections(t *testing.T) {
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Get("/", func(c *fiber.Ctx) error { return c.SendString("ok") })
	addr, cancel, result := serve(t, app, 10*time.Second)
	kept := testenv.DialTCP(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(kept), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	unused := testenv.DialTCP(t, addr, "")
	testenv.ServedAfter(t, addr)

	cancel()
	if err := <-result; err != nil {
		t.Fatalf("Serve = %v, want nil: the shutdown waited out its grace", err)
	}
	for name, c := range map[string]net.Conn{"kept-alive": kept, "unused": unused} {
		if !testenv.ClosedByPeer(c) {
			t.Errorf("the %s connection is still open", name)
		}
	}
}

// A request still being answered when the shutdown begins is answered.
func TestShutdownAnswersARequestInFlight(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Get("/slow", func(c *fiber.Ctx) error {
		close(started)
		<-release
		return c.SendString("done")
	})
	addr, cancel, result := serve(t, app, time.Minute)
	c := testenv.DialTCP(t, addr, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started
	cancel()
	close(release)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("the request in flight was cut: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if string(body) != "done" {
		t.Fatalf("answer %q, want done", body)
	}
	if err := <-result; err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
}
