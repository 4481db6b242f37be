package docs_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// ARCHITECTURE.md names files and tests as the places where the invariants
// are enforced and proven: each must exist.
func TestArchitectureNamesWhatExists(t *testing.T) {
	raw, err := os.ReadFile("../ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	page := string(raw)

	tests := map[string]bool{}
	decl := regexp.MustCompile(`(?m)^func (Test\w+)\(`)
	err = filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
			tests[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	named := regexp.MustCompile("`(Test\\w+)`").FindAllStringSubmatch(page, -1)
	if len(named) < 9 {
		t.Fatalf("ARCHITECTURE.md names %d tests; it should name at least one per invariant", len(named))
	}
	for _, m := range named {
		if !tests[m[1]] {
			t.Errorf("ARCHITECTURE.md names %s, which no test file declares", m[1])
		}
	}

	paths := regexp.MustCompile("`((?:[a-z0-9_]+/)+[a-z0-9_.]+\\.(?:go|lua|md))`").FindAllStringSubmatch(page, -1)
	for _, m := range paths {
		if _, err := os.Stat(filepath.Join("..", m[1])); err != nil {
			t.Errorf("ARCHITECTURE.md names %s: %v", m[1], err)
		}
	}
	for _, m := range regexp.MustCompile("`([a-z_]+\\.lua)`").FindAllStringSubmatch(page, -1) {
		if _, err := os.Stat(filepath.Join("..", "lockmgr", "internal", "scripts", m[1])); err != nil {
			t.Errorf("ARCHITECTURE.md names the script %s: %v", m[1], err)
		}
	}
}
