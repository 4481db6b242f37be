package testenv

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy forwards the TCP connections it accepts on a loopback port to a
// target address, with faults to inject between the two: latency added to
// every chunk in either direction, all open connections dropped at once, and
// new connections refused (accepted, then closed at once).
type Proxy struct {
	ln      net.Listener
	target  string
	latency atomic.Int64 // nanoseconds
	refuse  atomic.Bool
	lose    atomic.Int64 // replies still to lose

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// StartProxy starts a proxy to target; it stops when the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetLatency delays every chunk forwarded in either direction by d (0: none).
func (p *Proxy) SetLatency(d time.Duration) { p.latency.Store(int64(d)) }

// Refuse makes the proxy close new connections at once (true) or forward
// them again (false).
func (p *Proxy) Refuse(on bool) { p.refuse.Store(on) }

// LoseReplies makes the proxy lose the next n replies of the target: the
// request reached the server and was carried out, but its answer is
// discarded and the connection closed, so the client sees a broken
// connection (and a client that retries sends the request again).
func (p *Proxy) LoseReplies(n int) { p.lose.Store(int64(n)) }

// DropAll closes every open connection, both ends, and returns how many.
func (p *Proxy) DropAll() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.conns)
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
	return n / 2
}

// Close stops accepting and drops every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	_ = p.ln.Close()
	p.DropAll()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.refuse.Load() {
			_ = in.Close()
			continue
		}
		out, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			_ = in.Close()
			continue
		}
		if !p.track(in, out) {
			return
		}
		p.wg.Add(2)
		go p.pipe(in, out, false)
		go p.pipe(out, in, true)
	}
}

// track registers a connection pair, unless the proxy is closing.
func (p *Proxy) track(a, b net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = a.Close()
		_ = b.Close()
		return false
	}
	p.conns[a], p.conns[b] = struct{}{}, struct{}{}
	return true
}

// pipe copies from src to dst, each chunk after the current latency; when
// either side ends, both are closed. replies marks the target's direction,
// whose chunks LoseReplies discards.
func (p *Proxy) pipe(src, dst net.Conn, replies bool) {
	defer p.wg.Done()
	defer func() {
		_ = src.Close()
		_ = dst.Close()
		p.mu.Lock()
		delete(p.conns, src)
		delete(p.conns, dst)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if d := time.Duration(p.latency.Load()); d > 0 {
				time.Sleep(d)
			}
			if replies && p.lose.Load() > 0 && p.lose.Add(-1) >= 0 {
				return // the answer is lost with the connection
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			return
		}
	}
}
