package deploy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
)

// minimal is what an install needs: a chain URL and one Secret.
func minimal(overrides ...map[string]any) map[string]any {
	v := mergeValues(set("config.chainURL", "https://blockcenter.example.com"), set("secret.existingSecret", "bufferd"))
	for _, o := range overrides {
		v = mergeValues(v, o)
	}
	return v
}

// containerEnv returns the variables of a Deployment's container: plain
// values, fieldRefs as "field:PATH" and secret references as "secret:NAME/KEY".
func containerEnv(t *testing.T, r rendered, d *appsv1.Deployment) map[string]string {
	t.Helper()
	out := map[string]string{}
	c := d.Spec.Template.Spec.Containers[0]
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil {
			if cm := byName[*corev1.ConfigMap](t, r, ef.ConfigMapRef.Name); cm != nil {
				for k, v := range cm.Data {
					out[k] = v
				}
			}
		}
	}
	for _, e := range c.Env { // env wins over envFrom
		switch {
		case e.ValueFrom == nil:
			out[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			out[e.Name] = "secret:" + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		case e.ValueFrom.FieldRef != nil:
			out[e.Name] = "field:" + e.ValueFrom.FieldRef.FieldPath
		}
	}
	return out
}

// TestMinimalInstall is `helm template --set config.chainURL=... --set
// secret.existingSecret=bufferd` on the defaults: a complete install reading
// the database and Redis URLs and the admin token from that Secret.
func TestMinimalInstall(t *testing.T) {
	r := render(t, minimal())
	checkChart(t, r)
	if n := len(all[*corev1.Secret](r)); n != 0 {
		t.Errorf("%d Secrets rendered with existingSecret", n)
	}
	api := containerEnv(t, r, deployment(t, r, "api"))
	for k, want := range map[string]string{
		"BUFFERD_DATABASE_URL": "secret:bufferd/database-url",
		"BUFFERD_REDIS_URL":    "secret:bufferd/redis-url",
		"BUFFERD_ADMIN_TOKEN":  "secret:bufferd/admin-token",
		"BUFFERD_CHAIN_URL":    "https://blockcenter.example.com",
	} {
		if api[k] != want {
			t.Errorf("api %s=%q, want %q", k, api[k], want)
		}
	}
	if job := only[*batchv1.Job](t, r); job.Spec.Template.Spec.Containers[0].Env[0].ValueFrom.SecretKeyRef.Name != "bufferd" {
		t.Error("the migration Job does not read the database URL from the existing Secret")
	}
	// Spread by default: API pods over zones and nodes, syncers over nodes.
	for c, keys := range map[string][]string{"api": {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}, "syncer": {"kubernetes.io/hostname"}} {
		var got []string
		for _, tsc := range deployment(t, r, c).Spec.Template.Spec.TopologySpreadConstraints {
			got = append(got, tsc.TopologyKey)
		}
		if !slices.Equal(got, keys) {
			t.Errorf("%s spread over %v, want %v", c, got, keys)
		}
	}
}

// settingCases sets every chart value that feeds a BUFFERD_* variable to a
// value other than its default, with the variable and value expected.
var settingCases = []struct {
	path  string
	value any
	env   string
	want  string
	comp  string // the Deployment that must have it
}{
	{"config.chainURL", "http://bytomd:9888", "BUFFERD_CHAIN_URL", "http://bytomd:9888", "syncer"},
	{"config.chainKind", "bytomd", "BUFFERD_CHAIN_KIND", "bytomd", "syncer"},
	{"config.chainTimeout", "3s", "BUFFERD_CHAIN_TIMEOUT", "3s", "syncer"},
	{"config.redisPrefix", "b2:", "BUFFERD_REDIS_PREFIX", "b2:", "api"},
	{"config.syncInterval", "5s", "BUFFERD_SYNC_INTERVAL", "5s", "syncer"},
	{"config.syncMaxBackoff", "2m", "BUFFERD_SYNC_MAX_BACKOFF", "2m", "syncer"},
	{"config.leaderTTL", "12s", "BUFFERD_LEADER_TTL", "12s", "syncer"},
	{"config.indexStartDepth", 123456, "BUFFERD_INDEX_START_DEPTH", "123456", "syncer"},
	{"config.indexPoll", "1s", "BUFFERD_INDEX_POLL", "1s", "syncer"},
	{"config.sweepInterval", "1m", "BUFFERD_SWEEP_INTERVAL", "1m", "syncer"},
	{"config.reserveRate", 12.5, "BUFFERD_RESERVE_RATE", "12.5", "api"},
	{"config.reserveBurst", 1000000, "BUFFERD_RESERVE_BURST", "1000000", "api"},
	{"config.corsOrigins", "https://app.example.com,https://b.example.com", "BUFFERD_CORS_ORIGINS", "https://app.example.com,https://b.example.com", "api"},
	{"config.legacyCorsOrigins", "none", "BUFFERD_LEGACY_CORS_ORIGINS", "none", "api"},
	{"config.trustedProxyHeader", "X-Real-IP", "BUFFERD_TRUSTED_PROXY_HEADER", "X-Real-IP", "api"},
	{"config.legacyListSample", 0, "BUFFERD_LEGACY_LIST_SAMPLE", "0", "api"},
	{"config.pprofAddr", "127.0.0.1:6060", "BUFFERD_PPROF_ADDR", "127.0.0.1:6060", "api"},
	{"config.shutdownTimeout", "20s", "BUFFERD_SHUTDOWN_TIMEOUT", "20s", "api"},
	{"config.logLevel", "debug", "BUFFERD_LOG_LEVEL", "debug", "syncer"},
	{"config.logFormat", "text", "BUFFERD_LOG_FORMAT", "text", "api"},
	{"api.containerPort", 8080, "BUFFERD_ADDR", "0.0.0.0:8080", "api"},
	{"api.metricsPort", 9191, "BUFFERD_API_METRICS_ADDR", "0.0.0.0:9191", "api"},
	{"api.databaseMaxConns", 4, "BUFFERD_DATABASE_MAX_CONNS", "4", "api"},
	{"syncer.metricsPort", 9200, "BUFFERD_METRICS_ADDR", "0.0.0.0:9200", "syncer"},
	{"syncer.databaseMaxConns", 3, "BUFFERD_DATABASE_MAX_CONNS", "3", "syncer"},
	{"extraEnv", []any{map[string]any{"name": "BUFFERD_RESERVE_BURST", "value": "7"}}, "BUFFERD_RESERVE_BURST", "7", "api"},
}

// TestEverySettingReaches sets each value and finds it in the variable
// bufferd reads; and checks that every variable of config/config.go is set by
// the chart (from values, a Secret or the pod's name).
func TestEverySettingReaches(t *testing.T) {
	for _, c := range settingCases {
		t.Run(c.path, func(t *testing.T) {
			r := render(t, minimal(set(c.path, c.value)))
			if got := containerEnv(t, r, deployment(t, r, c.comp))[c.env]; got != c.want {
				t.Errorf("%s=%v: %s %s=%q, want %q", c.path, c.value, c.comp, c.env, got, c.want)
			}
		})
	}
	r := render(t, minimal())
	seen := map[string]bool{}
	for _, comp := range []string{"api", "syncer"} {
		for k := range containerEnv(t, r, deployment(t, r, comp)) {
			seen[k] = true
		}
	}
	for v := range mustKnownVariables(t) {
		if !seen[v] {
			t.Errorf("%s (config/config.go) is set by no value of the chart", v)
		}
	}
	if got := containerEnv(t, r, deployment(t, r, "syncer"))["BUFFERD_INSTANCE_ID"]; got != "field:metadata.name" {
		t.Errorf("syncer BUFFERD_INSTANCE_ID %q, want the pod's name", got)
	}
	// extraEnvFrom reaches both Deployments, after the chart's ConfigMap.
	r = render(t, minimal(set("extraEnvFrom", []any{map[string]any{"configMapRef": map[string]any{"name": "more"}}})))
	for _, comp := range []string{"api", "syncer"} {
		ef := deployment(t, r, comp).Spec.Template.Spec.Containers[0].EnvFrom
		if len(ef) != 2 || ef[1].ConfigMapRef == nil || ef[1].ConfigMapRef.Name != "more" {
			t.Errorf("%s envFrom %+v, want the chart's ConfigMap then extraEnvFrom", comp, ef)
		}
	}
}

// TestSecretLayouts: one existing Secret, one reference per value (winning
// over the single Secret), and values the chart puts in its own Secret; mixed.
func TestSecretLayouts(t *testing.T) {
	refs := map[string]any{
		"databaseURLSecret": map[string]any{"name": "pg", "key": "uri"},
		"redisURLSecret":    map[string]any{"name": "redis", "key": "url"},
		"adminTokenSecret":  map[string]any{"name": "admin", "key": "token"},
	}
	cases := []struct {
		name    string
		values  map[string]any
		want    map[string]string // variable -> secret:NAME/KEY ("" : absent)
		secrets []string          // Secrets the chart makes
	}{
		{"existing Secret", minimal(), map[string]string{
			"BUFFERD_DATABASE_URL": "secret:bufferd/database-url", "BUFFERD_REDIS_URL": "secret:bufferd/redis-url", "BUFFERD_ADMIN_TOKEN": "secret:bufferd/admin-token"}, nil},
		{"existing Secret with other keys", minimal(set("secret.keys", map[string]any{"databaseURL": "db", "redisURL": "rd", "adminToken": "tok"})), map[string]string{
			"BUFFERD_DATABASE_URL": "secret:bufferd/db", "BUFFERD_REDIS_URL": "secret:bufferd/rd", "BUFFERD_ADMIN_TOKEN": "secret:bufferd/tok"}, nil},
		{"one Secret per value", mergeValues(set("config.chainURL", "https://bc.example.com"), set("secret", refs)), map[string]string{
			"BUFFERD_DATABASE_URL": "secret:pg/uri", "BUFFERD_REDIS_URL": "secret:redis/url", "BUFFERD_ADMIN_TOKEN": "secret:admin/token"}, nil},
		{"references win over the existing Secret", minimal(set("secret.databaseURLSecret", refs["databaseURLSecret"])), map[string]string{
			"BUFFERD_DATABASE_URL": "secret:pg/uri", "BUFFERD_REDIS_URL": "secret:bufferd/redis-url"}, nil},
		{"values in the chart's Secret", mergeValues(set("config.chainURL", "https://bc.example.com"), set("secret", map[string]any{
			"databaseURL": "postgres://u:p@db/bufferd", "redisURL": "redis://r:6379/0"})), map[string]string{
			"BUFFERD_DATABASE_URL": "secret:bufferd/database-url", "BUFFERD_REDIS_URL": "secret:bufferd/redis-url", "BUFFERD_ADMIN_TOKEN": ""},
			[]string{"bufferd", "bufferd-migrate"}},
		{"Redis password from its own Secret", minimal(set("secret.redisPasswordSecret", map[string]any{"name": "redis", "key": "redis-password"}),
			set("secret.redisAddress", "redis://redis-master:6379/0, rediss://redis-b:6380/0")), map[string]string{
			"BUFFERD_DATABASE_URL": "secret:bufferd/database-url", "REDIS_PASSWORD": "secret:redis/redis-password",
			"BUFFERD_REDIS_URL": "redis://:$(REDIS_PASSWORD)@redis-master:6379/0,rediss://:$(REDIS_PASSWORD)@redis-b:6380/0"}, nil},
		{"database from a reference, Redis from a value", mergeValues(set("config.chainURL", "https://bc.example.com"), set("secret", map[string]any{
			"databaseURLSecret": refs["databaseURLSecret"], "redisURL": "redis://r:6379/0", "adminToken": "t"})), map[string]string{
			"BUFFERD_DATABASE_URL": "secret:pg/uri", "BUFFERD_REDIS_URL": "secret:bufferd/redis-url", "BUFFERD_ADMIN_TOKEN": "secret:bufferd/admin-token"},
			[]string{"bufferd"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := render(t, c.values)
			checkChart(t, r)
			env := containerEnv(t, r, deployment(t, r, "api"))
			for k, want := range c.want {
				if env[k] != want {
					t.Errorf("api %s=%q, want %q", k, env[k], want)
				}
			}
			if s := containerEnv(t, r, deployment(t, r, "syncer"))["BUFFERD_REDIS_URL"]; s != c.want["BUFFERD_REDIS_URL"] {
				t.Errorf("syncer BUFFERD_REDIS_URL=%q, want %q", s, c.want["BUFFERD_REDIS_URL"])
			}
			var made []string
			for _, s := range all[*corev1.Secret](r) {
				made = append(made, s.Name)
				if strings.HasSuffix(s.Name, "-migrate") && len(s.Data) != 1 {
					t.Errorf("the migration hook Secret holds %d values, want only the database URL", len(s.Data))
				}
				if s.Name == "bufferd" {
					for k := range s.Data {
						if strings.HasPrefix(c.want[map[string]string{"database-url": "BUFFERD_DATABASE_URL", "redis-url": "BUFFERD_REDIS_URL", "admin-token": "BUFFERD_ADMIN_TOKEN"}[k]], "secret:bufferd/") {
							continue
						}
						t.Errorf("the chart's Secret holds %s, which a reference replaces", k)
					}
				}
			}
			slices.Sort(made)
			if !slices.Equal(made, c.secrets) {
				t.Errorf("Secrets made %v, want %v", made, c.secrets)
			}
			if job := only[*batchv1.Job](t, r); job != nil {
				ref := job.Spec.Template.Spec.Containers[0].Env[0].ValueFrom.SecretKeyRef
				want := strings.TrimPrefix(c.want["BUFFERD_DATABASE_URL"], "secret:")
				if want == "bufferd/database-url" && slices.Contains(c.secrets, "bufferd-migrate") {
					want = "bufferd-migrate/database-url"
				}
				if ref.Name+"/"+ref.Key != want {
					t.Errorf("migration Job reads %s/%s, want %s", ref.Name, ref.Key, want)
				}
			}
		})
	}
}

func TestIngress(t *testing.T) {
	r := render(t, minimal())
	if n := len(all[*networkingv1.Ingress](r)); n != 0 {
		t.Fatalf("%d Ingresses by default", n)
	}
	r = render(t, minimal(set("ingress", map[string]any{
		"enabled": true, "className": "nginx",
		"annotations": map[string]any{"nginx.ingress.kubernetes.io/proxy-body-size": "1m"},
		"hosts": []any{map[string]any{"host": "bufferd.example.com", "paths": []any{
			map[string]any{"path": "/v1", "pathType": "Prefix"}, map[string]any{"path": "/dapp", "pathType": "Prefix"}}}},
		"tls": []any{map[string]any{"secretName": "bufferd-tls", "hosts": []any{"bufferd.example.com"}}},
	})))
	checkChart(t, r)
	in := only[*networkingv1.Ingress](t, r)
	svc := byName[*corev1.Service](t, r, releaseName+"-api")
	if in.Spec.IngressClassName == nil || *in.Spec.IngressClassName != "nginx" || len(in.Spec.TLS) != 1 || in.Spec.TLS[0].SecretName != "bufferd-tls" {
		t.Errorf("Ingress class or TLS: %+v", in.Spec)
	}
	if len(in.Spec.Rules) != 1 || in.Spec.Rules[0].Host != "bufferd.example.com" || len(in.Spec.Rules[0].HTTP.Paths) != 2 {
		t.Fatalf("Ingress rules %+v", in.Spec.Rules)
	}
	for _, p := range in.Spec.Rules[0].HTTP.Paths {
		b := p.Backend.Service
		if b == nil || b.Name != svc.Name || b.Port.Name != "http" {
			t.Errorf("path %s goes to %+v, want the API Service's http port", p.Path, b)
		}
	}
	if in.Labels["app.kubernetes.io/component"] != "api" || in.Annotations["nginx.ingress.kubernetes.io/proxy-body-size"] != "1m" {
		t.Errorf("Ingress labels %v annotations %v", in.Labels, in.Annotations)
	}
}

// TestMetricsPortsAndMonitors: /metrics is scraped from ports of their own,
// never the API's public port, which the NetworkPolicy opens separately.
func TestMetricsPortsAndMonitors(t *testing.T) {
	r := render(t, minimal(set("metrics.serviceMonitor", map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}}),
		set("networkPolicy", map[string]any{"enabled": true,
			"apiFrom":     []any{map[string]any{"podSelector": map[string]any{"matchLabels": map[string]any{"role": "lb"}}}},
			"metricsFrom": []any{map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"name": "monitoring"}}}}})))
	checkChart(t, r)
	ports := map[string]string{}
	for _, sm := range all[*serviceMonitor](r) {
		if sm.Labels["release"] != "prom" {
			t.Errorf("ServiceMonitor %s without the extra label", sm.Name)
		}
		ports[sm.Labels["app.kubernetes.io/component"]] = sm.Spec.Endpoints[0].Port
	}
	if ports["api"] != "metrics" || ports["syncer"] != "metrics" {
		t.Errorf("ServiceMonitors scrape ports %v, want the metrics ports", ports)
	}
	api := deployment(t, r, "api")
	if p := containerPort(api.Spec.Template.Spec, "metrics"); p != 9090 {
		t.Errorf("API metrics port %d", p)
	}
	np := byName[*networkingv1.NetworkPolicy](t, r, releaseName+"-api")
	froms := map[string]string{}
	for _, in := range np.Spec.Ingress {
		for _, p := range in.Ports {
			froms[p.Port.StrVal] = fmt.Sprint(in.From)
		}
	}
	if !strings.Contains(froms["http"], "role: lb") || strings.Contains(froms["http"], "monitoring") ||
		!strings.Contains(froms["metrics"], "monitoring") || strings.Contains(froms["metrics"], "role: lb") {
		t.Errorf("API NetworkPolicy: http from %s, metrics from %s", froms["http"], froms["metrics"])
	}
}

// TestPrometheusRuleAndDashboard: both optional, both made from the files the
// tests check (files/alerts.yaml, files/dashboard.json).
func TestPrometheusRuleAndDashboard(t *testing.T) {
	r := render(t, minimal())
	if len(all[*prometheusRule](r)) != 0 || len(all[*corev1.ConfigMap](r)) != 1 {
		t.Fatal("PrometheusRule or dashboard rendered by default")
	}
	r = render(t, minimal(set("metrics.prometheusRule", map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}}),
		set("metrics.grafanaDashboard", map[string]any{"enabled": true, "annotations": map[string]any{"grafana_folder": "bufferd"}})))
	checkChart(t, r)
	pr := only[*prometheusRule](t, r)
	groups := mustAlertGroups(t)
	var alerts []string
	for _, g := range pr.Spec.Groups {
		for _, rule := range g.Rules {
			alerts = append(alerts, rule.Alert)
		}
	}
	if len(alerts) != len(groups.alerts) || pr.Labels["release"] != "prom" {
		t.Errorf("PrometheusRule alerts %v (labels %v), want the %d of files/alerts.yaml", alerts, pr.Labels, len(groups.alerts))
	}
	cm := byName[*corev1.ConfigMap](t, r, releaseName+"-dashboard")
	if cm.Labels["grafana_dashboard"] != "1" || cm.Annotations["grafana_folder"] != "bufferd" {
		t.Errorf("dashboard ConfigMap labels %v annotations %v", cm.Labels, cm.Annotations)
	}
	if strings.TrimSpace(cm.Data["bufferd.json"]) != strings.TrimSpace(string(mustRead(t, chartDir+"/files/dashboard.json"))) {
		t.Error("the dashboard ConfigMap differs from files/dashboard.json")
	}
}

// TestPodDisruptionBudgetsAndJob: eviction of unhealthy pods, and a Job that
// is cleaned up after it finished.
func TestPodDisruptionBudgetsAndJob(t *testing.T) {
	r := render(t, minimal(set("api.podDisruptionBudget.unhealthyPodEvictionPolicy", "IfHealthyBudget")))
	for _, p := range all[*policyv1.PodDisruptionBudget](r) {
		want := policyv1.AlwaysAllow
		if strings.HasSuffix(p.Name, "-api") {
			want = policyv1.IfHealthyBudget
		}
		if p.Spec.UnhealthyPodEvictionPolicy == nil || *p.Spec.UnhealthyPodEvictionPolicy != want {
			t.Errorf("PDB %s: unhealthyPodEvictionPolicy %v, want %s", p.Name, p.Spec.UnhealthyPodEvictionPolicy, want)
		}
	}
	if ttl := only[*batchv1.Job](t, r).Spec.TTLSecondsAfterFinished; ttl == nil || *ttl != 86400 {
		t.Errorf("Job ttlSecondsAfterFinished %v", ttl)
	}
}

// TestPackageHoldsNoEnvironmentValues loads the chart as `helm package` would
// (.helmignore applied): no environment's values file, so no fixed secret.
func TestPackageHoldsNoEnvironmentValues(t *testing.T) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	dev := mustRead(t, envDir+"/values-dev.yaml")
	if !strings.Contains(string(dev), "adminToken:") {
		t.Fatal("values-dev.yaml no longer sets an admin token: this test checks nothing")
	}
	for _, f := range append(ch.Raw, ch.Files...) {
		if strings.HasPrefix(f.Name, "values-") || strings.Contains(string(f.Data), "dev-admin-token") {
			t.Errorf("the packaged chart holds %s", f.Name)
		}
	}
	if ch.Metadata.KubeVersion == "" {
		t.Error("Chart.yaml has no kubeVersion")
	}
}
