// Package connset keeps the connections a client dialed or a server accepted
// so that they can all be closed at once. A fiber (fasthttp) shutdown waits
// for every open connection, and http.Transport.CloseIdleConnections misses a
// connection net/http dialed for a request another connection served first:
// it joins the pool later, and the server it is open to waits for it.
// A server's set can also end only the input of its connections (all, or
// those no request came on), which lets a shutdown go on without taking a
// connection from under a request being answered.
package connset

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
)

// ErrClosed is a connection made after its set was closed.
var ErrClosed = errors.New("connset: set closed")

// Set is a set of open connections. The zero value is ready to use.
type Set struct {
	mu     sync.Mutex
	conns  map[*conn]struct{}
	closed bool
}

// conn leaves its set when closed, and notes its first byte read.
type conn struct {
	net.Conn
	set  *Set
	used atomic.Bool
}

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.used.Load() {
		c.used.Store(true)
	}
	return n, err
}

func (c *conn) Close() error {
	c.set.mu.Lock()
	delete(c.set.conns, c)
	c.set.mu.Unlock()
	return c.Conn.Close()
}

// Dialer returns a DialContext (for an http.Transport) that dials with d and
// adds each connection to the set.
func (s *Set) Dialer(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return s.add(c)
	}
}

// Listener returns ln adding each connection it accepts to the set.
func (s *Set) Listener(ln net.Listener) net.Listener { return &listener{Listener: ln, set: s} }

type listener struct {
	net.Listener
	set *Set
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.set.add(c)
}

// add adds c to the set, or closes it when the set is closed.
func (s *Set) add(c net.Conn) (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.Join(ErrClosed, c.Close())
	}
	if s.conns == nil {
		s.conns = map[*conn]struct{}{}
	}
	tc := &conn{Conn: c, set: s}
	s.conns[tc] = struct{}{}
	return tc, nil
}

// CloseAll closes every connection of the set and refuses new ones.
func (s *Set) CloseAll() {
	s.mu.Lock()
	s.closed = true
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c.Conn)
	}
	clear(s.conns)
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close() // their users are done: nothing waits on them
	}
}

// CloseReadUnused ends the input of the connections on which nothing has
// been read yet. For a server's set those are connections a client opened
// and sent no request on: idle, though fasthttp counts one as busy from the
// moment it accepts it, so that its shutdown waits for it. Its server sees
// the end of the input and closes it. A request whose first bytes arrive
// just then is lost, as with any server that closes idle connections.
func (s *Set) CloseReadUnused() { s.closeRead(func(c *conn) bool { return !c.used.Load() }) }

// CloseReadAll ends the input of every connection of the set. A server
// reading a request or waiting for the next one sees the end of it; one
// answering a request still answers it, then closes the connection.
// Unlike CloseAll, it never takes a connection from under a fasthttp
// server answering on it, which panics when its write deadline fails.
func (s *Set) CloseReadAll() { s.closeRead(func(*conn) bool { return true }) }

// closeRead ends the input of the connections that pick selects; one that
// cannot end only its input is closed.
func (s *Set) closeRead(pick func(*conn) bool) {
	s.mu.Lock()
	var picked []*conn
	for c := range s.conns {
		if pick(c) {
			picked = append(picked, c)
		}
	}
	s.mu.Unlock()
	for _, c := range picked {
		if cr, ok := c.Conn.(interface{ CloseRead() error }); ok {
			_ = cr.CloseRead()
		} else {
			_ = c.Close()
		}
	}
}

// Len is the number of open connections of the set.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
