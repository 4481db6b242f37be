package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bufferd/bufferd/internal/testenv"
)

// `bufferd bench --local` starts a whole deployment, runs every scenario
// (briefly here) and writes a report whose duplicate checks found nothing.
func TestBenchRunsEveryScenarioLocally(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a whole deployment")
	}
	out := filepath.Join(t.TempDir(), "report.md")
	cmd := exec.Command(binary, "bench", "--local", "1", "--duration", "1s", "--pool-size", "300",
		"--memory-reservations", "200", "--out", out,
		"--database-url", testenv.DatabaseURL(), "--redis-url", testenv.RedisURL())
	cmd.Env = append(os.Environ(), "BUFFERD_LOG_LEVEL=warn")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bench: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	report := string(b)
	for _, want := range []string{"| a: ", "| half: ", "| b: ", "| c: ", "| d: ", "| e: ", "Journal check:", "Memory: 200 live reservations",
		"| zero duplicate grants in every scenario | 0 client-side", "; 0 in the journal", "| submit -> change reservable p99 < 1 s | p50"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "DUPLICATE") {
		t.Errorf("the bench found duplicates:\n%s", report)
	}
}
