package deploy

import (
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
)

func TestSchemaAcceptsEveryEnvironment(t *testing.T) {
	for _, env := range envs {
		if _, err := renderValues(t, envValues(t, env)); err != nil {
			t.Errorf("values-%s.yaml: %v", env, err)
		}
	}
}

// TestSchemaRejectsBadValues checks values.schema.json the way helm install
// does (chartutil.ToRenderValues): each bad value, over the dev values, must be
// refused and the error must name where.
func TestSchemaRejectsBadValues(t *testing.T) {
	cases := []struct {
		name     string
		override map[string]any
		where    string // part of the error
	}{
		{"unknown top-level key", set("replicaCount", 3), "additional properties 'replicaCount'"},
		{"misspelt nested key", set("api.replicas", 3), "'/api': additional properties 'replicas'"},
		{"negative replicas", set("api.replicaCount", -1), "/api/replicaCount"},
		{"replicas as a string", set("api.replicaCount", "2"), "/api/replicaCount"},
		{"no syncer", set("syncer.replicaCount", 0), "/syncer/replicaCount"},
		{"pull policy", set("image.pullPolicy", "Sometimes"), "/image/pullPolicy"},
		{"digest that is a tag", set("image.digest", "latest"), "/image/digest"},
		{"empty repository", set("image.repository", ""), "/image/repository"},
		{"chain kind", set("config.chainKind", "ethereum"), "/config/chainKind"},
		{"chain URL without scheme", set("config.chainURL", "blockcenter.example.com"), "/config/chainURL"},
		{"sync interval", set("config.syncInterval", "2 seconds"), "/config/syncInterval"},
		{"shutdown timeout as a number", set("config.shutdownTimeout", 15), "/config/shutdownTimeout"},
		{"log level", set("config.logLevel", "verbose"), "/config/logLevel"},
		{"log format", set("config.logFormat", "xml"), "/config/logFormat"},
		{"database URL of another database", set("secret.databaseURL", "mysql://root@db/bufferd"), "/secret/databaseURL"},
		{"Secret key with a slash", set("secret.keys.databaseURL", "db/url"), "/secret/keys/databaseURL"},
		{"service port", set("api.service.port", 70000), "/api/service/port"},
		{"service type", set("api.service.type", "Ingress"), "/api/service/type"},
		{"container port", set("api.containerPort", 0), "/api/containerPort"},
		{"metrics port", set("syncer.metricsPort", "9100"), "/syncer/metricsPort"},
		{"CPU target", set("api.autoscaling.targetCPUUtilizationPercentage", 150), "/api/autoscaling/targetCPUUtilizationPercentage"},
		{"minReplicas 0", set("api.autoscaling.minReplicas", 0), "/api/autoscaling/minReplicas"},
		{"PDB minAvailable", set("api.podDisruptionBudget.minAvailable", "half"), "/api/podDisruptionBudget/minAvailable"},
		{"probe period", set("api.readinessProbe.periodSeconds", 0), "/api/readinessProbe/periodSeconds"},
		{"probe field", set("api.livenessProbe.httpGet", map[string]any{"path": "/"}), "httpGet"},
		{"pod label value", set("api.podLabels", map[string]any{"tier": 1}), "/api/podLabels/tier"},
		{"scrape interval", set("metrics.serviceMonitor.interval", "often"), "/metrics/serviceMonitor/interval"},
		{"network policy switch", set("networkPolicy.enabled", "yes"), "/networkPolicy/enabled"},
		{"network policy peers", set("networkPolicy.apiFrom", map[string]any{"podSelector": map[string]any{}}), "/networkPolicy/apiFrom"},
		{"migrations deadline", set("migrations.activeDeadlineSeconds", 0), "/migrations/activeDeadlineSeconds"},
		{"image pull secret", set("imagePullSecrets", []any{"registry"}), "/imagePullSecrets/0"},
		{"leader TTL", set("config.leaderTTL", "9"), "/config/leaderTTL"},
		{"index poll", set("config.indexPoll", "fast"), "/config/indexPoll"},
		{"sweep interval", set("config.sweepInterval", 30), "/config/sweepInterval"},
		{"index start depth", set("config.indexStartDepth", -1), "/config/indexStartDepth"},
		{"reserve rate", set("config.reserveRate", -1), "/config/reserveRate"},
		{"reserve burst", set("config.reserveBurst", 0), "/config/reserveBurst"},
		{"CORS origin without scheme", set("config.corsOrigins", "app.example.com"), "/config/corsOrigins"},
		{"legacy CORS origin with a path", set("config.legacyCorsOrigins", "https://app.example.com/x"), "/config/legacyCorsOrigins"},
		{"proxy header with a colon", set("config.trustedProxyHeader", "X-Real-IP:"), "/config/trustedProxyHeader"},
		{"legacy list sample", set("config.legacyListSample", "8"), "/config/legacyListSample"},
		{"pprof address without a port", set("config.pprofAddr", "127.0.0.1"), "/config/pprofAddr"},
		{"API pool size", set("api.databaseMaxConns", 0), "/api/databaseMaxConns"},
		{"syncer pool size", set("syncer.databaseMaxConns", "10"), "/syncer/databaseMaxConns"},
		{"API metrics port", set("api.metricsPort", 0), "/api/metricsPort"},
		{"max connections", set("postgresql.maxConnections", 0), "/postgresql/maxConnections"},
		{"PDB eviction policy", set("api.podDisruptionBudget.unhealthyPodEvictionPolicy", "Never"), "/api/podDisruptionBudget/unhealthyPodEvictionPolicy"},
		{"Job TTL", set("migrations.ttlSecondsAfterFinished", -1), "/migrations/ttlSecondsAfterFinished"},
		{"secret reference without a key", set("secret.databaseURLSecret", map[string]any{"name": "db", "key": ""}), "/secret/databaseURLSecret/key"},
		{"secret reference name", set("secret.redisURLSecret.name", "Redis_Secret"), "/secret/redisURLSecret/name"},
		{"Redis address with a password", set("secret.redisAddress", "redis://:pw@redis:6379/0"), "/secret/redisAddress"},
		{"extra env without a name", set("extraEnv", []any{map[string]any{"value": "x"}}), "/extraEnv/0"},
		{"ingress path type", set("ingress.hosts", []any{map[string]any{"host": "a", "paths": []any{map[string]any{"path": "/", "pathType": "Any"}}}}), "/ingress/hosts/0/paths/0/pathType"},
		{"ingress switch", set("ingress.enabled", "true"), "/ingress/enabled"},
		{"rule switch", set("metrics.prometheusRule.enabled", 1), "/metrics/prometheusRule/enabled"},
		{"dashboard label value", set("metrics.grafanaDashboard.labels", map[string]any{"grafana_dashboard": 1}), "/metrics/grafanaDashboard/labels/grafana_dashboard"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := renderValues(t, envValues(t, "dev", c.override))
			if err == nil {
				t.Fatalf("accepted %v", c.override)
			}
			if !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), c.where) {
				t.Fatalf("error does not name %s:\n%v", c.where, err)
			}
		})
	}
}

// TestTemplatesRejectWhatTheSchemaCannot checks the template's own checks:
// rules across several values, and required values when the schema is skipped
// (helm install --skip-schema-validation).
func TestTemplatesRejectWhatTheSchemaCannot(t *testing.T) {
	cases := []struct {
		name       string
		override   map[string]any
		skipSchema bool
		want       string
	}{
		{"min above max", set("api.autoscaling", map[string]any{"enabled": true, "minReplicas": 5, "maxReplicas": 2}), false,
			"minReplicas must not exceed maxReplicas"},
		{"both PDB bounds", set("syncer.podDisruptionBudget", map[string]any{"enabled": true, "minAvailable": 1, "maxUnavailable": 1}), false,
			"syncer.podDisruptionBudget: set minAvailable or maxUnavailable, not both"},
		{"no PDB bound", set("api.podDisruptionBudget", map[string]any{"enabled": true, "minAvailable": nil, "maxUnavailable": nil}), false,
			"api.podDisruptionBudget: set minAvailable or maxUnavailable"},
		{"no chain URL", set("config.chainURL", ""), false, "config.chainURL is required"},
		{"no chain URL, schema skipped", set("config.chainURL", ""), true, "config.chainURL is required"},
		{"no database URL", set("secret.databaseURL", ""), false, "secret.databaseURL is required: set secret.existingSecret"},
		{"no Redis URL", set("secret.redisURL", ""), false, "secret.redisURL is required: set secret.existingSecret"},
		{"no database URL, schema skipped", set("secret.databaseURL", ""), true, "secret.databaseURL is required"},
		{"extraEnv repeating a variable of the chart", set("extraEnv", []any{map[string]any{"name": "BUFFERD_LOG_LEVEL", "value": "warn"}}), false,
			"extraEnv: BUFFERD_LOG_LEVEL is set by the chart (a duplicate would break upgrades); set config.logLevel"},
		{"Redis password without the address", set("secret.redisPasswordSecret.name", "redis"), false,
			"secret.redisAddress is required with secret.redisPasswordSecret"},
		{"connection budget", set("api.replicaCount", 10), false,
			"connection budget: 13 API pods x api.databaseMaxConns 10 + 2 syncer pods x syncer.databaseMaxConns 10 = 150 PostgreSQL connections"},
		{"connection budget of the autoscaled maximum", set("api.autoscaling", map[string]any{"enabled": true, "minReplicas": 2, "maxReplicas": 8}), false,
			"10 API pods x api.databaseMaxConns 10"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			caps := chartutil.DefaultCapabilities.Copy()
			caps.KubeVersion = kubeVersion
			top, err := chartutil.ToRenderValuesWithSchemaValidation(mustChart(t), envValues(t, "dev", c.override),
				chartutil.ReleaseOptions{Name: releaseName, Namespace: namespace, IsInstall: true}, caps, c.skipSchema)
			if err != nil {
				t.Fatalf("values refused before rendering: %v", err)
			}
			_, err = engine.Render(mustChart(t), top)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("render error %v, want %q", err, c.want)
			}
		})
	}
}

// TestDefaultValuesFailNamingWhatToSet renders the chart's own defaults: the
// schema accepts them, and the templates stop at the first value to set.
func TestDefaultValuesFailNamingWhatToSet(t *testing.T) {
	if _, err := renderValues(t, nil); err != nil {
		t.Fatalf("the schema refuses the chart's defaults: %v", err)
	}
	_, err := tryRender(t, nil, kubeVersion)
	if err == nil || !strings.Contains(err.Error(), "config.chainURL is required") {
		t.Fatalf("defaults: %v, want a failure naming config.chainURL", err)
	}
	_, err = tryRender(t, set("config.chainURL", "https://blockcenter.example.com"), kubeVersion)
	if err == nil || !strings.Contains(err.Error(), "secret.databaseURL is required") || !strings.Contains(err.Error(), "secret.existingSecret") {
		t.Fatalf("defaults with a chain URL: %v, want a failure naming secret.databaseURL and secret.existingSecret", err)
	}
}
