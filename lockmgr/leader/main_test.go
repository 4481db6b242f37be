package leader_test

import (
	"testing"

	"github.com/bufferd/bufferd/internal/testenv"
)

// TestMain fails the package when its tests leave goroutines running (an
// elector that did not stop, a lease still being renewed).
func TestMain(m *testing.M) {
	testenv.Main(m)
}
