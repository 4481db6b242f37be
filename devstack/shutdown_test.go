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

// A client's idle connections do not hold a shutdown up: neither one that
// served a request and waits for the next (HTTP keep-alive) nor one a
// client opened and never sent a request on (net/http dials one for a
// request another connection then serves, and pools it). Shutdown closes
// both at once, returns without running out its grace (it would say
// context.DeadlineExceeded), and leaves no server goroutine behind.
func TestShutdownClosesIdleConnections(t *testing.T) {
	defer goleak.VerifyNone(t, append(testenv.LeakOptions(), goleak.IgnoreCurrent())...)
	s, err := devstack.Start(context.Background(), devstack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(s.APIURL, "http://")

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(s.APIURL + "/livez")
	if err != nil {
		_ = s.Close()
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	kept := testenv.DialTCP(t, addr, "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
	kresp, err := http.ReadResponse(bufio.NewReader(kept), nil)
	if err != nil {
		_ = s.Close()
		t.Fatal(err)
	}
	_ = kresp.Body.Close()
	unused := testenv.DialTCP(t, addr, "")
	testenv.ServedAfter(t, addr)

	if err := s.Shutdown(time.Minute); err != nil {
		t.Errorf("Shutdown: %v, want nil: it waited out its grace on idle connections", err)
	}
	for name, c := range map[string]net.Conn{"kept-alive": kept, "unused": unused} {
		if !testenv.ClosedByPeer(c) {
			t.Errorf("the %s connection is still open", name)
		}
	}
}

// A request the client stalls in the middle of keeps its connection busy:
// Shutdown waits for it the grace (and says so: context.DeadlineExceeded),
// then ends it, leaving no goroutine running.
func TestShutdownCutsAStalledRequestAtTheGrace(t *testing.T) {
	defer goleak.VerifyNone(t, append(testenv.LeakOptions(), goleak.IgnoreCurrent())...)
	s, err := devstack.Start(context.Background(), devstack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(s.APIURL, "http://")
	stalled := testenv.DialTCP(t, addr, "GET /livez HTTP/1.1\r\nHost: x\r\n") // the headers never end
	testenv.ServedAfter(t, addr)

	if err := s.Shutdown(time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want the grace's deadline", err)
	}
	if !testenv.ClosedByPeer(stalled) {
		t.Error("the stalled connection is still open")
	}
}
