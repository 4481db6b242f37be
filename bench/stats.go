package bench

import (
	"sort"
	"strconv"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// latencySummary describes a set of latencies.
type latencySummary struct {
	Count                int
	Mean, P50, P99, P999 time.Duration
	Min, Max             time.Duration
}

// Latency histograms (HdrHistogram) count microseconds from 1 µs to
// maxLatency with 3 significant digits: a quantile is within 0.1% of the
// exact nearest-rank value.
const (
	maxLatency    = 10 * time.Minute
	latencyDigits = 3
)

// summarize returns the summary of ds: count, mean, minimum and maximum
// exact, the percentiles by the nearest-rank method (the smallest value at
// least a fraction q of the values are not above) read from an HdrHistogram.
func summarize(ds []time.Duration) latencySummary {
	if len(ds) == 0 {
		return latencySummary{}
	}
	h := hdrhistogram.New(1, maxLatency.Microseconds(), latencyDigits)
	var sum time.Duration
	s := latencySummary{Count: len(ds), Min: ds[0], Max: ds[0]}
	for _, d := range ds {
		sum += d
		s.Min, s.Max = min(s.Min, d), max(s.Max, d)
		_ = h.RecordValue(min(max(d.Microseconds(), 1), maxLatency.Microseconds()))
	}
	s.Mean = sum / time.Duration(len(ds))
	q := func(p float64) time.Duration {
		v := time.Duration(h.ValueAtQuantile(p)) * time.Microsecond
		return min(max(v, s.Min), s.Max) // the histogram's bucket may pass the extremes
	}
	s.P50, s.P99, s.P999 = q(50), q(99), q(99.9)
	return s
}

// opStats are the outcomes of one kind of request in one scenario.
type opStats struct {
	// Latencies of the successful requests.
	Latencies []time.Duration
	// Rejected counts expected refusals by reason (409 no_utxo_available,
	// utxo_locked...): the service said no, correctly.
	Rejected map[string]int
	// Errors counts failures by reason (unexpected status, transport error).
	Errors map[string]int
}

// OK is the number of successful requests.
func (o *opStats) OK() int { return len(o.Latencies) }

// ErrorCount is the number of failed requests.
func (o *opStats) ErrorCount() int { return sum(o.Errors) }

// RejectedCount is the number of expected refusals.
func (o *opStats) RejectedCount() int { return sum(o.Rejected) }

// Total is every request counted, whatever its outcome.
func (o *opStats) Total() int { return o.OK() + o.ErrorCount() + o.RejectedCount() }

func (o *opStats) merge(p *opStats) {
	o.Latencies = append(o.Latencies, p.Latencies...)
	o.Rejected = mergeCounts(o.Rejected, p.Rejected)
	o.Errors = mergeCounts(o.Errors, p.Errors)
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func mergeCounts(dst, src map[string]int) map[string]int {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = map[string]int{}
	}
	for k, v := range src {
		dst[k] += v
	}
	return dst
}

// topReasons lists the reasons of m, most frequent first, as "reason ×n".
func topReasons(m map[string]int, k int) []string {
	keys := make([]string, 0, len(m))
	for r := range m {
		keys = append(keys, r)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	out := make([]string, 0, min(k, len(keys)))
	for _, r := range keys[:min(k, len(keys))] {
		out = append(out, r+" ×"+strconv.Itoa(m[r]))
	}
	return out
}

// recorder collects one client's outcomes without locks; the scenario merges
// the recorders of its clients at the end. Requests that started before
// from or at or after until are not counted (warm-up and wind-down), but
// grants always are: every grant takes part in the duplicate checks.
type recorder struct {
	from, until time.Time
	ops         map[string]*opStats
	grants      []*Grant
	cycles      int
}

func newRecorder(from, until time.Time) *recorder {
	return &recorder{from: from, until: until, ops: map[string]*opStats{}}
}

func (r *recorder) counts(start time.Time) bool {
	return !start.Before(r.from) && start.Before(r.until)
}

func (r *recorder) op(name string) *opStats {
	o := r.ops[name]
	if o == nil {
		o = &opStats{}
		r.ops[name] = o
	}
	return o
}

// ok records a success of op that started at start and took d.
func (r *recorder) ok(op string, start time.Time, d time.Duration) {
	if r.counts(start) {
		o := r.op(op)
		o.Latencies = append(o.Latencies, d)
	}
}

// rejected records an expected refusal of op.
func (r *recorder) rejected(op string, start time.Time, reason string) {
	if r.counts(start) {
		o := r.op(op)
		o.Rejected = mergeCounts(o.Rejected, map[string]int{reason: 1})
	}
}

// failed records a failure of op.
func (r *recorder) failed(op string, start time.Time, reason string) {
	if r.counts(start) {
		o := r.op(op)
		o.Errors = mergeCounts(o.Errors, map[string]int{reason: 1})
	}
}

// answered records a call of op that started at start: a transport error,
// an answer other than want, or a success that took d. It reports success.
func (r *recorder) answered(op string, start time.Time, d time.Duration, a answer, err error, want int) bool {
	switch {
	case err != nil:
		r.failed(op, start, errReason(err))
	case a.status != want:
		r.failed(op, start, a.code())
	default:
		r.ok(op, start, d)
		return true
	}
	return false
}

// cycle records a completed cycle (a scenario's unit of work) begun at start.
func (r *recorder) cycle(start time.Time) {
	if r.counts(start) {
		r.cycles++
	}
}

// grant remembers a grant for the duplicate checks.
func (r *recorder) grant(g *Grant) { r.grants = append(r.grants, g) }

// merge adds o's outcomes to r.
func (r *recorder) merge(o *recorder) {
	for name, s := range o.ops {
		r.op(name).merge(s)
	}
	r.grants = append(r.grants, o.grants...)
	r.cycles += o.cycles
}
