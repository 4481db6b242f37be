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
// for a failure the seed, the violations and the shortest history found.
func (r *Report) Write(w io.Writer) {
	fmt.Fprintf(w, "bufferd chaos: seed %d, %s, %d round(s), %d quiet point(s) checked, %d UTXO grant(s)\n",
		r.Seed, r.Elapsed.Round(time.Millisecond), r.Rounds, r.QuietPoints, r.Grants)
	writeCounts(w, "client operations", r.Ops)
	writeCounts(w, "operation outcomes", r.Outcomes)
	writeCounts(w, "chain events", r.Chain)
	writeCounts(w, "faults", r.Faults)
	fmt.Fprintf(w, "violations: %d; UTXOs lost: %d\n", len(r.Violations), r.Lost)
	if r.Error != "" {
		fmt.Fprintf(w, "result: INCOMPLETE (seed %d): %s\n", r.Seed, r.Error)
		fmt.Fprintf(w, "history so far (%d steps):\n", countSteps(r.History))
		writeEvents(w, r.History)
		fmt.Fprintf(w, "process logs: %s\n", r.WorkDir)
		return
	}
	if !r.Failed() {
		fmt.Fprintf(w, "result: PASS (seed %d)\n", r.Seed)
		return
	}
	for i, v := range r.Violations {
		if i == maxListed {
			fmt.Fprintf(w, "  ... %d more\n", len(r.Violations)-i)
			break
		}
		fmt.Fprintf(w, "  %s\n", v)
	}
	fmt.Fprintf(w, "result: FAIL (seed %d)\n", r.Seed)
	switch {
	case r.Shortest != nil:
		fmt.Fprintf(w, "shortest failing history (%d steps, found in %d replay(s)):\n", countSteps(r.Shortest), r.ShrinkTrials)
		writeEvents(w, r.Shortest)
	case r.ShrinkTrials > 0:
		fmt.Fprintf(w, "no replay of a shorter history failed again (%d replay(s)); the failing history (%d steps):\n",
			r.ShrinkTrials, countSteps(r.History))
		writeEvents(w, r.History)
	default:
		fmt.Fprintf(w, "the failing history (%d steps):\n", countSteps(r.History))
		writeEvents(w, r.History)
	}
	if r.WorkDir != "" {
		fmt.Fprintf(w, "process logs: %s\n", r.WorkDir)
	}
}

func countSteps(events []Event) int {
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
func writeEvents(w io.Writer, events []Event) {
	start := 0
	if len(events) > 4*maxListed {
		start = len(events) - 4*maxListed
		fmt.Fprintf(w, "  ... %d earlier events\n", start)
	}
	for _, e := range events[start:] {
		fmt.Fprintf(w, "  %s\n", e)
	}
}

func writeCounts(w io.Writer, title string, m map[string]int) {
	total := 0
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		total += m[k]
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	fmt.Fprintf(w, "%s: %d (%s)\n", title, total, strings.Join(parts, ", "))
}
