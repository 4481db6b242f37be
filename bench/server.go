package bench

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// serverHistogram is the metric whose buckets give the APIs' own view of a
// request's latency: from its arrival in the handler chain to its answer,
// without the network, the kernel's queues and the load generator.
const serverHistogram = "bufferd_http_request_duration_seconds"

// journalHistogram is the APIs' histogram of their journal's group commits,
// reported under the key journalCommits.
const (
	journalHistogram = "bufferd_journal_commit_duration_seconds"
	journalCommits   = "journal commit"
)

// serverRoutes names, for the operations the report shows, the route of the
// APIs' histogram that serves them.
var serverRoutes = map[string]string{
	opReserve: "POST /v1/reservations",
	opRelease: "DELETE /v1/reservations/:id",
	opList:    "POST /dapp/list-utxos",
	opUpdate:  "POST /dapp/update-utxo",
}

// histogram is one route's cumulative bucket counts, summed over the APIs.
type histogram struct {
	Bounds []float64 // upper bounds in seconds, ascending, +Inf last
	Counts []uint64  // cumulative counts, one per bound
}

// Count is the number of observations.
func (h histogram) Count() uint64 {
	if len(h.Counts) == 0 {
		return 0
	}
	return h.Counts[len(h.Counts)-1]
}

// add returns the sum of h and o; both must have the same bounds (or h none
// yet).
func (h histogram) add(o histogram) (histogram, error) {
	if len(h.Bounds) == 0 {
		return histogram{Bounds: slices.Clone(o.Bounds), Counts: slices.Clone(o.Counts)}, nil
	}
	if !slices.Equal(h.Bounds, o.Bounds) {
		return h, fmt.Errorf("bench: histograms with different buckets: %v and %v", h.Bounds, o.Bounds)
	}
	sum := histogram{Bounds: h.Bounds, Counts: slices.Clone(h.Counts)}
	for i := range sum.Counts {
		sum.Counts[i] += o.Counts[i]
	}
	return sum, nil
}

// since is what h counted after earlier was taken (earlier may be empty: the
// route had not been served yet).
func (h histogram) since(earlier histogram) histogram {
	out := histogram{Bounds: h.Bounds, Counts: slices.Clone(h.Counts)}
	if slices.Equal(earlier.Bounds, h.Bounds) {
		for i := range out.Counts {
			out.Counts[i] -= min(out.Counts[i], earlier.Counts[i])
		}
	}
	return out
}

// Quantile estimates the q-quantile in seconds as Prometheus's
// histogram_quantile does: linearly within the bucket that holds it. A
// quantile in the last (+Inf) bucket is reported as the highest finite bound
// with over set. ok is false without observations.
func (h histogram) Quantile(q float64) (seconds float64, over, ok bool) {
	n := h.Count()
	if n == 0 {
		return 0, false, false
	}
	rank := q * float64(n)
	for i, c := range h.Counts {
		if float64(c) < rank {
			continue
		}
		if math.IsInf(h.Bounds[i], 1) {
			return h.Bounds[i-1], true, true
		}
		lower, below := 0.0, uint64(0)
		if i > 0 {
			lower, below = h.Bounds[i-1], h.Counts[i-1]
		}
		inBucket := float64(c - below)
		if inBucket == 0 {
			return h.Bounds[i], false, true
		}
		return lower + (h.Bounds[i]-lower)*(rank-float64(below))/inBucket, false, true
	}
	return h.Bounds[len(h.Bounds)-1], false, true
}

// parseServerHistograms reads from one Prometheus text exposition the
// request-duration histogram, by "METHOD route", and the journal's commit
// histogram, as journalCommits.
func parseServerHistograms(text string) (map[string]histogram, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("bench: parse metrics: %w", err)
	}
	out := map[string]histogram{}
	for _, name := range []string{serverHistogram, journalHistogram} {
		if f := families[name]; f != nil {
			if err := addHistograms(out, f); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// addHistograms adds the histograms of f to out: the requests' by
// "METHOD route", the journal's as journalCommits.
func addHistograms(out map[string]histogram, f *dto.MetricFamily) error {
	for _, m := range f.GetMetric() {
		key := journalCommits
		if f.GetName() == serverHistogram {
			var method, route string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "method":
					method = l.GetValue()
				case "route":
					route = l.GetValue()
				}
			}
			key = method + " " + route
		}
		hist := m.GetHistogram()
		if hist == nil {
			continue
		}
		var h histogram
		for _, b := range hist.GetBucket() {
			h.Bounds = append(h.Bounds, b.GetUpperBound())
			h.Counts = append(h.Counts, b.GetCumulativeCount())
		}
		if len(h.Bounds) == 0 || !math.IsInf(h.Bounds[len(h.Bounds)-1], 1) {
			h.Bounds = append(h.Bounds, math.Inf(1))
			h.Counts = append(h.Counts, hist.GetSampleCount())
		}
		var err error
		if out[key], err = out[key].add(h); err != nil {
			return err
		}
	}
	return nil
}

// scrapeServerHistograms reads the request-duration histograms of every API
// at GET /metrics and sums them by route. An API that serves its metrics
// elsewhere answers 404: then there is nothing to sum and the error says so.
func (r *runner) scrapeServerHistograms(ctx context.Context) (map[string]histogram, error) {
	sum := map[string]histogram{}
	for _, api := range r.apis {
		a, err := api.call(ctx, http.MethodGet, "/metrics", nil)
		if err != nil {
			return nil, err
		}
		if a.status != http.StatusOK {
			return nil, fmt.Errorf("bench: GET %s/metrics: HTTP %d", api.base, a.status)
		}
		hs, err := parseServerHistograms(string(a.body))
		if err != nil {
			return nil, err
		}
		for k, h := range hs {
			if sum[k], err = sum[k].add(h); err != nil {
				return nil, err
			}
		}
	}
	return sum, nil
}

// scrapeServer is scrapeServerHistograms bounded by scrapeTimeout, nil when
// the histograms cannot be read.
func (r *runner) scrapeServer() map[string]histogram {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	hs, err := r.scrapeServerHistograms(ctx)
	if err != nil {
		r.log.Debug("the APIs' histograms cannot be read", "err", err)
		return nil
	}
	return hs
}

// scrapeTimeout bounds one read of the APIs' metrics.
const scrapeTimeout = 5 * time.Second

// serverSince is, by route, what the APIs counted between two scrapes.
func serverSince(earlier, later map[string]histogram) map[string]histogram {
	out := make(map[string]histogram, len(later))
	for k, h := range later {
		if d := h.since(earlier[k]); d.Count() > 0 {
			out[k] = d
		}
	}
	return out
}
