package docs_test

import (
	"os"
	"sync"
	"testing"

	"github.com/bufferd/bufferd/internal/testenv"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return "go build: " + e.err.Error() + "\n" + e.out }

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(binPath[:len(binPath)-len("/bufferd")])
	}
	os.Exit(testenv.AfterTests(code))
}
