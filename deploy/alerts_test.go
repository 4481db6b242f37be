package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
	"sigs.k8s.io/yaml"
)

const (
	alertsFile     = chartDir + "/files/alerts.yaml"
	dashboardFile  = chartDir + "/files/dashboard.json"
	alertTestsFile = "testdata/alerts_test.yaml"
)

var promParser = parser.NewParser(parser.Options{})

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// alertGroups are the parsed and validated rules of files/alerts.yaml.
type alertGroups struct {
	groups *rulefmt.RuleGroups
	alerts []rulefmt.Rule
}

// mustAlertGroups parses files/alerts.yaml as Prometheus does (unknown fields
// refused, every expression and template checked).
func mustAlertGroups(t *testing.T) alertGroups {
	t.Helper()
	groups, errs := rulefmt.Parse(mustRead(t, alertsFile), false, model.UTF8Validation, promParser, nil)
	if len(errs) > 0 {
		t.Fatalf("%s: %v", alertsFile, errs)
	}
	var out alertGroups
	out.groups = groups
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Fatalf("%s: recording rule %s: only alerts are expected", alertsFile, r.Record)
			}
			out.alerts = append(out.alerts, r)
		}
	}
	return out
}

// ruleTests is promtool's `test rules` file format (the parts used).
type ruleTests struct {
	RuleFiles          []string `json:"rule_files"`
	EvaluationInterval string   `json:"evaluation_interval"`
	Tests              []struct {
		Name        string `json:"name"`
		Interval    string `json:"interval"`
		InputSeries []struct {
			Series string `json:"series"`
			Values string `json:"values"`
		} `json:"input_series"`
		AlertRuleTest []alertRuleTest `json:"alert_rule_test"`
	} `json:"tests"`
}

// alertRuleTest is one alert_rule_test of a promtool test file: the alerts
// expected to fire at an evaluation time.
type alertRuleTest struct {
	EvalTime  string `json:"eval_time"`
	Alertname string `json:"alertname"`
	ExpAlerts []struct {
		ExpLabels      map[string]string `json:"exp_labels"`
		ExpAnnotations map[string]string `json:"exp_annotations"`
	} `json:"exp_alerts"`
}

func mustDurationOf(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := model.ParseDuration(s)
	if err != nil {
		t.Fatalf("duration %q: %v", s, err)
	}
	return time.Duration(d)
}

// TestAlertRules runs testdata/alerts_test.yaml: for each test it loads the
// input series, evaluates every alerting rule of files/alerts.yaml every
// evaluation_interval from time 0 with Prometheus's rule engine (pending,
// `for`, templated annotations), and compares the firing alerts at each
// eval_time. Every alert must be tested firing at least once.
func TestAlertRules(t *testing.T) {
	var spec ruleTests
	if err := yaml.UnmarshalStrict(mustRead(t, alertTestsFile), &spec); err != nil {
		t.Fatal(err)
	}
	if len(spec.RuleFiles) != 1 || filepath.Clean(filepath.Join(filepath.Dir(alertTestsFile), spec.RuleFiles[0])) != filepath.Clean(alertsFile) {
		t.Fatalf("%s tests %v, want %s", alertTestsFile, spec.RuleFiles, alertsFile)
	}
	groups := mustAlertGroups(t)
	step := mustDurationOf(t, spec.EvaluationInterval)
	fired := map[string]bool{}
	for _, tc := range spec.Tests {
		t.Run(tc.Name, func(t *testing.T) {
			load := "load " + tc.Interval + "\n"
			for _, s := range tc.InputSeries {
				load += "  " + s.Series + " " + s.Values + "\n"
			}
			storage := promqltest.LoadedStorage(t, load)
			engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
			query := rules.EngineQueryFunc(engine, storage)
			byName := map[string]*rules.AlertingRule{}
			for _, r := range groups.alerts {
				expr, err := promParser.ParseExpr(r.Expr)
				if err != nil {
					t.Fatalf("%s: %v", r.Alert, err)
				}
				byName[r.Alert] = rules.NewAlertingRule(r.Alert, expr, time.Duration(r.For), time.Duration(r.KeepFiringFor),
					labels.FromMap(r.Labels), labels.FromMap(r.Annotations), labels.EmptyLabels(), "", true, nil)
			}
			checks := tc.AlertRuleTest
			slices.SortStableFunc(checks, func(a, b alertRuleTest) int {
				return int(mustDurationOf(t, a.EvalTime) - mustDurationOf(t, b.EvalTime))
			})
			var now time.Duration
			for _, c := range checks {
				rule := byName[c.Alertname]
				if rule == nil {
					t.Fatalf("no alert %s in %s", c.Alertname, alertsFile)
				}
				at := mustDurationOf(t, c.EvalTime)
				for ; now <= at; now += step {
					for _, r := range byName {
						if _, err := r.Eval(context.Background(), 0, time.Unix(0, 0).UTC().Add(now), query, nil, 0); err != nil {
							t.Fatalf("%s at %s: %v", r.Name(), now, err)
						}
					}
				}
				var got []string
				for _, a := range rule.ActiveAlerts() {
					if a.State != rules.StateFiring {
						continue
					}
					fired[c.Alertname] = true
					a.Annotations.Range(func(ann labels.Label) {
						if strings.Contains(ann.Value, "error expanding") || strings.Contains(ann.Value, "<no value>") {
							t.Errorf("%s: annotation %s: %s", c.Alertname, ann.Name, ann.Value)
						}
					})
					got = append(got, a.Labels.String())
					for _, exp := range c.ExpAlerts {
						if labelsMatch(a.Labels, exp.ExpLabels) {
							for k, v := range exp.ExpAnnotations {
								if a.Annotations.Get(k) != v {
									t.Errorf("%s at %s: annotation %s = %q, want %q", c.Alertname, c.EvalTime, k, a.Annotations.Get(k), v)
								}
							}
						}
					}
				}
				var want []string
				for _, exp := range c.ExpAlerts {
					m := maps.Clone(exp.ExpLabels)
					if m == nil {
						m = map[string]string{}
					}
					m["alertname"] = c.Alertname
					want = append(want, labels.FromMap(m).String())
				}
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Errorf("%s at %s: firing %v, want %v", c.Alertname, c.EvalTime, got, want)
				}
			}
		})
	}
	for _, r := range groups.alerts {
		if !fired[r.Alert] {
			t.Errorf("%s: no test sees it fire", r.Alert)
		}
	}
}

func labelsMatch(ls labels.Labels, want map[string]string) bool {
	if ls.Len() != len(want)+1 {
		return false
	}
	for k, v := range want {
		if ls.Get(k) != v {
			return false
		}
	}
	return true
}

// exportedMetrics reads metrics/names.txt, which a test of the metrics
// package keeps equal to what bufferd exports.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, l := range strings.Fields(string(mustRead(t, namesFile))) {
		out[l] = true
	}
	if len(out) < 20 {
		t.Fatalf("%s lists only %d metrics", namesFile, len(out))
	}
	return out
}

// metricNames returns the metric names a PromQL expression selects.
func metricNames(t *testing.T, expr string) []string {
	t.Helper()
	e, err := promParser.ParseExpr(expr)
	if err != nil {
		t.Fatalf("%q: %v", expr, err)
	}
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			name := vs.Name
			for _, m := range vs.LabelMatchers {
				if m.Name == model.MetricNameLabel {
					name = m.Value
				}
			}
			out = append(out, name)
		}
		return nil
	})
	return out
}

// grafanaVariable matches Grafana's $variables in a dashboard expression.
var grafanaVariable = regexp.MustCompile(`\$\{?(__rate_interval|__interval|__range|[a-z_]+)\}?`)

// TestRulesAndDashboardUseExportedMetrics: every metric the alerts and the
// dashboard query is one bufferd exports, and every dashboard query parses.
func TestRulesAndDashboardUseExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	check := func(where, expr string) {
		if err := usesExportedMetrics(t, exported, expr); err != nil {
			t.Errorf("%s: %v", where, err)
		}
	}
	for _, r := range mustAlertGroups(t).alerts {
		check("alert "+r.Alert, r.Expr)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(mustRead(t, dashboardFile), &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if dash.UID == "" || len(dash.Panels) < 8 {
		t.Fatalf("%s: uid %q, %d panels", dashboardFile, dash.UID, len(dash.Panels))
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			expr := grafanaVariable.ReplaceAllStringFunc(tg.Expr, func(v string) string {
				if strings.Contains(v, "__") {
					return "5m"
				}
				return ".*"
			})
			check(fmt.Sprintf("dashboard panel %q", p.Title), expr)
		}
	}
}

// usesExportedMetrics reports an error when expr selects no metric or one
// that is not exported.
func usesExportedMetrics(t *testing.T, exported map[string]bool, expr string) error {
	t.Helper()
	names := metricNames(t, expr)
	if len(names) == 0 {
		return fmt.Errorf("%q selects no metric", expr)
	}
	for _, n := range names {
		if !exported[n] {
			return fmt.Errorf("%q uses %s, which bufferd does not export (%s)", expr, n, namesFile)
		}
	}
	return nil
}

// TestMetricCheckCatchesAnUnknownMetric makes sure the check above can fail:
// a misspelt metric, a histogram without its _bucket suffix.
func TestMetricCheckCatchesAnUnknownMetric(t *testing.T) {
	exported := exportedMetrics(t)
	for _, expr := range []string{
		`sum(rate(bufferd_no_such_metric_total[5m])) / sum(bufferd_sync_leader)`,
		`histogram_quantile(0.99, sum by (le) (rate(bufferd_journal_commit_duration_seconds[5m])))`,
		`sum(bufferd_sync_leaders)`,
	} {
		if err := usesExportedMetrics(t, exported, expr); err == nil {
			t.Errorf("%q passes the check", expr)
		}
	}
	if err := usesExportedMetrics(t, exported, `histogram_quantile(0.99, sum by (le) (rate(bufferd_journal_commit_duration_seconds_bucket[5m])))`); err != nil {
		t.Error(err)
	}
}
