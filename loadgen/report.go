package loadgen

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Check is one target of the report: its goal, what was measured, whether
// it was met.
type Check struct {
	Target, Measured string
	Met              bool
	Known            bool // false when the run did not measure it
}

// Checks evaluates the targets of the performance issue.
func (r *Report) Checks() []Check {
	var out []Check
	a, e, half, c := r.Scenario("a"), r.Scenario("e"), r.Scenario("half"), r.Scenario("c")
	ratio := Check{Target: "reserve+release request rate >= 50% of the floor (same run, journal on)"}
	if a != nil && e != nil && e.RequestRate() > 0 {
		x := a.RequestRate() / e.RequestRate()
		ratio.Measured = fmt.Sprintf("%.0f / %.0f req/s = %.0f%%", a.RequestRate(), e.RequestRate(), 100*x)
		ratio.Met, ratio.Known = x >= 0.5, true
	}
	out = append(out, ratio)
	p99 := Check{Target: "p99 reserve latency < 5 ms at half of the maximum throughput"}
	if half != nil && half.Latency.Count > 0 {
		p99.Measured = fmt.Sprintf("%s at %.0f cycles/s", ms(half.Latency.P99), half.CycleRate())
		p99.Met, p99.Known = half.Latency.P99 < 5*time.Millisecond, true
	}
	out = append(out, p99)
	sub := Check{Target: "submit -> change reservable p99 < 1 s"}
	if c != nil && c.Latency.Count > 0 {
		sub.Measured = fmt.Sprintf("p50 %s, p99 %s (%d cycles)", ms(c.Latency.P50), ms(c.Latency.P99), c.Latency.Count)
		sub.Met, sub.Known = c.Latency.P99 < time.Second, true
	}
	out = append(out, sub)
	dups := 0
	grants := 0
	for _, s := range r.Scenarios {
		dups += len(s.Duplicates)
		grants += s.Grants
	}
	dup := Check{Target: "zero duplicate grants in every scenario", Known: true,
		Measured: fmt.Sprintf("%d client-side over %d grants", dups, grants)}
	if r.JournalChecked {
		dup.Measured += fmt.Sprintf("; %d in the journal over %d rows", len(r.JournalDuplicates), r.JournalRows)
	}
	dup.Met = dups == 0 && len(r.JournalDuplicates) == 0
	out = append(out, dup)
	mem := Check{Target: "memory per 100,000 live reservations, written down"}
	if m := r.Memory; m != nil && m.Reservations > 0 {
		per := func(b int64) float64 { return float64(b) * 100_000 / float64(m.Reservations) / (1 << 20) }
		mem.Measured = fmt.Sprintf("Redis %.1f MiB, journal %.1f MiB (measured over %d)", per(m.RedisBytes), per(m.JournalBytes), m.Reservations)
		mem.Met, mem.Known = true, true
	}
	out = append(out, mem)
	return out
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// Markdown renders the report.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# bufferd bench report\n\n")
	fmt.Fprintf(&b, "Run %s, %s per scenario, %d API replica(s).\n\n", r.Started.UTC().Format(time.RFC3339), r.Options.Duration, len(r.Target.APIs))
	b.WriteString("| scenario | clients | requests | req/s | ops/s | p50 | p99 | p99.9 | grants | duplicates | answers |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.Scenarios {
		fmt.Fprintf(&b, "| %s: %s | %d | %d | %.0f | %.0f | %s | %s | %s | %d | %d | %s |\n", s.Key, s.Title, s.Clients, s.Requests,
			s.RequestRate(), s.CycleRate(), ms(s.Latency.P50), ms(s.Latency.P99), ms(s.Latency.P999), s.Grants, len(s.Duplicates), answerList(s.Answers))
	}
	for _, s := range r.Scenarios {
		if len(s.Extra) == 0 && len(s.Notes) == 0 && len(s.Duplicates) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n**%s** (%s):\n", s.Key, s.Title)
		keys := make([]string, 0, len(s.Extra))
		for k := range s.Extra {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			x := s.Extra[k]
			fmt.Fprintf(&b, "- %s: %d, p50 %s, p99 %s, p99.9 %s\n", k, x.Count, ms(x.P50), ms(x.P99), ms(x.P999))
		}
		for _, n := range s.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		for i, d := range s.Duplicates {
			if i == 10 {
				fmt.Fprintf(&b, "- ... %d more duplicates\n", len(s.Duplicates)-10)
				break
			}
			fmt.Fprintf(&b, "- DUPLICATE: %s\n", d)
		}
	}
	if r.JournalChecked {
		fmt.Fprintf(&b, "\nJournal check: %d rows of the scenarios' pools, %d UTXOs in two reservations at once.\n", r.JournalRows, len(r.JournalDuplicates))
		for i, d := range r.JournalDuplicates {
			if i == 10 {
				break
			}
			fmt.Fprintf(&b, "- DUPLICATE: %s\n", d)
		}
	}
	if m := r.Memory; m != nil {
		fmt.Fprintf(&b, "\nMemory: %d live reservations grew Redis's used_memory by %.1f MiB (%d bytes each) and the journal by %.1f MiB.\n",
			m.Reservations, float64(m.RedisBytes)/(1<<20), m.RedisBytes/int64(max(m.Reservations, 1)), float64(m.JournalBytes)/(1<<20))
	}
	b.WriteString("\n## Targets\n\n| target | measured | met |\n|---|---|---|\n")
	for _, c := range r.Checks() {
		met := "not measured"
		if c.Known {
			met = map[bool]string{true: "yes", false: "**no**"}[c.Met]
		}
		if c.Measured == "" {
			c.Measured = "-"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", c.Target, c.Measured, met)
	}
	return b.String()
}

func answerList(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
