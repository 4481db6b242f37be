package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// BuildBufferd builds the bufferd command of the module whose root is root
// (relative to the package's directory, where its tests run) with the race
// detector, into a new temporary directory, for the tests of a package that
// run bufferd as real processes; TestMain calls it once. It returns the
// executable's path and a function that removes the directory.
func BuildBufferd(root string) (path string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "bufferd-bin-")
	if err != nil {
		return "", nil, err
	}
	remove = func() { _ = os.RemoveAll(dir) }
	path = filepath.Join(dir, "bufferd")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-race", "-o", path, "./cmd/bufferd")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		remove()
		return "", nil, fmt.Errorf("testenv: build bufferd: %w\n%s", err, out)
	}
	return path, remove, nil
}
