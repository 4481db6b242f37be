package bench

import (
	"testing"
	"time"
)

func msList(from, to int) []time.Duration {
	var ds []time.Duration
	for i := from; i <= to; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	return ds
}

// near reports whether got is within 0.1% of want (the histogram's precision).
func near(got, want time.Duration) bool {
	diff := got - want
	return diff >= -want/1000 && diff <= want/1000
}

func TestSummarizeNearestRank(t *testing.T) {
	ds := msList(1, 1000)
	ds[0], ds[999], ds[500] = ds[999], ds[500], ds[0] // in any order
	s := summarize(ds)
	if s.Count != 1000 || s.Mean != 500500*time.Microsecond || s.Min != time.Millisecond || s.Max != time.Second {
		t.Errorf("summarize(1..1000 ms) = %+v: count, mean, min or max not exact", s)
	}
	for _, c := range []struct {
		got, want time.Duration
	}{{s.P50, 500 * time.Millisecond}, {s.P99, 990 * time.Millisecond}, {s.P999, 999 * time.Millisecond}} {
		if !near(c.got, c.want) {
			t.Errorf("summarize(1..1000 ms) = %+v: %s, want %s within 0.1%%", s, c.got, c.want)
		}
	}
	if got := summarize(nil); got != (latencySummary{}) {
		t.Errorf("summarize(nil) = %+v, want zero", got)
	}
}

func TestPercentileOfFewValuesIsTheLargestForHighQuantiles(t *testing.T) {
	s := summarize(msList(1, 10))
	if !near(s.P50, 5*time.Millisecond) || s.P99 != 10*time.Millisecond || s.P999 != 10*time.Millisecond {
		t.Errorf("summarize(1..10 ms) = %+v, want p50 5 ms, p99 and p99.9 10 ms", s)
	}
	if s := summarize([]time.Duration{7 * time.Millisecond}); s.P50 != 7*time.Millisecond || s.P999 != 7*time.Millisecond {
		t.Errorf("summarize of one value = %+v", s)
	}
	// Latencies beyond the histogram's range are counted at its top.
	if s := summarize([]time.Duration{time.Hour, time.Hour}); s.Max != time.Hour || s.P99 < maxLatency/2 {
		t.Errorf("summarize of hours = %+v", s)
	}
}

func TestRecorderCountsOnlyItsWindowButKeepsEveryGrant(t *testing.T) {
	t0 := time.Now()
	r := newRecorder(t0, t0.Add(time.Second))
	r.ok("reserve", t0.Add(-time.Millisecond), time.Millisecond) // warm-up
	r.ok("reserve", t0, 2*time.Millisecond)
	r.ok("reserve", t0.Add(999*time.Millisecond), 3*time.Millisecond)
	r.ok("reserve", t0.Add(time.Second), 4*time.Millisecond) // after the end
	r.rejected("reserve", t0.Add(time.Millisecond), "409 no_utxo_available")
	r.failed("release", t0.Add(time.Millisecond), "timeout")
	r.failed("release", t0.Add(-time.Second), "timeout")
	r.cycle(t0)
	r.cycle(t0.Add(2 * time.Second))
	r.grant(&Grant{Hash: "h", From: t0.Add(-time.Second)})

	other := newRecorder(t0, t0.Add(time.Second))
	other.ok("reserve", t0, 5*time.Millisecond)
	other.failed("release", t0, "timeout")
	other.cycle(t0)
	other.grant(&Grant{Hash: "h2"})
	r.merge(other)

	res := &scenarioResult{Window: time.Second, Ops: r.ops, Cycles: r.cycles}
	if got := r.ops["reserve"].Latencies; len(got) != 3 {
		t.Errorf("reserve latencies %v, want the 3 in the window", got)
	}
	if n := r.ops["reserve"].RejectedCount(); n != 1 {
		t.Errorf("rejected %d, want 1", n)
	}
	if n := r.ops["release"].Errors["timeout"]; n != 2 {
		t.Errorf("release timeouts %d, want 2", n)
	}
	if r.cycles != 2 || len(r.grants) != 2 {
		t.Errorf("cycles %d grants %d, want 2 and 2", r.cycles, len(r.grants))
	}
	if got := res.RequestRate(); got != 6 {
		t.Errorf("request rate %v, want 6 (3 ok + 1 refused + 2 failed in 1 s)", got)
	}
	if got := res.CycleRate(); got != 2 {
		t.Errorf("cycle rate %v, want 2", got)
	}
	if got := res.Errors(); got != 2 {
		t.Errorf("errors %d, want 2", got)
	}
}

func TestGoalsJudgeTheTargets(t *testing.T) {
	lat := func(d time.Duration, n int) []time.Duration {
		out := make([]time.Duration, n)
		for i := range out {
			out[i] = d
		}
		return out
	}
	wins := 0.9
	rep := &Report{journalChecked: true, journalRows: 10, results: []*scenarioResult{
		{Name: "e", Window: time.Second, Ops: map[string]*opStats{opFloor: {Latencies: lat(time.Millisecond, 1000)}}},
		{Name: "a", Window: time.Second, Pools: []int64{1}, Grants: 300, Ops: map[string]*opStats{
			opReserve: {Latencies: lat(time.Millisecond, 300)}, opRelease: {Latencies: lat(time.Millisecond, 300)}}},
		{Name: "half", Window: time.Second, Rate: 150, Ops: map[string]*opStats{opReserve: {Latencies: lat(6*time.Millisecond, 100)}}},
		{Name: "c", Window: time.Second, Ops: map[string]*opStats{opReservable: {Latencies: lat(30*time.Millisecond, 50)}}},
		{Name: "d", Window: time.Second, Cycles: 2500, LegacyWins: &wins, Ops: map[string]*opStats{opUpdate: {Latencies: lat(time.Millisecond, 10)}}},
	}}
	goals := rep.goals()
	want := []string{statusMet, statusNotMet, statusMet, statusMet, statusMet, statusNotMeasured}
	if len(goals) != len(want) {
		t.Fatalf("%d goals, want %d", len(goals), len(want))
	}
	for i, g := range goals {
		if g.Status != want[i] {
			t.Errorf("goal %q: %s (%s), want %s", g.Name, g.Status, g.Measured, want[i])
		}
	}
	wins = 0.5 // too few picks won
	if g := rep.goals()[3]; g.Status != statusNotMet {
		t.Errorf("legacy flow with half of the picks won: %s, want not met", g.Status)
	}
	rep.results[1].JournalDuplicates = []Duplicate{{Source: "journal"}}
	if g := rep.goals()[4]; g.Status != statusNotMet {
		t.Errorf("a journal duplicate: %s, want not met", g.Status)
	}
}
