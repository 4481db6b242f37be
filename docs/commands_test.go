// Package docs_test checks that the commands the README and docs/ show work.
package docs_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/bufferd/bufferd/devstack"
)

// documents are the pages whose commands are checked, from the repository root.
func documents(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{"../README.md"}, pages...)
}

// block is a fenced shell block of a page.
type block struct {
	page, text string
	line       int
}

// setting is a line that sets a bufferd variable.
var setting = regexp.MustCompile(`^BUFFERD_[A-Z_]+=`)

var fence = regexp.MustCompile("(?ms)^```(sh|bash)\n(.*?)^```") //nolint:gocritic // (?m): the second ^ starts a line

// shellBlocks returns the ```sh and ```bash blocks of the pages.
func shellBlocks(t *testing.T) []block {
	t.Helper()
	var out []block
	for _, p := range documents(t) {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range fence.FindAllSubmatchIndex(raw, -1) {
			out = append(out, block{page: strings.TrimPrefix(p, "../"), text: string(raw[m[4]:m[5]]),
				line: 1 + strings.Count(string(raw[:m[0]]), "\n")})
		}
	}
	return out
}

// commands splits a block into its commands: continuation lines joined,
// comments dropped, `a && b` split in two.
func commands(text string) []string {
	var out []string
	cur := ""
	for _, l := range strings.Split(text, "\n") {
		if i := strings.Index(l, "  #"); i >= 0 && !strings.HasSuffix(strings.TrimSpace(l[:i]), `\`) {
			l = l[:i] // a trailing comment
		}
		l = strings.TrimSpace(l)
		if cur == "" && (l == "" || strings.HasPrefix(l, "#")) {
			continue
		}
		if strings.HasSuffix(l, `\`) {
			cur += strings.TrimSuffix(l, `\`) + " "
			continue
		}
		for _, c := range strings.Split(cur+l, " && ") {
			out = append(out, strings.TrimSpace(c))
		}
		cur = ""
	}
	return out
}

// live reports whether cmd runs against the API: the test runs it against
// a devstack in place of the one the page starts.
func live(cmd string) bool {
	for _, p := range []string{"curl ", "id=", "rm ", "export BUFFERD="} {
		if strings.HasPrefix(cmd, p) {
			return true
		}
	}
	return false
}

// The shell blocks of the README and docs/: commands against the API run
// against a devstack (the same service `bufferd dev` runs) and must succeed
// (every curl with --fail-with-body); bufferd commands must parse (the binary
// runs them with --help); make targets must exist (make -n); go get must name
// a module of the repository; deployment commands must name files the
// repository has. A command of any other kind
// fails the test until a check is added for it.
func TestDocumentedCommands(t *testing.T) {
	bin := buildBufferd(t)
	srv, err := devstack.Start(context.Background(), devstack.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Close() }()

	blocks := shellBlocks(t)
	if len(blocks) < 4 {
		t.Fatalf("found %d shell blocks; the pages have more", len(blocks))
	}
	ran := 0
	for _, b := range blocks {
		var script []string
		for _, c := range commands(b.text) {
			if live(c) {
				script = append(script, rewriteForTest(c, srv))
				continue
			}
			if err := checkCommand(t, bin, c); err != "" {
				t.Errorf("%s:%d: %s: %s", b.page, b.line, c, err)
			}
			ran++
		}
		if len(script) == 0 {
			continue
		}
		sh := exec.Command("bash", "-c", "set -euo pipefail\n"+strings.Join(script, "\n"))
		sh.Dir = t.TempDir()
		out, err := sh.CombinedOutput()
		if err != nil {
			t.Errorf("%s:%d: the block failed against a devstack (%v):\n%s\n%s", b.page, b.line, err,
				strings.Join(script, "\n"), out)
		}
		ran += len(script)
	}
	t.Logf("%d commands in %d blocks checked", ran, len(blocks))
}

// rewriteForTest points a live command at srv and makes curl fail on an
// HTTP error.
func rewriteForTest(c string, srv *devstack.Stack) string {
	c = strings.ReplaceAll(c, "http://127.0.0.1:3100", srv.APIURL)
	if strings.HasPrefix(c, "curl ") {
		c = "curl --fail-with-body " + strings.TrimPrefix(c, "curl ")
	}
	return strings.ReplaceAll(c, "| tee ", "| tee /dev/stderr | tee ")
}

// checkCommand checks a command the test does not run for real; it returns
// what is wrong, or "".
func checkCommand(t *testing.T, bin, c string) string {
	t.Helper()
	f := strings.Fields(c)
	switch {
	case strings.HasPrefix(c, "go run ./cmd/bufferd "):
		return bufferdParses(bin, f[3:])
	case f[0] == "bufferd" || f[0] == "bin/bufferd":
		return bufferdParses(bin, f[1:])
	case strings.HasPrefix(c, "go build "):
		return run("go", append([]string{"list"}, f[len(f)-1])...)
	case strings.HasPrefix(c, "go get "):
		return isModule(f[len(f)-1])
	case f[0] == "scripts/test.sh":
		if st, err := os.Stat("../scripts/test.sh"); err != nil || st.Mode()&0o111 == 0 {
			return "scripts/test.sh is missing or not executable"
		}
		return ""
	case f[0] == "make":
		return run("make", append([]string{"-n"}, f[1:]...)...)
	case strings.HasPrefix(c, "docker compose "):
		return needFiles("docker-compose.yml")
	case strings.HasPrefix(c, "docker build "):
		return needFiles("Dockerfile")
	case strings.HasPrefix(c, "docker push "), strings.HasPrefix(c, "kubectl "):
		return "" // needs a registry or a cluster; what they install is checked by deploy/
	case strings.HasPrefix(c, "helm upgrade --install "):
		files := []string{filepath.Join(f[4], "Chart.yaml")}
		for i, a := range f {
			if a == "-f" && i+1 < len(f) {
				files = append(files, f[i+1])
			}
		}
		return needFiles(files...)
	case strings.HasPrefix(c, "helm test "):
		return needFiles("helm/bufferd/templates/tests")
	case setting.MatchString(c):
		// A setting: bufferd must know the variable.
		name := c[:strings.IndexByte(c, '=')]
		help, _ := exec.Command(bin, "api", "--help").CombinedOutput()
		if !strings.Contains(string(help), "env "+name+")") {
			return "bufferd api does not read " + name
		}
		return ""
	}
	return "no check for this kind of command: add one to docs/commands_test.go"
}

// bufferdParses runs `bufferd args --help`: the subcommand and every flag
// must exist.
func bufferdParses(bin string, args []string) string {
	return run(bin, append(args, "--help")...)
}

// isModule reports whether path (with an optional @version) is a Go module
// of the repository, in the directory its path names.
func isModule(path string) string {
	path, _, _ = strings.Cut(path, "@")
	dir, ok := strings.CutPrefix(path, "github.com/bufferd/bufferd/")
	if !ok {
		return path + " is not a module of this repository"
	}
	cmd := exec.Command("go", "list", "-m")
	cmd.Dir = filepath.Join("..", dir)
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != path {
		return fmt.Sprintf("%s/ is not module %s: %v %s", dir, path, err, out)
	}
	return ""
}

// needFiles reports the paths (from the repository root) that are missing.
func needFiles(paths ...string) string {
	var missing []string
	for _, p := range paths {
		if _, err := os.Stat(filepath.Join("..", p)); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return "missing " + strings.Join(missing, ", ")
	}
	return ""
}

// run runs a command from the repository root; "" when it exits 0.
func run(name string, args ...string) string {
	cmd := exec.Command(name, args...)
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	if err != nil {
		return err.Error() + ": " + string(out)
	}
	return ""
}

// The command synopses in backticks (`bufferd pool add --asset …`) name
// subcommands and flags that exist.
func TestDocumentedSynopses(t *testing.T) {
	bin := buildBufferd(t)
	span := regexp.MustCompile("`((?:go run \\./cmd/)?bufferd [^`]+)`")
	flag := regexp.MustCompile(`--[a-z][a-z0-9-]+`)
	n := 0
	for _, p := range documents(t) {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range span.FindAllStringSubmatch(string(raw), -1) {
			words := strings.Fields(strings.TrimPrefix(m[1], "go run ./cmd/"))[1:]
			var path []string
			for _, w := range words {
				if !regexp.MustCompile(`^[a-z]+$`).MatchString(w) {
					break
				}
				path = append(path, w)
			}
			if len(path) > 0 && (path[0] == "up" || path[0] == "status") {
				path = nil // `bufferd migrate up` / `status` written as one cell
			}
			out, err := exec.Command(bin, append(path, "--help")...).CombinedOutput()
			if err != nil {
				t.Errorf("%s: `%s`: %v\n%s", p, m[1], err, out)
				continue
			}
			for _, fl := range flag.FindAllString(m[1], -1) {
				if fl != "--help" && !strings.Contains(string(out), fl+" ") {
					t.Errorf("%s: `%s`: bufferd %s has no flag %s", p, m[1], strings.Join(path, " "), fl)
				}
			}
			n++
		}
	}
	if n < 10 {
		t.Fatalf("found %d synopses; the pages have more", n)
	}
	t.Logf("%d synopses checked", n)
}

// buildBufferd builds the binary once per test binary run.
func buildBufferd(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bufferd-docs-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "bufferd")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/bufferd").CombinedOutput()
		if err != nil {
			buildErr = &buildError{out: string(out), err: err}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}
