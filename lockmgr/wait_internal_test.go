package lockmgr

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/bufferd/bufferd/internal/testenv"
)

// A Manager closed before its notification listener subscribed leaves no
// goroutine behind: the listener that starts afterwards stops at once.
func TestCloseBeforeListeningLeaksNothing(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	m := New(rdb, Options{Prefix: prefix})
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	_, cancel := m.subscribe(1) // what ReserveWait does when nothing fits
	cancel()
}
