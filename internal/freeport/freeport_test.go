package freeport_test

import (
	"fmt"
	"net"
	"testing"

	"github.com/bufferd/bufferd/internal/freeport"
)

// No outgoing connection can take a port Pick gives: they take theirs from
// the ephemeral range. And the port can be listened on.
func TestPickIsBelowTheEphemeralRangeAndFree(t *testing.T) {
	start := freeport.EphemeralStart()
	for range 50 {
		p, err := freeport.Pick()
		if err != nil {
			t.Fatal(err)
		}
		if p >= start || p < freeport.Lowest {
			t.Fatalf("Pick = %d, want one in [%d, %d)", p, freeport.Lowest, start)
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d from Pick is not free: %v", p, err)
		}
		if freeport.Free(p) {
			t.Fatalf("Free(%d) = true while it is listened on", p)
		}
		_ = l.Close()
	}
}
