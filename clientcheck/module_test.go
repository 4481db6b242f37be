package clientcheck_test

import (
	"bytes"
	"go/doc"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// clientDir is the client module's directory.
const clientDir = "../client"

// clientModules are the modules the client module may build with, itself
// included, besides the standard library: whatever else it required would
// reach every DApp backend that imports it (above all the root module and
// the server's fiber, gorm, pgx and go-redis).
var clientModules = []string{"github.com/bufferd/bufferd/client", "github.com/cenkalti/backoff/v5"}

// goIn runs the go command in dir on its own: no workspace, go.mod and
// go.sum as they are.
func goIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s in %s: %v\n%s%s", strings.Join(args, " "), dir, err, out, stderr.Bytes())
	}
	return string(out)
}

// The client module builds, vets and tests with nothing but the standard
// library and its own small set of modules.
func TestClientModuleStaysSmall(t *testing.T) {
	t.Parallel()
	if m := strings.TrimSpace(goIn(t, clientDir, "list", "-m")); m != clientModules[0] {
		t.Fatalf("%s is module %q, want %s", clientDir, m, clientModules[0])
	}
	// The module graph: every module go.mod requires, directly or not.
	for _, l := range strings.Split(strings.TrimSpace(goIn(t, clientDir, "list", "-m", "all")), "\n") {
		if mod := strings.Fields(l)[0]; !slices.Contains(clientModules, mod) {
			t.Errorf("the client module requires %s; only the standard library and %v are allowed", l, clientModules)
		}
	}
	// The packages its code and its tests import.
	deps := goIn(t, clientDir, "list", "-deps", "-test",
		"-f", "{{if not .Standard}}{{.ImportPath}} {{with .Module}}{{.Path}}{{end}}{{end}}", "./...")
	n := 0
	for _, l := range strings.Split(deps, "\n") {
		if i := strings.LastIndex(l, "]"); i >= 0 {
			l = strings.Fields(l)[0] + l[i+1:] // a package as built for a test: "path [path.test] module"
		}
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		n++
		mod := ""
		if len(f) > 1 {
			mod = f[1]
		}
		if !slices.Contains(clientModules, mod) {
			t.Errorf("the client module imports %s (module %q); only the standard library and %v are allowed", f[0], mod, clientModules)
		}
	}
	if n == 0 {
		t.Fatal("go list found no package in the client module")
	}
	goIn(t, clientDir, "build", "./...")
	goIn(t, clientDir, "vet", "./...")
}

// The root module builds and tests the client of this working tree, not a
// published version.
func TestRootUsesTheClientOfTheTree(t *testing.T) {
	t.Parallel()
	dir := strings.TrimSpace(goIn(t, "..", "list", "-m", "-f", "{{with .Replace}}{{.Path}}{{end}}", clientModules[0]))
	if dir != "./client" {
		t.Fatalf("go.mod replaces %s with %q, want ./client", clientModules[0], dir)
	}
}

// Every example of the client package runs here, under the same name,
// with its output checked; there they are compiled only.
func TestExamplesRunHere(t *testing.T) {
	t.Parallel()
	examples := func(path string) map[string]*doc.Example {
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]*doc.Example{}
		for _, ex := range doc.Examples(f) {
			m["Example"+strings.TrimPrefix("_"+ex.Name, "_")] = ex
		}
		return m
	}
	there, here := examples(clientDir+"/example_test.go"), examples("example_test.go")
	if len(there) == 0 {
		t.Fatalf("no example in %s/example_test.go", clientDir)
	}
	for name, ex := range there {
		if ex.Output != "" || ex.EmptyOutput {
			t.Errorf("client: %s has an // Output: comment; the client module has no server to run it", name)
		}
		if h, ok := here[name]; !ok {
			t.Errorf("client: %s does not run here (clientcheck/example_test.go)", name)
		} else if h.Output == "" {
			t.Errorf("%s runs here without an // Output: comment to check", name)
		}
	}
	for name := range here {
		if there[name] == nil {
			t.Errorf("%s runs here but is not an example of the client package", name)
		}
	}
}
