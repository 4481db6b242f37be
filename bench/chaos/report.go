package chaos

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// maxListed bounds the violations and history lines a report prints.
const maxListed = 60

// Write prints the report for people: what was done, what was checked, and
// for a failure the seed, the violations and the shortest history found. It
// returns the first error writing to w.
func (r *Report) Write(w io.Writer) error {
	p := &printer{w: w}
	r.print(p)
	return p.err
}

// printer writes to w until a write fails, keeping that error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

func (r *Report) print(w *printer) {
	w.printf("bufferd chaos: seed %d, %s, %d round(s), %d quiet point(s) checked, %d UTXO grant(s)\n",
		r.seed, r.elapsed.Round(time.Millisecond), r.rounds, r.quietPoints, r.grants)
	writeCounts(w, "client operations", r.ops)
	writeCounts(w, "operation outcomes", r.outcomes)
	writeCounts(w, "chain events", r.chain)
	writeCounts(w, "faults", r.faults)
	w.printf("violations: %d; UTXOs lost: %d\n", len(r.violations), r.lost)
	if r.stopReason != "" {
		w.printf("result: INCOMPLETE (seed %d): %s\n", r.seed, r.stopReason)
		w.printf("history so far (%d steps):\n", countSteps(r.history))
		writeEvents(w, r.history)
		w.printf("process logs: %s\n", r.workDir)
		return
	}
	if !r.failed() {
		w.printf("result: PASS (seed %d)\n", r.seed)
		return
	}
	for i, v := range r.violations {
		if i == maxListed {
			w.printf("  ... %d more\n", len(r.violations)-i)
			break
		}
		w.printf("  %s\n", v)
	}
	w.printf("result: FAIL (seed %d)\n", r.seed)
	switch {
	case r.shortest != nil:
		w.printf("shortest failing history (%d steps, found in %d replay(s)):\n", countSteps(r.shortest), r.shrinkTrials)
		writeEvents(w, r.shortest)
	case r.shrinkTrials > 0:
		w.printf("no replay of a shorter history failed again (%d replay(s)); the failing history (%d steps):\n",
			r.shrinkTrials, countSteps(r.history))
		writeEvents(w, r.history)
	default:
		w.printf("the failing history (%d steps):\n", countSteps(r.history))
		writeEvents(w, r.history)
	}
	if r.workDir != "" {
		w.printf("process logs: %s\n", r.workDir)
	}
}

func countSteps(events []event) int {
	n := 0
	for _, e := range events {
		if e.Index >= 0 {
			n++
		}
	}
	return n
}

// writeEvents prints events, the last ones when there are many (the failure
// is at the end).
func writeEvents(w *printer, events []event) {
	start := 0
	if len(events) > 4*maxListed {
		start = len(events) - 4*maxListed
		w.printf("  ... %d earlier events\n", start)
	}
	for _, e := range events[start:] {
		w.printf("  %s\n", e)
	}
}

func writeCounts(w *printer, title string, m map[string]int) {
	total := 0
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		total += m[k]
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	w.printf("%s: %d (%s)\n", title, total, strings.Join(parts, ", "))
}
