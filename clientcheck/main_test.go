package clientcheck_test

import (
	"testing"

	"github.com/bufferd/bufferd/internal/testenv"
)

// TestMain fails the package when its tests leave goroutines running, and
// drops its template databases.
func TestMain(m *testing.M) {
	testenv.Main(m)
}
