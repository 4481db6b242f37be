package testenv

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// DialTCP opens a TCP connection to addr and writes request on it (none when
// empty); the connection is closed when the test ends.
func DialTCP(t testing.TB, addr, request string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
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

// ServedAfter returns once an HTTP server at addr has answered a request on
// a connection dialed now: it accepts connections in order, so those dialed
// before this call are accepted and handed to its workers by then.
func ServedAfter(t testing.TB, addr string) {
	t.Helper()
	c := DialTCP(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
}

// ClosedByPeer reports whether the other end has closed c: reading ends with
// the end of the input or a reset within 10 s, rather than waiting.
func ClosedByPeer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !errors.As(err, &ne) || !ne.Timeout()
}
