package config

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/bufferd/bufferd/internal/testenv"
)

// TestMain fails the package when its tests leave goroutines running.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testenv.LeakOptions()...)
}
