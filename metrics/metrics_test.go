package metrics_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/metrics"
)

func TestRegisterTwiceAndInTwoRegistries(t *testing.T) {
	a, b := prometheus.NewRegistry(), prometheus.NewRegistry()
	for _, reg := range []*prometheus.Registry{a, a, b} {
		if err := metrics.Register(reg); err != nil {
			t.Fatalf("register: %v", err)
		}
	}
	// Every outcome exists from the start, in both registries.
	for _, reg := range []*prometheus.Registry{a, b} {
		if n := len(gather(t, reg)["bufferd_reservation_outcomes_total"]); n != len(metrics.Outcomes) {
			t.Fatalf("outcome series: %d, want %d", n, len(metrics.Outcomes))
		}
	}
	before := testutil.ToFloat64(metrics.ReservationOutcomes.WithLabelValues(metrics.OutcomeGranted))
	metrics.Outcome(metrics.OutcomeGranted)
	if got := testutil.ToFloat64(metrics.ReservationOutcomes.WithLabelValues(metrics.OutcomeGranted)); got != before+1 {
		t.Fatalf("granted %v, want %v", got, before+1)
	}
}

func TestRegisterRefusesAClashingCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	other := prometheus.NewCounter(prometheus.CounterOpts{Name: "bufferd_redis_rebuilds_total", Help: "a different collector"})
	reg.MustRegister(other)
	if err := metrics.Register(reg); err == nil || !strings.Contains(err.Error(), "metrics:") {
		t.Fatalf("clash not reported: %v", err)
	}
}

func TestPoolCollectors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rdb, _ := testenv.Redis(t)
	for range 3 {
		if err := rdb.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	db, err := sql.Open("pgx", testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	if err := db.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	// Registering again (a restarted component) replaces the collectors.
	for range 2 {
		if err := metrics.RegisterPools(reg, rdb, db); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]float64{}
	for name, series := range gather(t, reg) {
		for labels, v := range series {
			key := name
			if labels != "" {
				key += "," + labels
			}
			got[key] = v
		}
	}
	if got["bufferd_redis_pool_connections,state=total"] < 1 {
		t.Errorf("redis total connections: %v", got)
	}
	if got["bufferd_redis_pool_hits_total"]+got["bufferd_redis_pool_misses_total"] < 3 {
		t.Errorf("redis pool hits+misses after 3 pings: %v", got)
	}
	if _, ok := got["bufferd_redis_pool_timeouts_total"]; !ok {
		t.Errorf("no timeouts counter: %v", got)
	}
	if got["go_sql_open_connections,db_name=bufferd"] < 1 {
		t.Errorf("database open connections: %v", got)
	}
}

// gather returns reg's counters and gauges: name -> "k=v,k=v" labels -> value.
func gather(t *testing.T, reg prometheus.Gatherer) map[string]map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]float64{}
	for _, f := range families {
		series := map[string]float64{}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := strings.Join(labels, ",")
			switch {
			case m.Counter != nil:
				series[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				series[key] = m.GetGauge().GetValue()
			}
		}
		out[f.GetName()] = series
	}
	return out
}
