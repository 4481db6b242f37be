package devstack_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bufferd/bufferd/devstack"
	"github.com/bufferd/bufferd/internal/testenv"
)

// dialAPI opens a TCP connection to the stack's API and writes request (if
// any) on it; the connection is closed when the test ends.
func dialAPI(t *testing.T, s *devstack.Stack, request string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(s.APIURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if request != "" {
		if _, err := io.WriteString(c, request); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// closedByServer reports whether the server has closed c (a read ends with
// EOF or a reset rather than waiting).
func closedByServer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !errors.As(err, &ne) || !ne.Timeout()
}

// A client's idle connections do not hold a shutdown up: neither one that
// served a request and waits for the next (HTTP keep-alive) nor one a
// client opened and never sent a request on (net/http dials one for a
// request another connection then serves, and pools it). Shutdown closes
// both at once, returns without waiting for its grace, and leaves no
// server goroutine behind.
func TestShutdownClosesIdleConnections(t *testing.T) {
	defer goleak.VerifyNone(t, append(testenv.LeakOptions(), goleak.IgnoreCurrent())...)
	s, err := devstack.Start(context.Background(), devstack.Options{})
	if err != nil {
		t.Fatal(err)
	}

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(s.APIURL + "/livez")
	if err != nil {
		_ = s.Close()
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	kept := dialAPI(t, s, "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
	kresp, err := http.ReadResponse(bufio.NewReader(kept), nil)
	if err != nil {
		_ = s.Close()
		t.Fatal(err)
	}
	_ = kresp.Body.Close()
	unused := dialAPI(t, s, "")
	time.Sleep(100 * time.Millisecond) // the server has accepted both

	const grace = 5 * time.Second
	start := time.Now()
	err = s.Shutdown(grace)
	took := time.Since(start)
	if err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if took > grace/2 {
		t.Errorf("Shutdown took %s, waiting on idle connections (grace %s)", took, grace)
	}
	for name, c := range map[string]net.Conn{"kept-alive": kept, "unused": unused} {
		if !closedByServer(c) {
			t.Errorf("the %s connection is still open", name)
		}
	}
}

// A request the client stalls in the middle of keeps its connection busy:
// Shutdown waits for it the grace, then closes it, and returns the
// deadline's error without leaving its goroutine running.
func TestShutdownCutsAStalledRequestAtTheGrace(t *testing.T) {
	defer goleak.VerifyNone(t, append(testenv.LeakOptions(), goleak.IgnoreCurrent())...)
	s, err := devstack.Start(context.Background(), devstack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stalled := dialAPI(t, s, "GET /livez HTTP/1.1\r\nHost: x\r\n") // the headers never end
	time.Sleep(100 * time.Millisecond)

	const grace = time.Second
	start := time.Now()
	err = s.Shutdown(grace)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want the grace's deadline", err)
	}
	if took < grace || took > grace+time.Second {
		t.Errorf("Shutdown took %s, want about its grace %s", took, grace)
	}
	if !closedByServer(stalled) {
		t.Error("the stalled connection is still open")
	}
}
