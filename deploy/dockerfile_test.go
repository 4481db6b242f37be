package deploy

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case
	args string
}

// parseDockerfile splits a Dockerfile into instructions (comments and parser
// directives dropped, backslash continuations joined).
func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.Join(strings.Fields(args), " ")})
		cur.Reset()
	}
	return out
}

func TestDockerfileBuildsAStaticNonrootImage(t *testing.T) {
	ins := parseDockerfile(t, dockerfile)
	var stages [][]instruction
	for _, in := range ins {
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("%s before the first FROM", in.cmd)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	if len(stages) != 2 {
		t.Fatalf("%d stages, want a builder and the final image", len(stages))
	}
	build, final := stages[0], stages[1]

	if !regexp.MustCompile(`^golang:1\.26(\.\d+)?(-\S+)?(@sha256:[0-9a-f]{64})? AS build$`).MatchString(build[0].args) {
		t.Errorf("builder FROM %q, want golang:1.26 AS build", build[0].args)
	}
	var buildCmd string
	env := map[string]bool{}
	for _, in := range build {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			buildCmd = in.args
		}
		if in.cmd == "ENV" {
			for _, f := range strings.Fields(in.args) {
				env[f] = true
			}
		}
	}
	if !env["CGO_ENABLED=0"] && !strings.Contains(buildCmd, "CGO_ENABLED=0") {
		t.Error("the binary is not built with CGO_ENABLED=0 (static)")
	}
	for _, s := range []string{"-trimpath", "-s -w", "-X main.version=${VERSION}", "-X main.revision=${REVISION}", "./cmd/bufferd"} {
		if !strings.Contains(buildCmd, s) {
			t.Errorf("go build %q lacks %s", buildCmd, s)
		}
	}

	// A digest pin is good practice and allowed.
	if !regexp.MustCompile(`^gcr\.io/distroless/static-debian12:nonroot(@sha256:[0-9a-f]{64})?$`).MatchString(final[0].args) {
		t.Errorf("final image FROM %q, want distroless static nonroot", final[0].args)
	}
	got := map[string][]string{}
	for _, in := range final {
		got[in.cmd] = append(got[in.cmd], in.args)
	}
	// nonroot, by name or as its uid:gid 65532 (numeric lets Kubernetes'
	// runAsNonRoot verify it); never root.
	if u := got["USER"]; len(u) != 1 || !regexp.MustCompile(`^(nonroot(:nonroot)?|65532(:65532)?)$`).MatchString(u[0]) {
		t.Errorf("USER %v, want nonroot or 65532:65532", u)
	}
	// OCI labels: where the image comes from and which build it is.
	labels := map[string]string{}
	for _, l := range got["LABEL"] {
		for _, m := range regexp.MustCompile(`(\S+?)="([^"]*)"`).FindAllStringSubmatch(l, -1) {
			labels[m[1]] = m[2]
		}
	}
	args := strings.Join(got["ARG"], " ")
	for k, arg := range map[string]string{"org.opencontainers.image.source": "SOURCE", "org.opencontainers.image.version": "VERSION", "org.opencontainers.image.revision": "REVISION"} {
		if labels[k] != "${"+arg+"}" || !strings.Contains(args, arg) {
			t.Errorf("LABEL %s=%q, want ${%s} from a build argument of the final stage (%v)", k, labels[k], arg, got["ARG"])
		}
	}
	if e := got["EXPOSE"]; len(e) != 1 || !slices.Equal(strings.Fields(e[0]), []string{"3100", "9100"}) {
		t.Errorf("EXPOSE %v, want 3100 9100", e)
	}
	if e := got["ENTRYPOINT"]; len(e) != 1 || e[0] != `["/bufferd"]` {
		t.Errorf("ENTRYPOINT %v, want exec form [\"/bufferd\"]", e)
	}
	if c := got["CMD"]; len(c) != 1 || c[0] != `["api"]` {
		t.Errorf("CMD %v, want [\"api\"]", c)
	}
	envs := strings.Join(got["ENV"], " ")
	for _, s := range []string{"BUFFERD_ADDR=0.0.0.0:3100", "BUFFERD_METRICS_ADDR=0.0.0.0:9100"} {
		if !strings.Contains(envs, s) {
			t.Errorf("final image does not set %s", s)
		}
	}
	// No shell in distroless: the healthcheck is bufferd's own, in exec form,
	// probing the port the API listens on.
	hc := got["HEALTHCHECK"]
	if len(hc) != 1 || !strings.Contains(hc[0], `CMD ["/bufferd", "healthcheck", "--url", "http://127.0.0.1:3100/livez"]`) {
		t.Errorf("HEALTHCHECK %v, want bufferd healthcheck in exec form", hc)
	}
	for _, in := range final {
		if in.cmd == "RUN" {
			t.Errorf("RUN %q in the final stage: distroless has no shell", in.args)
		}
		if in.cmd == "COPY" && !strings.HasPrefix(in.args, "--from=build ") {
			t.Errorf("final stage copies %q from the context", in.args)
		}
	}
}

func TestDockerignoreKeepsTheBuildInputs(t *testing.T) {
	b, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, strings.Trim(l, "/"))
		}
	}
	for _, p := range []string{".git", "deploy", "helm", "data", "bufferd"} {
		if !slices.Contains(patterns, p) {
			t.Errorf(".dockerignore does not leave out %s", p)
		}
	}
	// Nothing the Go build reads may be left out: the module files and every
	// package directory of the root module.
	entries, err := os.ReadDir("..")
	if err != nil {
		t.Fatal(err)
	}
	keep := []string{"go.mod", "go.sum"}
	for _, e := range entries {
		if e.IsDir() && !slices.Contains([]string{".git", "deploy", "helm", "data", "bin"}, e.Name()) && !strings.HasPrefix(e.Name(), ".") {
			keep = append(keep, e.Name())
		}
	}
	for _, k := range keep {
		for _, p := range patterns {
			if p == k || p == k+"/" || (strings.ContainsAny(p, "*?[") && matchGlob(p, k)) {
				t.Errorf(".dockerignore pattern %q leaves out %s, which the build needs", p, k)
			}
		}
	}
}

func matchGlob(pattern, name string) bool {
	re := "^" + strings.NewReplacer("**/", "(.*/)?", "*", "[^/]*", "?", "[^/]", ".", `\.`).Replace(pattern) + "$"
	ok, _ := regexp.MatchString(re, name)
	return ok
}

// go mod download reads the go.mod of every module the root module replaces
// with a directory (./client): the build stage copies those files with the
// root's go.mod and go.sum, before the download.
func TestDockerfileCopiesReplacedModules(t *testing.T) {
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	dirs := regexp.MustCompile(`(?m)=>\s*\./(\S+)\s*$`).FindAllStringSubmatch(string(mod), -1)
	if len(dirs) == 0 {
		t.Fatal("go.mod replaces no module with a directory; the client module is one")
	}
	var copied []string
	for _, in := range parseDockerfile(t, dockerfile) {
		if in.cmd == "RUN" && strings.Contains(in.args, "go mod download") {
			for _, d := range dirs {
				for _, f := range []string{"go.mod", "go.sum"} {
					if p := d[1] + "/" + f; !slices.Contains(copied, p) {
						t.Errorf("%s is not copied before go mod download", p)
					}
				}
			}
			return
		}
		if in.cmd == "COPY" {
			copied = append(copied, strings.Fields(in.args)...)
		}
	}
	t.Fatal("no go mod download in the Dockerfile")
}
