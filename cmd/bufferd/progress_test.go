package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestProgressIsOneUpdatingLineOnATerminal(t *testing.T) {
	var out bytes.Buffer // the terminal, where the log goes too
	log := slog.New(newProgressHandler(slog.NewJSONHandler(&out, nil), &out)).With("job", "index")
	log.Info("index backfill", "progress", "50.0%", "tip", 10)
	log.Info("index backfill", "progress", "100.0%", "tip", 10)
	log.Info("backfill done", "blocks", 10)
	got := out.String()
	want := clearLine + "index backfill progress=50.0% tip=10" + clearLine + "index backfill progress=100.0% tip=10" + clearLine + "{"
	if !strings.HasPrefix(got, want) || !strings.Contains(got, `"msg":"backfill done","job":"index","blocks":10}`) ||
		strings.Count(got, "\n") != 1 {
		t.Fatalf("terminal got %q, want progress lines drawn over each other, then the log line", got)
	}
}
