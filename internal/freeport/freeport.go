// Package freeport picks TCP ports on 127.0.0.1 for servers about to be
// started as other processes (the tests' private servers, the bench's local
// deployment).
//
// A port from the kernel's ephemeral range (what listening on port 0 gives)
// can be taken, between the pick and the server's bind, as the local port of
// any outgoing connection on the machine; a CI run failed so ("bind: address
// already in use"). The ports picked here lie below that range, where only
// another listener can take them.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"

	"github.com/prometheus/procfs"
)

// Lowest is the lowest port Pick returns.
const Lowest = 10000

// errNoPort means no port could be listened on.
var errNoPort = errors.New("freeport: no free port")

// Pick returns a port below the ephemeral range that 127.0.0.1 could be
// listened on a moment ago; when there is no room below the range, any port
// the kernel gives.
func Pick() (int, error) {
	high := EphemeralStart()
	if high-Lowest >= 1000 {
		for range 200 {
			port := Lowest + rand.IntN(high-Lowest)
			if Free(port) {
				return port, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errNoPort, err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("%w: %w", errNoPort, err)
	}
	return port, nil
}

// EphemeralStart is the first port of the kernel's ephemeral range (Linux's
// default, 32768, when it cannot be read).
func EphemeralStart() int {
	if fs, err := procfs.NewDefaultFS(); err == nil {
		if r, err := fs.SysctlInts("net.ipv4.ip_local_port_range"); err == nil && len(r) == 2 {
			return r[0]
		}
	}
	return 32768
}

// Free reports whether 127.0.0.1:port can be listened on right now.
func Free(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}
