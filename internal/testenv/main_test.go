package testenv

import (
	"testing"
)

// TestMain fails the package when its tests leave goroutines running.
func TestMain(m *testing.M) {
	Main(m)
}
