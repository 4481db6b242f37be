package handlers

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// redoclyVersion is the @redocly/cli that lints openapi.yaml; scripts/ensure-services.sh
// installs the same one into ~/.cache/bufferd/redocly.
const redoclyVersion = "1.34.5"

// openapi.yaml passes redocly's recommended ruleset with no error. Without
// redocly the test skips, unless BUFFERD_REQUIRE_REDOCLY=1 (scripts/test.sh).
// BUFFERD_REDOCLY names another redocly binary.
func TestOpenAPILint(t *testing.T) {
	bin := os.Getenv("BUFFERD_REDOCLY")
	if bin == "" {
		cache, err := os.UserCacheDir() // as ensure-services.sh: $XDG_CACHE_HOME or ~/.cache
		if err != nil {
			t.Fatal(err)
		}
		bin = filepath.Join(cache, "bufferd", "redocly", "node_modules", ".bin", "redocly")
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("BUFFERD_REQUIRE_REDOCLY") == "1" {
			t.Fatalf("redocly is required and missing: %v (scripts/ensure-services.sh installs it)", err)
		}
		t.Skipf("redocly not installed (%v); scripts/ensure-services.sh installs @redocly/cli@%s", err, redoclyVersion)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, bin, args...)
		// Nothing leaves the machine: no telemetry, no update check.
		cmd.Env = append(os.Environ(), "REDOCLY_TELEMETRY=off", "REDOCLY_SUPPRESS_UPDATE_NOTICE=true", "NO_COLOR=1")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if v, err := run("--version"); err != nil || strings.TrimSpace(v) != redoclyVersion {
		t.Fatalf("redocly --version: %q %v; want %s", v, err, redoclyVersion)
	}
	out, err := run("lint", "--extends=recommended", "--format=stylish", "openapi.yaml")
	if err != nil {
		t.Fatalf("redocly lint (recommended) fails: %v\n%s", err, out)
	}
	if strings.Contains(out, "warning") {
		t.Logf("redocly lint warnings:\n%s", out)
	}
}
