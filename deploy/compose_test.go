package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// The demo pool bufferd's simulated chain seeds (cmd/bufferd/dev.go).
var (
	demoAsset   = strings.Repeat("f", 64)
	demoProgram = func() string {
		s := sha256.Sum256([]byte("bufferd demo contract"))
		return "0020" + hex.EncodeToString(s[:])
	}()
)

// loadCompose loads docker-compose.yml as `docker compose` does (schema
// validation, interpolation, merges, consistency checks), with an empty
// environment so the defaults are what is checked.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts, err := cli.NewProjectOptions([]string{composeFile},
		cli.WithWorkingDirectory(".."),
		cli.WithEnv([]string{}),
		cli.WithConsistency(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(ctx)
	if err != nil {
		t.Fatalf("load %s: %v", composeFile, err)
	}
	return p
}

// bufferdServices are the services that run the bufferd image, by command.
var bufferdServices = map[string][]string{
	"migrate":   {"migrate", "up"},
	"demo-pool": {"pool", "add", "--asset", demoAsset, "--program", demoProgram},
	"chain":     {"simchain", "--addr", "0.0.0.0:3101", "--seed"},
	"api-1":     {"api"},
	"api-2":     {"api"},
	"syncer-1":  {"syncer"},
	"syncer-2":  {"syncer"},
}

func TestComposeServicesAndImages(t *testing.T) {
	p := loadCompose(t)
	want := []string{"api-1", "api-2", "chain", "demo-pool", "lb", "migrate", "postgres", "redis", "syncer-1", "syncer-2"}
	if got := slices.Sorted(maps.Keys(p.Services)); !slices.Equal(got, want) {
		t.Fatalf("services %v, want %v", got, want)
	}
	root, _ := filepath.Abs("..")
	known := mustKnownVariables(t)
	for name, cmd := range bufferdServices {
		s := p.Services[name]
		if s.Image != "bufferd:local" || s.Build == nil || s.Build.Context != root {
			t.Errorf("%s: image %q build %+v, want bufferd:local built from the repository root", name, s.Image, s.Build)
		}
		if s.Build != nil && s.Build.Dockerfile != "Dockerfile" {
			t.Errorf("%s: Dockerfile %q", name, s.Build.Dockerfile)
		}
		if !slices.Equal(s.Command, cmd) {
			t.Errorf("%s: command %v, want %v", name, s.Command, cmd)
		}
		if len(s.Entrypoint) != 0 {
			t.Errorf("%s: overrides the image's entrypoint", name)
		}
		if !s.ReadOnly || !slices.Equal(s.CapDrop, []string{"ALL"}) || !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: not hardened (read_only %v, cap_drop %v, security_opt %v)", name, s.ReadOnly, s.CapDrop, s.SecurityOpt)
		}
		for k := range s.Environment {
			if !known[k] {
				t.Errorf("%s: sets %s, which bufferd does not read", name, k)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(root, "Dockerfile")); err != nil {
		t.Error(err)
	}
}

func TestComposeHealthchecksProbeWhatEachServiceServes(t *testing.T) {
	p := loadCompose(t)
	for name, s := range p.Services {
		hc := s.HealthCheck
		oneShot := name == "migrate" || name == "demo-pool"
		if oneShot {
			if hc == nil || !hc.Disable || s.Restart != "no" {
				t.Errorf("%s: a one-shot service wants no healthcheck and restart \"no\" (got %+v, %q)", name, hc, s.Restart)
			}
			continue
		}
		if hc == nil || hc.Disable || len(hc.Test) < 2 || hc.Test[0] != "CMD" || hc.Interval == nil || hc.Timeout == nil || hc.Retries == nil {
			t.Errorf("%s: no healthcheck in exec form with interval, timeout and retries: %+v", name, hc)
			continue
		}
		if s.Restart != "unless-stopped" {
			t.Errorf("%s: restart %q", name, s.Restart)
		}
		if _, ok := bufferdServices[name]; !ok {
			continue
		}
		// The image has no shell or curl: bufferd probes itself, on the port it listens on.
		test := []string(hc.Test)
		if len(test) != 5 || test[1] != "/bufferd" || test[2] != "healthcheck" || test[3] != "--url" {
			t.Errorf("%s: healthcheck %v, want /bufferd healthcheck --url", name, test)
			continue
		}
		u, err := url.Parse(test[4])
		if err != nil {
			t.Fatal(err)
		}
		var listen, path string
		switch {
		case strings.HasPrefix(name, "api-"):
			listen, path = env(s, "BUFFERD_ADDR"), "/readyz"
		case strings.HasPrefix(name, "syncer-"):
			listen, path = env(s, "BUFFERD_METRICS_ADDR"), "/readyz"
		case name == "chain":
			listen, path = s.Command[2], "/status"
		}
		_, port, err := net.SplitHostPort(listen)
		if err != nil {
			t.Errorf("%s: listen address %q: %v", name, listen, err)
			continue
		}
		if u.Hostname() != "127.0.0.1" || u.Port() != port || u.Path != path {
			t.Errorf("%s: probes %s, but listens on %s (want %s)", name, u, listen, path)
		}
		if host, _, _ := net.SplitHostPort(listen); host != "0.0.0.0" {
			t.Errorf("%s: listens on %s, unreachable from other containers", name, listen)
		}
	}
}

func TestComposeDependencyGraph(t *testing.T) {
	p := loadCompose(t)
	const (
		healthy   = types.ServiceConditionHealthy
		completed = types.ServiceConditionCompletedSuccessfully
	)
	backing := map[string]string{"postgres": healthy, "redis": healthy, "migrate": completed}
	want := map[string]map[string]string{
		"postgres":  {},
		"redis":     {},
		"migrate":   {"postgres": healthy},
		"demo-pool": {"migrate": completed},
		"chain":     {},
		"api-1":     backing,
		"api-2":     backing,
		"syncer-1":  merged(backing, map[string]string{"chain": healthy, "demo-pool": completed}),
		"syncer-2":  merged(backing, map[string]string{"chain": healthy, "demo-pool": completed}),
		"lb":        {"api-1": healthy, "api-2": healthy},
	}
	for name, deps := range want {
		got := map[string]string{}
		for d, c := range p.Services[name].DependsOn {
			got[d] = c.Condition
			if !c.Required {
				t.Errorf("%s: dependency on %s is optional", name, d)
			}
		}
		if !maps.Equal(got, deps) {
			t.Errorf("%s depends on %v, want %v", name, got, deps)
		}
	}
	// Every service a service waits to be healthy has a healthcheck; every one
	// it waits to complete is a one-shot.
	for name, s := range p.Services {
		for d, c := range s.DependsOn {
			dep := p.Services[d]
			switch c.Condition {
			case healthy:
				if dep.HealthCheck == nil || dep.HealthCheck.Disable {
					t.Errorf("%s waits for %s to be healthy, which has no healthcheck", name, d)
				}
			case completed:
				if dep.Restart != "no" {
					t.Errorf("%s waits for %s to complete, which restarts (%q)", name, d, dep.Restart)
				}
			default:
				t.Errorf("%s: dependency on %s with condition %q", name, d, c.Condition)
			}
		}
	}
	// The graph has no cycle, and starts in this order.
	order := startOrder(t, p)
	for _, before := range [][2]string{{"postgres", "migrate"}, {"migrate", "demo-pool"}, {"migrate", "api-1"},
		{"demo-pool", "syncer-1"}, {"chain", "syncer-2"}, {"api-1", "lb"}, {"api-2", "lb"}} {
		if slices.Index(order, before[0]) > slices.Index(order, before[1]) {
			t.Errorf("%s starts after %s: %v", before[0], before[1], order)
		}
	}
}

// startOrder sorts the services so each comes after its dependencies,
// failing on a cycle.
func startOrder(t *testing.T, p *types.Project) []string {
	t.Helper()
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(string, []string)
	visit = func(n string, path []string) {
		switch state[n] {
		case 1:
			t.Fatalf("dependency cycle: %v", append(path, n))
		case 2:
			return
		}
		state[n] = 1
		for _, d := range slices.Sorted(maps.Keys(p.Services[n].DependsOn)) {
			visit(d, append(path, n))
		}
		state[n] = 2
		order = append(order, n)
	}
	for _, n := range slices.Sorted(maps.Keys(p.Services)) {
		visit(n, nil)
	}
	return order
}

func TestComposeWiresServicesTogether(t *testing.T) {
	p := loadCompose(t)
	pg := p.Services["postgres"]
	for name := range bufferdServices {
		s := p.Services[name]
		if name == "chain" {
			continue
		}
		db, err := url.Parse(env(s, "BUFFERD_DATABASE_URL"))
		if err != nil {
			t.Fatal(err)
		}
		pw, _ := db.User.Password()
		if db.Hostname() != "postgres" || db.Port() != "5432" || pw != env(pg, "POSTGRES_PASSWORD") ||
			db.Path != "/"+env(pg, "POSTGRES_DB") || db.User.Username() != "postgres" {
			t.Errorf("%s: database URL %s does not match the postgres service", name, db.Redacted())
		}
		if name == "migrate" || name == "demo-pool" {
			continue
		}
		if r, err := url.Parse(env(s, "BUFFERD_REDIS_URL")); err != nil || r.Hostname() != "redis" || r.Port() != "6379" {
			t.Errorf("%s: redis URL %q", name, env(s, "BUFFERD_REDIS_URL"))
		}
		_, chainPort, _ := net.SplitHostPort(p.Services["chain"].Command[2])
		if c, err := url.Parse(env(s, "BUFFERD_CHAIN_URL")); err != nil || c.Hostname() != "chain" || c.Port() != chainPort {
			t.Errorf("%s: chain URL %q, want the chain service on port %s", name, env(s, "BUFFERD_CHAIN_URL"), chainPort)
		}
		if env(s, "BUFFERD_ADMIN_TOKEN") == "" {
			t.Errorf("%s: no admin token", name)
		}
	}

	// The load balancer: published on the host's 3100, proxying to both APIs.
	lb := p.Services["lb"]
	if len(lb.Ports) != 1 || lb.Ports[0].Published != "3100" || lb.Ports[0].HostIP != "127.0.0.1" || lb.Ports[0].Target != 80 {
		t.Errorf("lb ports %+v, want 127.0.0.1:3100 -> 80", lb.Ports)
	}
	var conf string
	for _, v := range lb.Volumes {
		if v.Target == "/etc/nginx/conf.d/default.conf" && v.ReadOnly {
			b, err := os.ReadFile(v.Source)
			if err != nil {
				t.Fatal(err)
			}
			conf = string(b)
		}
	}
	if conf == "" {
		t.Fatal("lb does not mount its nginx config read-only")
	}
	upstreams := regexp.MustCompile(`(?m)^\s*server\s+([\w.-]+:\d+)`).FindAllStringSubmatch(conf, -1)
	var servers []string
	for _, m := range upstreams {
		servers = append(servers, m[1])
	}
	var apis []string
	for _, name := range []string{"api-1", "api-2"} {
		_, port, _ := net.SplitHostPort(env(p.Services[name], "BUFFERD_ADDR"))
		apis = append(apis, name+":"+port)
	}
	if !slices.Equal(servers, apis) {
		t.Errorf("nginx upstream servers %v, want %v", servers, apis)
	}
	if !strings.Contains(conf, "proxy_pass http://bufferd_api;") || !regexp.MustCompile(`listen\s+80;`).MatchString(conf) {
		t.Error("nginx does not listen on 80 and proxy to the upstream")
	}
	// Reservations long-poll for up to 30 s: nginx must wait longer.
	m := regexp.MustCompile(`proxy_read_timeout\s+(\d+)s;`).FindStringSubmatch(conf)
	if len(m) < 2 || atoi(m[1]) <= 30 {
		t.Errorf("proxy_read_timeout %v, want more than the 30 s long-poll", m)
	}

	// The simulated chain is reachable from the host for /sim/* controls.
	ch := p.Services["chain"]
	if len(ch.Ports) != 1 || ch.Ports[0].Published != "3101" || ch.Ports[0].Target != 3101 {
		t.Errorf("chain ports %+v", ch.Ports)
	}
	for _, name := range []string{"postgres", "redis"} {
		if len(p.Services[name].Ports) != 0 {
			t.Errorf("%s is published on the host (it would clash with local servers)", name)
		}
		if len(p.Services[name].Volumes) == 0 {
			t.Errorf("%s keeps no data across restarts", name)
		}
	}
}

func TestComposeAdminTokenComesFromTheEnvironment(t *testing.T) {
	ctx := context.Background()
	opts, err := cli.NewProjectOptions([]string{composeFile}, cli.WithWorkingDirectory(".."),
		cli.WithEnv([]string{"BUFFERD_ADMIN_TOKEN=from-the-shell"}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"api-1", "api-2"} {
		if got := env(p.Services[name], "BUFFERD_ADMIN_TOKEN"); got != "from-the-shell" {
			t.Errorf("%s: admin token %q", name, got)
		}
	}
}

func TestOperationsPageShowsTheComposeDemo(t *testing.T) {
	b, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, s := range []string{"## Run with docker-compose", "## Install on Kubernetes", "docker compose up",
		demoAsset, demoProgram, "http://127.0.0.1:3100", "existingSecret", "values-prod.yaml", "helm test"} {
		if !strings.Contains(page, s) {
			t.Errorf("docs/operations.md does not mention %q", s)
		}
	}
}

func env(s types.ServiceConfig, k string) string {
	if v := s.Environment[k]; v != nil {
		return *v
	}
	return ""
}

func merged(a, b map[string]string) map[string]string {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
