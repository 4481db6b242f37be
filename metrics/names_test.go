package metrics

import (
	"flag"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

var update = flag.Bool("update", false, "rewrite names.txt")

// names returns every series name bufferd exports (a histogram's _bucket,
// _sum and _count), from the collectors' descriptors: also the vectors that
// have no series yet.
func names(t *testing.T) []string {
	t.Helper()
	cs := append(all(), newRedisPoolCollector(nil), collectors.NewDBStatsCollector(nil, "bufferd"))
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	var out []string
	for _, c := range cs {
		_, histogram := c.(prometheus.Histogram)
		if _, ok := c.(*prometheus.HistogramVec); ok {
			histogram = true
		}
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			m := fqName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("no fqName in %s", d)
			}
			if histogram {
				out = append(out, m[1]+"_bucket", m[1]+"_sum", m[1]+"_count")
			} else {
				out = append(out, m[1])
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// names.txt lists every exported series name; the deploy module's tests check
// that the alert rules and the dashboard use only these. Regenerate it with
// go test ./metrics -run TestNamesFile -update.
func TestNamesFileListsEveryMetric(t *testing.T) {
	want := strings.Join(names(t), "\n") + "\n"
	if *update {
		if err := os.WriteFile("names.txt", []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile("names.txt")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("names.txt is out of date (go test ./metrics -run TestNamesFile -update):\n got %q\nwant %q", got, want)
	}
	for _, n := range []string{"bufferd_build_info", "bufferd_pool_utxos", "bufferd_http_request_duration_seconds_bucket", "go_sql_open_connections"} {
		if !strings.Contains(want, n+"\n") {
			t.Errorf("%s missing from the names", n)
		}
	}
}

func TestBuildInfoIsOneSeries(t *testing.T) {
	SetBuildInfo("v1", "abc", "go1.26")
	SetBuildInfo("v2", "def", "go1.26")
	reg := prometheus.NewRegistry()
	reg.MustRegister(buildInfo)
	families, err := reg.Gather()
	if err != nil || len(families) != 1 || len(families[0].GetMetric()) != 1 {
		t.Fatalf("build info: %v %v", families, err)
	}
	m := families[0].GetMetric()[0]
	got := map[string]string{}
	for _, l := range m.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	if m.GetGauge().GetValue() != 1 || got["version"] != "v2" || got["revision"] != "def" || got["goversion"] != "go1.26" {
		t.Fatalf("build info %v = %v", got, m.GetGauge().GetValue())
	}
}
