package bench

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Thresholds of the report's targets.
const (
	goalFloorRatio     = 0.5
	goalHalfP99        = 5 * time.Millisecond
	goalReservableP99  = time.Second
	maxListedProblems  = 10
	memoryPer          = 100_000
	bytesPerMB         = 1 << 20
	notMeasured        = "not measured"
	statusMet          = "met"
	statusNotMet       = "**not met**"
	statusRecorded     = "recorded"
	statusNotMeasured  = "—"
	statusPartlyMet    = "met client-side; journal not checked"
	durationPrecisionS = time.Second
)

// Report is the outcome of a run; Markdown renders it.
type Report struct {
	// Deployment says what ran where (the caller sets it).
	Deployment string

	started, finished time.Time
	command           string // the command line
	apis              int
	cpus              int
	goVersion         string
	duration, warmup  time.Duration
	journalTolerance  time.Duration
	// loadBefore and loadAfter are the machine's load averages (1, 5, 15 min).
	loadBefore, loadAfter string
	// journalChecked says whether the journal was read; journalRows how many rows.
	journalChecked bool
	journalRows    int
	results        []*scenarioResult
}

// scenarioResult is the outcome of one scenario.
type scenarioResult struct {
	Name, Title string
	Clients     int
	// Rate is the target rate (cycles a second) of an open loop, 0 for a closed one.
	Rate float64
	// Unit names a cycle: "cycle", "grant", "request"...
	Unit string
	// Window is the measured span (after the warm-up).
	Window time.Duration
	// Ops are the outcomes by operation, counted in the window.
	Ops map[string]*opStats
	// Cycles completed in the window; Grants made in all (duplicate-checked).
	Cycles, Grants int
	// Pools are the pools the scenario used.
	Pools                               []int64
	ClientDuplicates, JournalDuplicates []Duplicate
	JournalChecked                      bool
	Notes                               []string
	Memory                              *memoryResult
	// CPU is how busy the machine was in the window, nil when unknown.
	CPU *cpuUse
	// Server is what the APIs' own request-duration histograms counted in
	// the window, by "METHOD route"; nil when they could not be read.
	Server map[string]histogram
	// LegacyWins is the share of scenario d's picks that won, nil elsewhere.
	LegacyWins *float64
}

// result returns the result of scenario name, or nil.
func (rep *Report) result(name string) *scenarioResult {
	for _, r := range rep.results {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// measured reports whether the scenario ran (was not skipped).
func (r *scenarioResult) measured() bool { return r != nil && r.Window > 0 }

// Op returns the outcomes of operation name (empty when it never ran).
func (r *scenarioResult) Op(name string) *opStats {
	if o := r.Ops[name]; o != nil {
		return o
	}
	return &opStats{}
}

// CycleRate is the completed cycles a second.
func (r *scenarioResult) CycleRate() float64 { return perSecond(r.Cycles, r.Window) }

// RequestRate is the requests a second, whatever their outcome.
func (r *scenarioResult) RequestRate() float64 {
	n := 0
	for name, o := range r.Ops {
		if name != opReservable && name != opReserveSvc { // not requests of their own
			n += o.Total()
		}
	}
	return perSecond(n, r.Window)
}

// okRate is the successful requests of ops a second.
func (r *scenarioResult) okRate(ops ...string) float64 {
	n := 0
	for _, name := range ops {
		n += r.Op(name).OK()
	}
	return perSecond(n, r.Window)
}

// Errors is the number of failed requests.
func (r *scenarioResult) Errors() int {
	n := 0
	for _, o := range r.Ops {
		n += o.ErrorCount()
	}
	return n
}

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// reportGoal is one target of the report and how the run did.
type reportGoal struct {
	Name, Measured, Status string
}

// goals evaluates the targets.
func (rep *Report) goals() []reportGoal {
	var goals []reportGoal
	a, e, half, c := rep.result("a"), rep.result("e"), rep.result("half"), rep.result("c")

	g := reportGoal{Name: fmt.Sprintf("reserve+release request rate ≥ %.0f%% of the floor, journal on", goalFloorRatio*100),
		Measured: notMeasured, Status: statusNotMeasured}
	if a.measured() && e.measured() {
		ra, re := a.okRate(opReserve, opRelease), e.okRate(opFloor)
		ratio := ra / re
		g.Measured = fmt.Sprintf("%.0f req/s vs floor %.0f req/s = %.0f%%", ra, re, ratio*100)
		g.Status = met(ratio >= goalFloorRatio)
	}
	goals = append(goals, g)

	g = reportGoal{Name: fmt.Sprintf("p99 reserve latency < %s at half of the maximum throughput", spaced(goalHalfP99)),
		Measured: notMeasured, Status: statusNotMeasured}
	if half.measured() {
		s := summarize(half.Op(opReserve).Latencies)
		g.Measured = fmt.Sprintf("p99 %s (p50 %s) at %.0f cycles/s (target rate %.0f/s)", ms(s.P99), ms(s.P50), half.CycleRate(), half.Rate)
		g.Status = met(s.Count > 0 && s.P99 < goalHalfP99 && half.Op(opReserve).ErrorCount() == 0)
	}
	goals = append(goals, g)

	g = reportGoal{Name: fmt.Sprintf("submit -> change reservable p99 < %s", spaced(goalReservableP99)), Measured: notMeasured, Status: statusNotMeasured}
	if c.measured() {
		o := c.Op(opReservable)
		s := summarize(o.Latencies)
		g.Measured = fmt.Sprintf("p50 %s, p99 %s, max %s over %d cycles", ms(s.P50), ms(s.P99), ms(s.Max), s.Count)
		if n := o.ErrorCount(); n > 0 {
			g.Measured += fmt.Sprintf("; %d never reservable within %s", n, reservableTimeout)
		}
		g.Status = met(s.Count > 0 && s.P99 < goalReservableP99 && o.ErrorCount() == 0)
	}
	goals = append(goals, g)

	d := rep.result("d")
	g = reportGoal{Name: fmt.Sprintf("legacy flow ≥ %d flows/s with ≥ %.0f%% of picks winning", goalLegacyRate, goalLegacyWins*100),
		Measured: notMeasured, Status: statusNotMeasured}
	if d.measured() && d.LegacyWins != nil {
		g.Measured = fmt.Sprintf("%.0f flows/s, %.1f%% of picks won", d.CycleRate(), *d.LegacyWins*100)
		g.Status = met(d.CycleRate() >= goalLegacyRate && *d.LegacyWins >= goalLegacyWins)
	}
	goals = append(goals, g)

	clientDups, journalDups, grants, scenarios := 0, 0, 0, 0
	journal := rep.journalChecked
	for _, r := range rep.results {
		if !r.measured() {
			continue
		}
		scenarios++
		clientDups += len(r.ClientDuplicates)
		journalDups += len(r.JournalDuplicates)
		grants += r.Grants
	}
	g = reportGoal{Name: "zero duplicate grants in every scenario", Measured: notMeasured, Status: statusNotMeasured}
	if scenarios > 0 {
		g.Measured = fmt.Sprintf("%d client-side over %d grants", clientDups, grants)
		if journal {
			g.Measured += fmt.Sprintf("; %d in the journal over %d rows", journalDups, rep.journalRows)
		} else {
			g.Measured += "; journal not checked (no --database-url)"
		}
		switch {
		case clientDups+journalDups > 0:
			g.Status = statusNotMet
		case journal:
			g.Status = statusMet
		default:
			g.Status = statusPartlyMet
		}
	}
	goals = append(goals, g)

	g = reportGoal{Name: "memory per 100,000 live reservations", Measured: notMeasured, Status: statusNotMeasured}
	if m := rep.memory(); m != nil && m.Reservations > 0 {
		var parts []string
		if m.RedisAfter != 0 {
			parts = append(parts, fmt.Sprintf("Redis used_memory +%.1f MB", m.Per100k(m.RedisBefore, m.RedisAfter)/bytesPerMB))
		}
		if m.JournalAfter != 0 {
			parts = append(parts, fmt.Sprintf("journal table +%.1f MB", m.Per100k(m.JournalBefore, m.JournalAfter)/bytesPerMB))
		}
		g.Measured = strings.Join(parts, "; ") + fmt.Sprintf(" (from %d reservations)", m.Reservations)
		g.Status = statusRecorded
	}
	return append(goals, g)
}

func (rep *Report) memory() *memoryResult {
	if r := rep.result("memory"); r != nil {
		return r.Memory
	}
	return nil
}

func met(ok bool) string {
	if ok {
		return statusMet
	}
	return statusNotMet
}

// spaced writes a round threshold as "5 ms" or "1 s".
func spaced(d time.Duration) string {
	if d >= time.Second {
		return fmt.Sprintf("%g s", d.Seconds())
	}
	return fmt.Sprintf("%g ms", float64(d)/float64(time.Millisecond))
}

// quantileMs is h's estimated q-quantile for the report ("> 30000 ms" when
// it lies above the last finite bucket).
func quantileMs(h histogram, q float64) string {
	v, over, ok := h.Quantile(q)
	switch {
	case !ok:
		return ""
	case over:
		return "> " + ms(time.Duration(v*float64(time.Second)))
	}
	return "~" + ms(time.Duration(v*float64(time.Second)))
}

// ms formats d in milliseconds.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

// Markdown renders the report.
func (rep *Report) Markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# bufferd bench report\n\n")
	p("- started %s, took %s\n", rep.started.UTC().Format(time.RFC3339), rep.finished.Sub(rep.started).Round(durationPrecisionS))
	if rep.command != "" {
		p("- command: `%s`\n", rep.command)
	}
	if rep.Deployment != "" {
		p("- deployment: %s\n", rep.Deployment)
	}
	p("- load generator: %d CPUs, %s; %d API replica(s), clients spread over them\n", rep.cpus, rep.goVersion, rep.apis)
	p("- each timed scenario: %s of warm-up (not counted), then %s measured\n", rep.warmup, rep.duration)
	if rep.loadBefore != "" {
		p("- machine load average before the run %s, after it %s (work of others on the machine counts in)\n", rep.loadBefore, rep.loadAfter)
	}
	p("\n")

	p("## Targets\n\n| target | measured | status |\n|---|---|---|\n")
	for _, g := range rep.goals() {
		p("| %s | %s | %s |\n", g.Name, g.Measured, g.Status)
	}

	p("\n## Scenarios\n\n")
	p("| scenario | clients | throughput | requests/s | errors | duplicates: client-side | duplicates: journal |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rep.results {
		if !r.measured() {
			p("| %s: %s | %d | skipped | | | | |\n", r.Name, r.Title, r.Clients)
			continue
		}
		journal := "n/a"
		switch {
		case len(r.Pools) > 0 && r.JournalChecked:
			journal = fmt.Sprint(len(r.JournalDuplicates))
		case len(r.Pools) > 0:
			journal = "not checked"
		}
		client := "n/a"
		if r.Grants > 0 || len(r.Pools) > 0 {
			client = fmt.Sprintf("%d of %d grants", len(r.ClientDuplicates), r.Grants)
		}
		p("| %s: %s | %d | %.0f %ss/s | %.0f | %d | %s | %s |\n", r.Name, r.Title, r.Clients,
			r.CycleRate(), r.Unit, r.RequestRate(), r.Errors(), client, journal)
	}
	for _, r := range rep.results {
		rep.scenarioMarkdown(&b, r)
	}
	p("\n## Duplicate checks\n\n")
	p("- Client-side check: every grant is kept with the time its answer arrived and the time its release was sent (or its expiry less %s; "+
		"a legacy grant holds at least %s). Two grants of one UTXO whose spans overlap were certainly held at once. "+
		"Two reservations of one pool with the same fence are flagged too.\n", expirySlack, spaced(legacyMinHold))
	if rep.journalChecked {
		p("- Journal check: %d rows of the run's pools read from `reservations`. For each UTXO the rows are ordered by fence (the order Redis "+
			"granted them in); a row created (Redis clock) more than %s before the end of an earlier row (its expiry, or the write that "+
			"ended it) is flagged.\n", rep.journalRows, rep.journalTolerance)
	} else {
		p("- Journal check: not done (no database URL).\n")
	}
	return b.String()
}

// memoryMarkdown renders what the memory scenario measured.
func memoryMarkdown(b *strings.Builder, m *memoryResult) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("\nMemory: %d live reservations (one UTXO each), made in %s, grew Redis and the journal by:\n\n",
		m.Reservations, m.Took.Round(time.Millisecond))
	p("| what | before | after | growth | per 100,000 reservations |\n|---|---|---|---|---|\n")
	if m.RedisAfter != 0 {
		p("| Redis used_memory | %.1f MB | %.1f MB | %.1f MB | %.1f MB (%.0f bytes each) |\n", mb(m.RedisBefore), mb(m.RedisAfter),
			mb(m.RedisAfter-m.RedisBefore), m.Per100k(m.RedisBefore, m.RedisAfter)/bytesPerMB, m.Per100k(m.RedisBefore, m.RedisAfter)/memoryPer)
	}
	if m.JournalAfter != 0 {
		p("| journal: reservations and reservation_utxos tables with indexes | %.1f MB | %.1f MB | %.1f MB | %.1f MB (%.0f bytes each) |\n", mb(m.JournalBefore), mb(m.JournalAfter),
			mb(m.JournalAfter-m.JournalBefore), m.Per100k(m.JournalBefore, m.JournalAfter)/bytesPerMB, m.Per100k(m.JournalBefore, m.JournalAfter)/memoryPer)
	}
}

func mb(n int64) float64 { return float64(n) / bytesPerMB }

// opOrder lists the operations of r in a stable, readable order.
func opOrder(r *scenarioResult) []string {
	known := []string{opFloor, opReserve, opReserveSvc, opRelease, opSpend, opSubmit, opPoll, opReservable, opList, opUpdate}
	var out []string
	for _, k := range known {
		if _, ok := r.Ops[k]; ok {
			out = append(out, k)
		}
	}
	for k := range r.Ops {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

func (rep *Report) scenarioMarkdown(b *strings.Builder, r *scenarioResult) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("\n### %s: %s\n\n", r.Name, r.Title)
	if !r.measured() {
		for _, n := range r.Notes {
			p("- %s\n", n)
		}
		return
	}
	p("%d clients", r.Clients)
	if r.Rate > 0 {
		p(", open loop at %.0f %ss/s", r.Rate, r.Unit)
	}
	p("; %s measured: %d %ss, %.0f/s; %.0f requests/s.", r.Window.Round(time.Millisecond), r.Cycles, r.Unit, r.CycleRate(), r.RequestRate())
	if r.CPU != nil {
		p(" CPU busy: %.2f of %d cores", r.CPU.Machine, rep.cpus)
		var parts []string
		for _, g := range r.CPU.Groups {
			if g.Cores >= 0.005 {
				parts = append(parts, fmt.Sprintf("%s %.2f", g.Group, g.Cores))
			}
		}
		if len(parts) > 0 {
			p(" (%s)", strings.Join(parts, ", "))
		} else {
			p(", %.2f of them the load generator's", r.CPU.Generator)
		}
		p(".")
	}
	p("\n\n")
	p("| operation | ok | refused | errors | p50 | p99 | p99.9 | max |\n|---|---|---|---|---|---|---|---|\n")
	inAPI := false
	for _, name := range opOrder(r) {
		o := r.Ops[name]
		s := summarize(o.Latencies)
		p("| %s | %d | %d | %d | %s | %s | %s | %s |\n", name, o.OK(), o.RejectedCount(), o.ErrorCount(), ms(s.P50), ms(s.P99), ms(s.P999), ms(s.Max))
		if h, ok := r.Server[serverRoutes[name]]; ok {
			inAPI = true
			p("| %s (in the APIs) | %d | | | %s | %s | %s | |\n", name, h.Count(), quantileMs(h, 0.5), quantileMs(h, 0.99), quantileMs(h, 0.999))
		}
	}
	if h, ok := r.Server[journalCommits]; ok {
		inAPI = true
		p("| %s (in the APIs) | %d | | | %s | %s | %s | |\n", journalCommits, h.Count(), quantileMs(h, 0.5), quantileMs(h, 0.99), quantileMs(h, 0.999))
	}
	if inAPI {
		p("\n- \"(in the APIs)\": the APIs' own `%s` histograms summed over the APIs, between the window's start and end "+
			"(every answer counted, refusals included), from a request's arrival in the API to its answer: "+
			"without the network, the kernel's queues and the load generator; quantiles interpolated within the buckets "+
			"as Prometheus's histogram_quantile does; \"%s\" is `%s`, one group commit of the journal's writes "+
			"(grants, and the deferred releases' batches)", serverHistogram, journalCommits, journalHistogram)
	}
	for _, name := range opOrder(r) {
		o := r.Ops[name]
		if len(o.Rejected) > 0 {
			p("\n- %s refused: %s", name, strings.Join(topReasons(o.Rejected, 5), ", "))
		}
		if len(o.Errors) > 0 {
			p("\n- %s errors: %s", name, strings.Join(topReasons(o.Errors, 5), ", "))
		}
	}
	for _, n := range r.Notes {
		p("\n- %s", n)
	}
	dups := append(slices.Clone(r.ClientDuplicates), r.JournalDuplicates...)
	for i, d := range dups {
		if i == maxListedProblems {
			p("\n- … and %d more", len(dups)-i)
			break
		}
		p("\n- DUPLICATE %s", d)
	}
	p("\n")
	if r.Memory != nil {
		memoryMarkdown(b, r.Memory)
	}
}
