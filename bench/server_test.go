package bench

import (
	"math"
	"testing"
)

// exposition is two APIs' worth of the request-duration histogram, as
// promhttp writes it.
const exposition = `# HELP bufferd_http_request_duration_seconds Time from a request's arrival to its answer, by method and route template.
# TYPE bufferd_http_request_duration_seconds histogram
bufferd_http_request_duration_seconds_bucket{method="POST",route="/v1/reservations",le="0.001"} 50
bufferd_http_request_duration_seconds_bucket{method="POST",route="/v1/reservations",le="0.0025"} 90
bufferd_http_request_duration_seconds_bucket{method="POST",route="/v1/reservations",le="0.005"} 99
bufferd_http_request_duration_seconds_bucket{method="POST",route="/v1/reservations",le="+Inf"} 100
bufferd_http_request_duration_seconds_sum{method="POST",route="/v1/reservations"} 0.2
bufferd_http_request_duration_seconds_count{method="POST",route="/v1/reservations"} 100
bufferd_http_request_duration_seconds_bucket{method="DELETE",route="/v1/reservations/:id",le="0.001"} 7
bufferd_http_request_duration_seconds_bucket{method="DELETE",route="/v1/reservations/:id",le="0.0025"} 7
bufferd_http_request_duration_seconds_bucket{method="DELETE",route="/v1/reservations/:id",le="0.005"} 7
bufferd_http_request_duration_seconds_bucket{method="DELETE",route="/v1/reservations/:id",le="+Inf"} 7
bufferd_http_request_duration_seconds_sum{method="DELETE",route="/v1/reservations/:id"} 0.003
bufferd_http_request_duration_seconds_count{method="DELETE",route="/v1/reservations/:id"} 7
# HELP bufferd_journal_commit_duration_seconds Time one group commit of reservation journal writes took (failed commits included).
# TYPE bufferd_journal_commit_duration_seconds histogram
bufferd_journal_commit_duration_seconds_bucket{le="0.001"} 3
bufferd_journal_commit_duration_seconds_bucket{le="0.0025"} 30
bufferd_journal_commit_duration_seconds_bucket{le="+Inf"} 40
bufferd_journal_commit_duration_seconds_sum 0.1
bufferd_journal_commit_duration_seconds_count 40
# HELP bufferd_http_requests_total HTTP requests answered.
# TYPE bufferd_http_requests_total counter
bufferd_http_requests_total{code="201",method="POST",route="/v1/reservations"} 100
`

func TestServerHistogramsParseAndSubtract(t *testing.T) {
	hs, err := parseServerHistograms(exposition)
	if err != nil {
		t.Fatal(err)
	}
	reserve := hs[serverRoutes[opReserve]]
	if reserve.Count() != 100 || len(reserve.Bounds) != 4 || !math.IsInf(reserve.Bounds[3], 1) {
		t.Fatalf("reserve: %+v", reserve)
	}
	if hs[serverRoutes[opRelease]].Count() != 7 {
		t.Fatalf("release: %+v", hs[serverRoutes[opRelease]])
	}
	if c := hs[journalCommits]; c.Count() != 40 || len(c.Bounds) != 3 || c.Counts[1] != 30 {
		t.Fatalf("journal commits: %+v", c)
	}
	if len(hs) != 3 {
		t.Fatalf("histograms: %v, want the two routes' and the journal's", hs)
	}
	twice, err := reserve.add(reserve)
	if err != nil || twice.Count() != 200 || twice.Counts[0] != 100 {
		t.Fatalf("sum of two APIs: %+v, %v", twice, err)
	}
	if reserve.Count() != 100 {
		t.Fatal("add changed its operand")
	}
	if _, err := reserve.add(histogram{Bounds: []float64{1, math.Inf(1)}, Counts: []uint64{1, 1}}); err == nil {
		t.Fatal("histograms with other buckets were summed")
	}
	d := serverSince(map[string]histogram{serverRoutes[opReserve]: reserve},
		map[string]histogram{serverRoutes[opReserve]: twice, serverRoutes[opRelease]: hs[serverRoutes[opRelease]]})
	if d[serverRoutes[opReserve]].Count() != 100 || d[serverRoutes[opRelease]].Count() != 7 {
		t.Fatalf("since: %+v", d)
	}
	if _, ok := serverSince(hs, hs)[serverRoutes[opReserve]]; ok {
		t.Fatal("a route with nothing new is reported")
	}
	if hs, err := parseServerHistograms("bufferd_build_info 1\n"); err != nil || len(hs) != 0 {
		t.Fatalf("without the histogram: %v, %v", hs, err)
	}
	if _, err := parseServerHistograms("not { an exposition"); err == nil {
		t.Fatal("garbage parsed")
	}
}

func TestServerHistogramQuantiles(t *testing.T) {
	hs, err := parseServerHistograms(exposition)
	if err != nil {
		t.Fatal(err)
	}
	h := hs[serverRoutes[opReserve]]
	for _, c := range []struct {
		q        float64
		want     float64
		wantOver bool
	}{
		{0.25, 0.0005, false}, // half of the first bucket's 50
		{0.5, 0.001, false},
		{0.7, 0.00175, false}, // halfway through (0.001, 0.0025]
		{0.99, 0.005, false},
		{0.999, 0.005, true}, // in +Inf: above the last finite bound
	} {
		got, over, ok := h.Quantile(c.q)
		if !ok || over != c.wantOver || math.Abs(got-c.want) > 1e-12 {
			t.Errorf("q%v = %v (over %v, ok %v), want %v (over %v)", c.q, got, over, ok, c.want, c.wantOver)
		}
	}
	prev := 0.0
	for q := 0.0; q <= 1; q += 0.001 {
		v, _, _ := h.Quantile(q)
		if v < prev {
			t.Fatalf("quantiles fall: q%v = %v < %v", q, v, prev)
		}
		prev = v
	}
	if _, _, ok := (histogram{}).Quantile(0.5); ok {
		t.Fatal("an empty histogram has a median")
	}
	if got := quantileMs(h, 0.999); got != "> 5.00 ms" {
		t.Errorf("quantileMs above the buckets = %q", got)
	}
	if got := quantileMs(h, 0.5); got != "~1.00 ms" {
		t.Errorf("quantileMs = %q", got)
	}
}
