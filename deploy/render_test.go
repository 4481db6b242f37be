package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Paths from this module's directory.
const (
	chartDir    = "../helm/bufferd"
	envDir      = "../helm/environments"
	namesFile   = "../metrics/names.txt"
	composeFile = "../docker-compose.yml"
	dockerfile  = "../Dockerfile"
	configGo    = "../config/config.go"
)

// envs are the per-environment values files of the chart.
var envs = []string{"dev", "staging", "prod"}

// kubeVersion is the cluster version the chart is rendered for (the SDK alone
// would claim 1.20, which lacks the preStop sleep action).
var kubeVersion = chartutil.KubeVersion{Version: "v1.33.0", Major: "1", Minor: "33"}

const (
	releaseName = "bufferd"
	namespace   = "bufferd"
)

var loadChart = sync.OnceValues(func() (*chart.Chart, error) { return loader.Load(chartDir) })

func mustChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loadChart()
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return ch
}

// envValues reads values-<env>.yaml and deep-merges the overrides over it, as
// `helm template -f values-<env>.yaml --set ...` would.
func envValues(t *testing.T, env string, overrides ...map[string]any) map[string]any {
	t.Helper()
	vals, err := chartutil.ReadValuesFile(filepath.Join(envDir, "values-"+env+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := vals.AsMap()
	for _, o := range overrides {
		out = mergeValues(out, o)
	}
	return out
}

// mergeValues deep-merges src over dst (maps merge, anything else replaces).
func mergeValues(dst, src map[string]any) map[string]any {
	out := maps.Clone(dst)
	if out == nil {
		out = map[string]any{}
	}
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := out[k].(map[string]any); ok {
				out[k] = mergeValues(dm, sm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// set builds a nested override from a dotted path: set("api.replicaCount", 3).
func set(path string, v any) map[string]any {
	parts := strings.Split(path, ".")
	m := map[string]any{parts[len(parts)-1]: v}
	for i := len(parts) - 2; i >= 0; i-- {
		m = map[string]any{parts[i]: m}
	}
	return m
}

// renderValues coalesces vals with the chart's defaults and checks them against
// values.schema.json, as helm install does.
func renderValues(t *testing.T, vals map[string]any) (chartutil.Values, error) {
	t.Helper()
	return renderValuesFor(t, vals, kubeVersion)
}

// renderValuesFor is renderValues for a cluster of version kv.
func renderValuesFor(t *testing.T, vals map[string]any, kv chartutil.KubeVersion) (chartutil.Values, error) {
	t.Helper()
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = kv
	return chartutil.ToRenderValues(mustChart(t), vals, chartutil.ReleaseOptions{
		Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true,
	}, caps)
}

// rendered is one render of the chart.
type rendered struct {
	values  chartutil.Values // .Values as the templates saw them
	objects []object
	notes   string
}

// object is one decoded manifest.
type object struct {
	source string // template file
	kind   string // apiVersion/kind
	meta   *metav1.ObjectMeta
	obj    any // pointer to the typed object
}

func (o object) String() string { return o.kind + " " + o.meta.Name + " (" + o.source + ")" }

// hook returns the helm.sh/hook annotation ("" for release resources).
func (o object) hook() string { return o.meta.Annotations["helm.sh/hook"] }

// render renders the chart like `helm template` and decodes every object strictly.
func render(t *testing.T, vals map[string]any) rendered {
	t.Helper()
	return renderFor(t, vals, kubeVersion)
}

// renderFor is render for a cluster of version kv.
func renderFor(t *testing.T, vals map[string]any, kv chartutil.KubeVersion) rendered {
	t.Helper()
	r, err := tryRender(t, vals, kv)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func tryRender(t *testing.T, vals map[string]any, kv chartutil.KubeVersion) (rendered, error) {
	t.Helper()
	top, err := renderValuesFor(t, vals, kv)
	if err != nil {
		return rendered{}, err
	}
	files, err := engine.Render(mustChart(t), top)
	if err != nil {
		return rendered{}, err
	}
	r := rendered{}
	r.values, _ = top.Table("Values")
	names := slices.Sorted(maps.Keys(files))
	for _, name := range names {
		content := files[name]
		if strings.HasSuffix(name, "NOTES.txt") {
			r.notes = content
			continue
		}
		if strings.HasPrefix(filepath.Base(name), "_") {
			continue
		}
		docs := releaseutil.SplitManifests(content)
		keys := slices.Collect(maps.Keys(docs))
		sort.Slice(keys, func(i, j int) bool { return manifestIndex(keys[i]) < manifestIndex(keys[j]) })
		for _, k := range keys {
			doc := docs[k]
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			o, err := decodeStrict(name, []byte(doc))
			if err != nil {
				return rendered{}, fmt.Errorf("%s: %w\n%s", name, err, doc)
			}
			r.objects = append(r.objects, o)
		}
	}
	return r, nil
}

// manifestIndex is the n of a "manifest-n" key of a rendered split manifest,
// -1 for any other key (sorted first).
func manifestIndex(key string) int {
	var n int
	if _, err := fmt.Sscanf(key, "manifest-%d", &n); err != nil {
		return -1
	}
	return n
}

var commentLine = regexp.MustCompile(`(?m)^\s*#.*$`)

func stripComments(s string) string { return commentLine.ReplaceAllString(s, "") }

// serviceMonitor is the part of the Prometheus Operator's ServiceMonitor the
// chart uses (the operator's Go types are not worth a dependency); decoding is
// strict, so any other field fails.
type serviceMonitor struct {
	metav1.TypeMeta   // embedded: encoding/json inlines it (k8s' ",inline" tag is for its own codecs)
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// prometheusRule is the Prometheus Operator's PrometheusRule as the chart
// renders it: its spec is a Prometheus rule file.
type prometheusRule struct {
	metav1.TypeMeta   // embedded: encoding/json inlines it (k8s' ",inline" tag is for its own codecs)
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// newObject returns a pointer to the Go type of apiVersion/kind and its metadata.
func newObject(kind string) (any, *metav1.ObjectMeta, bool) {
	switch kind {
	case "v1/ConfigMap":
		o := &corev1.ConfigMap{}
		return o, &o.ObjectMeta, true
	case "v1/Secret":
		o := &corev1.Secret{}
		return o, &o.ObjectMeta, true
	case "v1/ServiceAccount":
		o := &corev1.ServiceAccount{}
		return o, &o.ObjectMeta, true
	case "v1/Service":
		o := &corev1.Service{}
		return o, &o.ObjectMeta, true
	case "v1/Pod":
		o := &corev1.Pod{}
		return o, &o.ObjectMeta, true
	case "apps/v1/Deployment":
		o := &appsv1.Deployment{}
		return o, &o.ObjectMeta, true
	case "batch/v1/Job":
		o := &batchv1.Job{}
		return o, &o.ObjectMeta, true
	case "autoscaling/v2/HorizontalPodAutoscaler":
		o := &autoscalingv2.HorizontalPodAutoscaler{}
		return o, &o.ObjectMeta, true
	case "policy/v1/PodDisruptionBudget":
		o := &policyv1.PodDisruptionBudget{}
		return o, &o.ObjectMeta, true
	case "networking.k8s.io/v1/NetworkPolicy":
		o := &networkingv1.NetworkPolicy{}
		return o, &o.ObjectMeta, true
	case "networking.k8s.io/v1/Ingress":
		o := &networkingv1.Ingress{}
		return o, &o.ObjectMeta, true
	case "monitoring.coreos.com/v1/PrometheusRule":
		o := &prometheusRule{}
		return o, &o.ObjectMeta, true
	case "monitoring.coreos.com/v1/ServiceMonitor":
		o := &serviceMonitor{}
		return o, &o.ObjectMeta, true
	}
	return nil, nil, false
}

// decodeStrict decodes one YAML document into its Kubernetes type, refusing
// duplicate keys, unknown fields and trailing data.
func decodeStrict(source string, doc []byte) (object, error) {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return object{}, fmt.Errorf("yaml: %w", err)
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return object{}, err
	}
	kind := tm.APIVersion + "/" + tm.Kind
	obj, meta, ok := newObject(kind)
	if !ok {
		return object{}, fmt.Errorf("unexpected kind %q", kind)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil {
		return object{}, fmt.Errorf("decode %s: %w", kind, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return object{}, fmt.Errorf("decode %s: trailing data", kind)
	}
	return object{source: source, kind: kind, meta: meta, obj: obj}, nil
}

// knownVariables are the BUFFERD_* variables config/config.go reads.
var knownVariables = sync.OnceValues(func() (map[string]bool, error) {
	src, err := os.ReadFile(configGo)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`env:"(BUFFERD_[A-Z_]+)"`).FindAllStringSubmatch(string(src), -1) {
		out[m[1]] = true
	}
	if len(out) < 10 {
		return nil, fmt.Errorf("found only %d variables in %s", len(out), configGo)
	}
	return out, nil
})

func mustKnownVariables(t *testing.T) map[string]bool {
	t.Helper()
	v, err := knownVariables()
	if err != nil {
		t.Fatal(err)
	}
	return v
}
