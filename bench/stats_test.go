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

func TestSummarizeNearestRank(t *testing.T) {
	ds := msList(1, 1000)
	// Shuffled input: Summarize sorts.
	ds[0], ds[999], ds[500] = ds[999], ds[500], ds[0]
	s := Summarize(ds)
	want := Summary{Count: 1000, Mean: 500500 * time.Microsecond, P50: 500 * time.Millisecond, P99: 990 * time.Millisecond,
		P999: 999 * time.Millisecond, Min: time.Millisecond, Max: time.Second}
	if s != want {
		t.Errorf("Summarize(1..1000 ms) = %+v, want %+v", s, want)
	}
	if got := Summarize(nil); got != (Summary{}) {
		t.Errorf("Summarize(nil) = %+v, want zero", got)
	}
}

func TestPercentileOfFewValuesIsTheLargestForHighQuantiles(t *testing.T) {
	ds := msList(1, 10)
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5 * time.Millisecond}, {0.9, 9 * time.Millisecond}, {0.99, 10 * time.Millisecond}, {0.999, 10 * time.Millisecond}, {0.01, time.Millisecond}} {
		if got := Percentile(ds, c.q); got != c.want {
			t.Errorf("Percentile(1..10 ms, %v) = %s, want %s", c.q, got, c.want)
		}
	}
	if got := Percentile([]time.Duration{7}, 0.999); got != 7 {
		t.Errorf("Percentile of one value = %s", got)
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

	res := &Result{Window: time.Second, Ops: r.ops, Cycles: r.cycles}
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
	rep := &Report{JournalChecked: true, JournalRows: 10, Results: []*Result{
		{Name: "e", Window: time.Second, Ops: map[string]*OpStats{opFloor: {Latencies: lat(time.Millisecond, 1000)}}},
		{Name: "a", Window: time.Second, Pools: []int64{1}, Grants: 300, Ops: map[string]*OpStats{
			opReserve: {Latencies: lat(time.Millisecond, 300)}, opRelease: {Latencies: lat(time.Millisecond, 300)}}},
		{Name: "half", Window: time.Second, Rate: 150, Ops: map[string]*OpStats{opReserve: {Latencies: lat(6*time.Millisecond, 100)}}},
		{Name: "c", Window: time.Second, Ops: map[string]*OpStats{opReservable: {Latencies: lat(30*time.Millisecond, 50)}}},
		{Name: "d", Window: time.Second, Cycles: 2500, LegacyWins: &wins, Ops: map[string]*OpStats{opUpdate: {Latencies: lat(time.Millisecond, 10)}}},
	}}
	goals := rep.Goals()
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
	if g := rep.Goals()[3]; g.Status != statusNotMet {
		t.Errorf("legacy flow with half of the picks won: %s, want not met", g.Status)
	}
	rep.Results[1].JournalDuplicates = []Duplicate{{Source: "journal"}}
	if g := rep.Goals()[4]; g.Status != statusNotMet {
		t.Errorf("a journal duplicate: %s, want not met", g.Status)
	}
}
