package scripts

import (
	"testing"

	"github.com/bufferd/bufferd/internal/testenv"
)

// TestMain fails the package when its tests leave goroutines running.
func TestMain(m *testing.M) {
	testenv.Main(m)
}
