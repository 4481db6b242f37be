package deploy

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

func TestChartLintsCleanForEveryEnvironment(t *testing.T) {
	for _, env := range envs {
		t.Run(env, func(t *testing.T) {
			kv := kubeVersion
			l := lint.AllWithKubeVersion(chartDir, envValues(t, env), namespace, &kv)
			for _, m := range l.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint -f values-%s.yaml: %s", env, m)
				} else {
					t.Logf("helm lint: %s", m)
				}
			}
		})
	}
}

func TestChartRendersForEveryEnvironment(t *testing.T) {
	for _, env := range envs {
		t.Run(env, func(t *testing.T) {
			r := render(t, envValues(t, env))
			checkChart(t, r)
			checkEnvironment(t, env, r)
		})
	}
}

// TestChartOptionsRender turns every option on, then every option off.
func TestChartOptionsRender(t *testing.T) {
	t.Run("all-on", func(t *testing.T) {
		r := render(t, envValues(t, "dev",
			set("image.digest", "sha256:"+strings.Repeat("ab", 32)),
			set("api.autoscaling", map[string]any{"enabled": true, "minReplicas": 2, "maxReplicas": 4,
				"targetCPUUtilizationPercentage": 60, "targetMemoryUtilizationPercentage": 80}),
			set("api.podDisruptionBudget", map[string]any{"enabled": true, "minAvailable": nil, "maxUnavailable": "50%"}),
			set("api.topologySpreadConstraints", []any{map[string]any{
				"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}}),
			set("metrics.serviceMonitor.enabled", true),
			set("networkPolicy", map[string]any{"enabled": true,
				"apiFrom":     []any{map[string]any{"podSelector": map[string]any{"matchLabels": map[string]any{"role": "frontend"}}}},
				"metricsFrom": []any{map[string]any{"namespaceSelector": map[string]any{}}},
				"egress":      []any{map[string]any{"ports": []any{map[string]any{"port": 5432}}}},
			}),
			set("imagePullSecrets", []any{map[string]any{"name": "registry"}}),
		))
		checkChart(t, r)
		if d := deployment(t, r, "api"); d.Spec.Replicas != nil {
			t.Error("api Deployment sets replicas while the HPA owns them")
		}
		if img := deployment(t, r, "api").Spec.Template.Spec.Containers[0].Image; !strings.Contains(img, "@sha256:abab") {
			t.Errorf("digest not used: %s", img)
		}
		hpa := only[*autoscalingv2.HorizontalPodAutoscaler](t, r)
		if len(hpa.Spec.Metrics) != 2 {
			t.Errorf("HPA has %d metrics, want cpu and memory", len(hpa.Spec.Metrics))
		}
		if n := len(all[*serviceMonitor](r)); n != 2 {
			t.Errorf("%d ServiceMonitors, want 2", n)
		}
		for _, np := range all[*networkingv1.NetworkPolicy](r) {
			if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) || len(np.Spec.Egress) != 2 {
				t.Errorf("%s: egress not restricted to DNS + 1 rule: %+v", np.Name, np.Spec.Egress)
			}
		}
	})
	t.Run("all-off", func(t *testing.T) {
		r := render(t, envValues(t, "staging",
			set("migrations.enabled", false),
			set("tests.enabled", false),
			set("serviceAccount", map[string]any{"create": false, "name": "bufferd-runner"}),
			set("api.podDisruptionBudget.enabled", false),
			set("syncer.podDisruptionBudget.enabled", false),
			set("metrics.serviceMonitor.enabled", false),
			set("api.preStopSleepSeconds", 0),
		))
		checkChart(t, r)
		for _, o := range r.objects {
			switch o.obj.(type) {
			case *batchv1.Job, *corev1.Pod, *policyv1.PodDisruptionBudget, *serviceMonitor, *corev1.ServiceAccount, *corev1.Secret:
				t.Errorf("%s rendered although disabled", o)
			}
		}
		if sa := deployment(t, r, "syncer").Spec.Template.Spec.ServiceAccountName; sa != "bufferd-runner" {
			t.Errorf("syncer service account %q", sa)
		}
		if deployment(t, r, "api").Spec.Template.Spec.Containers[0].Lifecycle != nil {
			t.Error("preStop hook with preStopSleepSeconds 0")
		}
	})
}

// TestPreStopPauseNeedsKubernetes130 checks that the API's preStop sleep is
// only asked of clusters that have the sleep action.
func TestPreStopPauseNeedsKubernetes130(t *testing.T) {
	for _, c := range []struct {
		minor string
		pause bool
	}{{"29", false}, {"30", true}, {"35", true}} {
		kv := chartutil.KubeVersion{Version: "v1." + c.minor + ".4", Major: "1", Minor: c.minor}
		r := renderFor(t, envValues(t, "prod"), kv)
		checkChart(t, r)
		lc := deployment(t, r, "api").Spec.Template.Spec.Containers[0].Lifecycle
		if got := lc != nil && lc.PreStop != nil && lc.PreStop.Sleep != nil && lc.PreStop.Sleep.Seconds == 5; got != c.pause {
			t.Errorf("Kubernetes 1.%s: preStop sleep %v, want %v", c.minor, got, c.pause)
		}
	}
}

// checkEnvironment checks what each environment file is for.
func checkEnvironment(t *testing.T, env string, r rendered) {
	t.Helper()
	api, syncer := deployment(t, r, "api"), deployment(t, r, "syncer")
	pdbs := all[*policyv1.PodDisruptionBudget](r)
	switch env {
	case "dev":
		if *api.Spec.Replicas != 1 || *syncer.Spec.Replicas != 1 || len(pdbs) != 0 {
			t.Errorf("dev: want 1 api, 1 syncer, no PDB; got %d, %d, %d PDBs", *api.Spec.Replicas, *syncer.Spec.Replicas, len(pdbs))
		}
		if len(all[*corev1.Secret](r)) != 2 { // the release's and the migration hook's
			t.Error("dev: the chart should make the Secret from values")
		}
	case "staging", "prod":
		if *syncer.Spec.Replicas != 2 {
			t.Errorf("%s: %d syncers, want 2", env, *syncer.Spec.Replicas)
		}
		if len(all[*corev1.Secret](r)) != 0 {
			t.Errorf("%s: renders a Secret although existingSecret is set", env)
		}
		if len(pdbs) != 2 || len(all[*serviceMonitor](r)) != 2 {
			t.Errorf("%s: want 2 PDBs and 2 ServiceMonitors", env)
		}
		if strings.HasSuffix(api.Spec.Template.Spec.Containers[0].Image, ":main") {
			t.Errorf("%s: image not pinned", env)
		}
	}
	if env == "prod" {
		hpa := only[*autoscalingv2.HorizontalPodAutoscaler](t, r)
		if api.Spec.Replicas != nil || *hpa.Spec.MinReplicas < 3 {
			t.Error("prod: the API should be autoscaled from 3 replicas")
		}
		if n := len(all[*networkingv1.NetworkPolicy](r)); n != 2 {
			t.Errorf("prod: %d NetworkPolicies, want 2", n)
		}
		if len(api.Spec.Template.Spec.TopologySpreadConstraints) == 0 {
			t.Error("prod: API pods not spread")
		}
	} else if len(all[*autoscalingv2.HorizontalPodAutoscaler](r)) != 0 || len(all[*networkingv1.NetworkPolicy](r)) != 0 {
		t.Errorf("%s: HPA or NetworkPolicy rendered", env)
	}
}

// checkChart checks every rendered object, whatever the values.
func checkChart(t *testing.T, r rendered) {
	t.Helper()
	v := r.values
	fullname := releaseName // the release is named like the chart
	known := mustKnownVariables(t)
	seen := map[string]bool{}
	for _, o := range r.objects {
		id := o.kind + "/" + o.meta.Name
		if seen[id] {
			t.Errorf("%s rendered twice", o)
		}
		seen[id] = true
		checkMetadata(t, o)
		if strings.Contains(o.kind, "CronJob") {
			t.Errorf("%s: the syncer must not be a CronJob", o)
		}
	}

	api, syncer := deployment(t, r, "api"), deployment(t, r, "syncer")
	cm := byName[*corev1.ConfigMap](t, r, fullname)
	for k := range cm.Data {
		if !known[k] {
			t.Errorf("ConfigMap sets %s, which bufferd does not read", k)
		}
	}
	if cm.Data["BUFFERD_CHAIN_URL"] == "" {
		t.Error("ConfigMap has no chain URL")
	}

	// Workloads: every pod template of the chart.
	type workload struct {
		o    object
		pod  metav1.ObjectMeta
		spec corev1.PodSpec
	}
	var workloads []workload
	for _, o := range r.objects {
		switch x := o.obj.(type) {
		case *appsv1.Deployment:
			workloads = append(workloads, workload{o, x.Spec.Template.ObjectMeta, x.Spec.Template.Spec})
			sel := selector(t, x.Spec.Selector)
			if !sel.Matches(labels.Set(x.Spec.Template.Labels)) {
				t.Errorf("%s: selector %s does not match its pod labels %v", o, sel, x.Spec.Template.Labels)
			}
			if x.Spec.Template.Labels["app.kubernetes.io/component"] == "" || !strings.Contains(sel.String(), "app.kubernetes.io/component") {
				t.Errorf("%s: selector or pods without a component", o)
			}
			for _, k := range []string{"checksum/config"} {
				if x.Spec.Template.Annotations[k] == "" {
					t.Errorf("%s: no %s annotation (config changes would not roll the pods)", o, k)
				}
			}
		case *batchv1.Job:
			workloads = append(workloads, workload{o, x.Spec.Template.ObjectMeta, x.Spec.Template.Spec})
		case *corev1.Pod:
			workloads = append(workloads, workload{o, x.ObjectMeta, x.Spec})
		}
	}
	if selector(t, api.Spec.Selector).Matches(labels.Set(syncer.Spec.Template.Labels)) ||
		selector(t, syncer.Spec.Selector).Matches(labels.Set(api.Spec.Template.Labels)) {
		t.Error("the api and syncer selectors overlap")
	}

	image := imageRef(v)
	shutdown := mustDuration(t, cm.Data["BUFFERD_SHUTDOWN_TIMEOUT"])
	for _, w := range workloads {
		ps := w.spec
		if len(ps.Containers) == 0 {
			t.Errorf("%s: no containers", w.o)
		}
		if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
			t.Errorf("%s: mounts a service account token; bufferd never calls the Kubernetes API", w.o)
		}
		if psc := ps.SecurityContext; psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault ||
			psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
			t.Errorf("%s: pod securityContext not hardened: %+v", w.o, psc)
		}
		if _, ok := w.o.obj.(*appsv1.Deployment); ok && w.spec.ServiceAccountName == "" {
			t.Errorf("%s: no service account", w.o)
		}
		if w.spec.ServiceAccountName != "" && w.spec.ServiceAccountName != "default" && enabled(v["serviceAccount"], "create") {
			sa := byName[*corev1.ServiceAccount](t, r, w.spec.ServiceAccountName)
			if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
				t.Errorf("ServiceAccount %s automounts its token", sa.Name)
			}
			if w.o.hook() != "" {
				t.Errorf("%s: a hook uses the chart's ServiceAccount, which pre-install hooks run before", w.o)
			}
		}
		volumes := map[string]bool{}
		for _, vol := range ps.Volumes {
			volumes[vol.Name] = true
		}
		for _, c := range ps.Containers {
			where := fmt.Sprintf("%s container %s", w.o, c.Name)
			if c.Image != image {
				t.Errorf("%s: image %s, want %s", where, c.Image, image)
			}
			checkContainerSecurity(t, where, c.SecurityContext)
			if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
				t.Errorf("%s: resources want cpu and memory requests and a memory limit: %+v", where, c.Resources)
			}
			if len(c.Args) == 0 || len(c.Command) != 0 {
				t.Errorf("%s: want the image's entrypoint with args, got command %v args %v", where, c.Command, c.Args)
			}
			for _, m := range c.VolumeMounts {
				if !volumes[m.Name] {
					t.Errorf("%s: mounts unknown volume %s", where, m.Name)
				}
			}
			checkEnv(t, r, w.o, where, c, known)
		}
		if dep, ok := w.o.obj.(*appsv1.Deployment); ok {
			grace := time.Duration(*dep.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
			var pause time.Duration
			if lc := ps.Containers[0].Lifecycle; lc != nil && lc.PreStop != nil && lc.PreStop.Sleep != nil {
				pause = time.Duration(lc.PreStop.Sleep.Seconds) * time.Second
			}
			if grace <= shutdown+pause {
				t.Errorf("%s: terminationGracePeriodSeconds %s leaves no time for preStop %s + shutdown %s", w.o, grace, pause, shutdown)
			}
			for _, tsc := range ps.TopologySpreadConstraints {
				if tsc.LabelSelector == nil || !selector(t, tsc.LabelSelector).Matches(labels.Set(dep.Spec.Template.Labels)) {
					t.Errorf("%s: topology spread constraint does not select its own pods: %+v", w.o, tsc.LabelSelector)
				}
			}
		}
	}

	// The API and the syncer: args, listen ports and probes.
	checkServer(t, api, "api", "http", "BUFFERD_ADDR", true)
	checkServer(t, syncer, "syncer", "metrics", "BUFFERD_METRICS_ADDR", false)
	checkListens(t, api, "metrics", "BUFFERD_API_METRICS_ADDR")
	if containerPort(api.Spec.Template.Spec, "metrics") == containerPort(api.Spec.Template.Spec, "http") {
		t.Error("the API's metrics port is its public port")
	}

	// Services select exactly one Deployment's pods, on a port its containers name.
	deps := all[*appsv1.Deployment](r)
	services := all[*corev1.Service](r)
	if len(services) != 2 {
		t.Errorf("%d Services, want api and syncer", len(services))
	}
	for _, s := range services {
		d := selectsOne(t, "Service "+s.Name, labels.SelectorFromSet(s.Spec.Selector), deps)
		if !sameComponent(t, "Service "+s.Name, s.ObjectMeta, d) {
			continue
		}
		for _, p := range s.Spec.Ports {
			if p.TargetPort.Type != intstr.String || containerPort(d.Spec.Template.Spec, p.TargetPort.StrVal) == 0 {
				t.Errorf("Service %s port %s: targetPort %s is not a named port of %s", s.Name, p.Name, p.TargetPort.String(), d.Name)
			}
		}
	}
	apiSvc := byName[*corev1.Service](t, r, fullname+"-api")

	// HPA, PDBs, NetworkPolicies, ServiceMonitors.
	for _, h := range all[*autoscalingv2.HorizontalPodAutoscaler](r) {
		if h.Spec.ScaleTargetRef.Kind != "Deployment" || h.Spec.ScaleTargetRef.Name != api.Name || h.Spec.ScaleTargetRef.APIVersion != "apps/v1" {
			t.Errorf("HPA %s targets %+v, want the API Deployment", h.Name, h.Spec.ScaleTargetRef)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas > h.Spec.MaxReplicas || len(h.Spec.Metrics) == 0 {
			t.Errorf("HPA %s: bad bounds or no metric", h.Name)
		}
		if api.Spec.Replicas != nil {
			t.Error("the API Deployment sets replicas although an HPA scales it")
		}
	}
	for _, p := range all[*policyv1.PodDisruptionBudget](r) {
		d := selectsOne(t, "PDB "+p.Name, selector(t, p.Spec.Selector), deps)
		sameComponent(t, "PDB "+p.Name, p.ObjectMeta, d)
		if p.Spec.UnhealthyPodEvictionPolicy == nil {
			t.Errorf("PDB %s: no unhealthyPodEvictionPolicy (a pod that never gets ready blocks every drain)", p.Name)
		}
		if (p.Spec.MinAvailable == nil) == (p.Spec.MaxUnavailable == nil) {
			t.Errorf("PDB %s: want exactly one of minAvailable and maxUnavailable", p.Name)
		}
		if d != nil && p.Spec.MinAvailable != nil && p.Spec.MinAvailable.Type == intstr.Int {
			replicas := int32(1)
			if d.Spec.Replicas != nil {
				replicas = *d.Spec.Replicas
			} else if h := all[*autoscalingv2.HorizontalPodAutoscaler](r); len(h) == 1 {
				replicas = *h[0].Spec.MinReplicas
			}
			if p.Spec.MinAvailable.IntVal >= replicas {
				t.Errorf("PDB %s: minAvailable %d with %d replicas blocks every drain", p.Name, p.Spec.MinAvailable.IntVal, replicas)
			}
		}
	}
	for _, np := range all[*networkingv1.NetworkPolicy](r) {
		d := selectsOne(t, "NetworkPolicy "+np.Name, selector(t, &np.Spec.PodSelector), deps)
		if !sameComponent(t, "NetworkPolicy "+np.Name, np.ObjectMeta, d) {
			continue
		}
		for _, in := range np.Spec.Ingress {
			for _, p := range in.Ports {
				if p.Port == nil || p.Port.Type != intstr.String || containerPort(d.Spec.Template.Spec, p.Port.StrVal) == 0 {
					t.Errorf("NetworkPolicy %s: port %v is not a named port of %s", np.Name, p.Port, d.Name)
				}
			}
			servesHTTP := slices.ContainsFunc(in.Ports, func(p networkingv1.NetworkPolicyPort) bool { return p.Port != nil && p.Port.StrVal == "http" })
			if len(in.From) > 0 && d == api && servesHTTP {
				// The helm test pod must still reach the API.
				ok := false
				for _, w := range workloads {
					if w.o.hook() == "test" {
						for _, peer := range in.From {
							if peer.PodSelector != nil && peer.NamespaceSelector == nil && selector(t, peer.PodSelector).Matches(labels.Set(w.pod.Labels)) {
								ok = true
							}
						}
					}
				}
				if !ok && enabled(v["tests"], "enabled") {
					t.Errorf("NetworkPolicy %s shuts out the helm test pod", np.Name)
				}
			}
		}
	}
	for _, sm := range all[*serviceMonitor](r) {
		var target *corev1.Service
		for _, s := range services {
			if selector(t, &sm.Spec.Selector).Matches(labels.Set(s.Labels)) {
				if target != nil {
					t.Errorf("ServiceMonitor %s selects several Services", sm.Name)
				}
				target = s
			}
		}
		if target == nil {
			t.Errorf("ServiceMonitor %s selects no Service", sm.Name)
			continue
		}
		if !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{namespace}) {
			t.Errorf("ServiceMonitor %s watches namespaces %v", sm.Name, sm.Spec.NamespaceSelector.MatchNames)
		}
		for _, e := range sm.Spec.Endpoints {
			if !slices.ContainsFunc(target.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == e.Port }) || e.Path != "/metrics" {
				t.Errorf("ServiceMonitor %s scrapes %s%s, not a port of Service %s", sm.Name, e.Port, e.Path, target.Name)
			}
			mustDuration(t, e.Interval)
		}
	}

	// The migration hook Job and the helm test pod.
	migrations := enabled(v["migrations"], "enabled")
	jobs := all[*batchv1.Job](r)
	if migrations != (len(jobs) == 1) {
		t.Errorf("migrations enabled %v, %d Jobs", migrations, len(jobs))
	}
	for _, j := range jobs {
		o := find(t, r, j)
		if o.hook() != "pre-install,pre-upgrade" || !strings.Contains(o.meta.Annotations["helm.sh/hook-delete-policy"], "before-hook-creation") {
			t.Errorf("Job %s is not a pre-install,pre-upgrade hook: %v", j.Name, o.meta.Annotations)
		}
		c := j.Spec.Template.Spec.Containers[0]
		if !slices.Equal(c.Args, []string{"migrate", "up"}) || j.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
			t.Errorf("Job %s runs %v (restart %s)", j.Name, c.Args, j.Spec.Template.Spec.RestartPolicy)
		}
		if j.Spec.BackoffLimit == nil || j.Spec.ActiveDeadlineSeconds == nil || j.Spec.TTLSecondsAfterFinished == nil {
			t.Errorf("Job %s: no backoffLimit, activeDeadlineSeconds or ttlSecondsAfterFinished", j.Name)
		}
	}
	for _, p := range all[*corev1.Pod](r) {
		o := find(t, r, p)
		if o.hook() != "test" {
			t.Errorf("Pod %s is not a helm test hook", p.Name)
		}
		want := []string{"healthcheck", "--url", fmt.Sprintf("http://%s:%d/readyz", apiSvc.Name, apiSvc.Spec.Ports[0].Port)}
		if !slices.Equal(p.Spec.Containers[0].Args, want) {
			t.Errorf("test Pod runs %v, want %v", p.Spec.Containers[0].Args, want)
		}
	}

	if !strings.Contains(r.notes, apiSvc.Name) || !strings.Contains(r.notes, "helm test") {
		t.Errorf("NOTES.txt does not tell how to reach and test the API:\n%s", r.notes)
	}
}

// checkMetadata checks names and the labels `helm create` gives every object.
func checkMetadata(t *testing.T, o object) {
	t.Helper()
	if errs := validation.IsDNS1123Subdomain(o.meta.Name); len(errs) > 0 {
		t.Errorf("%s: bad name: %v", o, errs)
	}
	if o.kind == "v1/Service" {
		if errs := validation.IsDNS1035Label(o.meta.Name); len(errs) > 0 {
			t.Errorf("%s: bad Service name: %v", o, errs)
		}
	}
	if o.meta.Namespace != "" {
		t.Errorf("%s: sets its namespace (helm -n does)", o)
	}
	want := map[string]string{
		"app.kubernetes.io/name":       "bufferd",
		"app.kubernetes.io/instance":   releaseName,
		"app.kubernetes.io/managed-by": "Helm",
	}
	for k, v := range want {
		if o.meta.Labels[k] != v {
			t.Errorf("%s: label %s=%q, want %q", o, k, o.meta.Labels[k], v)
		}
	}
	for _, k := range []string{"helm.sh/chart", "app.kubernetes.io/version"} {
		if o.meta.Labels[k] == "" {
			t.Errorf("%s: no label %s", o, k)
		}
	}
	for k, v := range o.meta.Labels {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			t.Errorf("%s: label key %q: %v", o, k, errs)
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			t.Errorf("%s: label %s value %q: %v", o, k, v, errs)
		}
	}
	comp := o.meta.Labels["app.kubernetes.io/component"]
	for _, c := range []string{"api", "syncer"} {
		if strings.HasSuffix(o.meta.Name, "-"+c) && comp != c {
			t.Errorf("%s: component label %q, want %q", o, comp, c)
		}
	}
}

// checkContainerSecurity checks the hardened container securityContext.
func checkContainerSecurity(t *testing.T, where string, sc *corev1.SecurityContext) {
	t.Helper()
	switch {
	case sc == nil:
		t.Errorf("%s: no securityContext", where)
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Errorf("%s: not runAsNonRoot", where)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("%s: root filesystem writable", where)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("%s: privilege escalation allowed", where)
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("%s: capabilities not dropped: %+v", where, sc.Capabilities)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("%s: seccomp not RuntimeDefault", where)
	case sc.Privileged != nil && *sc.Privileged:
		t.Errorf("%s: privileged", where)
	}
}

// checkEnv checks that every variable is one bufferd reads and that every
// Secret and ConfigMap reference resolves.
func checkEnv(t *testing.T, r rendered, o object, where string, c corev1.Container, known map[string]bool) {
	t.Helper()
	users := userSecrets(r.values)
	names := map[string]bool{}
	for _, e := range c.Env {
		if names[e.Name] {
			t.Errorf("%s: %s set twice (strategic merge patches of upgrades fail on duplicates)", where, e.Name)
		}
		names[e.Name] = true
		if !known[e.Name] && e.Name != redisPasswordVar {
			t.Errorf("%s: sets %s, which bufferd does not read", where, e.Name)
		}
		if e.Name == "BUFFERD_REDIS_URL" && strings.Contains(e.Value, "$("+redisPasswordVar+")") && !names[redisPasswordVar] {
			t.Errorf("%s: BUFFERD_REDIS_URL refers to %s before it is defined", where, redisPasswordVar)
		}
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
			t.Errorf("%s: %s from field %s", where, e.Name, e.ValueFrom.FieldRef.FieldPath)
		}
		ref := (*corev1.SecretKeySelector)(nil)
		if e.ValueFrom != nil {
			ref = e.ValueFrom.SecretKeyRef
		}
		if ref == nil {
			continue
		}
		if users[ref.Name] {
			continue // the user's Secret
		}
		s := byName[*corev1.Secret](t, r, ref.Name)
		if s == nil {
			continue
		}
		sobj := find(t, r, s)
		if _, ok := s.Data[ref.Key]; !ok && (ref.Optional == nil || !*ref.Optional) {
			t.Errorf("%s: %s refers to key %s missing from Secret %s", where, e.Name, ref.Key, s.Name)
		}
		// A hook may only use a Secret that exists when it runs: a hook Secret
		// of the same events and a lower weight; release resources only
		// reference release Secrets.
		switch {
		case o.hook() == "" && sobj.hook() != "":
			t.Errorf("%s: uses hook Secret %s, which is deleted after the hooks", where, s.Name)
		case o.hook() != "" && o.hook() != "test" && (sobj.hook() != o.hook() || weight(t, sobj) >= weight(t, o)):
			t.Errorf("%s: hook uses Secret %s, which does not exist before it runs", where, s.Name)
		}
	}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil {
			byName[*corev1.ConfigMap](t, r, ef.ConfigMapRef.Name)
			if o.hook() != "" {
				t.Errorf("%s: a hook reads ConfigMap %s, which pre-install hooks run before", where, ef.ConfigMapRef.Name)
			}
		}
		if ef.SecretRef != nil {
			t.Errorf("%s: envFrom a Secret hides which keys are used", where)
		}
	}
}

// redisPasswordVar holds the password from secret.redisPasswordSecret, for
// Kubernetes to put into BUFFERD_REDIS_URL.
const redisPasswordVar = "REDIS_PASSWORD"

// userSecrets are the names of the Secrets the values refer to, which the
// user makes.
func userSecrets(v chartutil.Values) map[string]bool {
	out := map[string]bool{}
	for _, p := range []string{"secret.existingSecret", "secret.databaseURLSecret.name", "secret.redisURLSecret.name", "secret.redisPasswordSecret.name", "secret.adminTokenSecret.name"} {
		if name, _ := v.PathValue(p); name != nil && name != "" {
			out[name.(string)] = true
		}
	}
	return out
}

func weight(t *testing.T, o object) int {
	t.Helper()
	w, err := strconv.Atoi(o.meta.Annotations["helm.sh/hook-weight"])
	if err != nil {
		t.Errorf("%s: hook weight: %v", o, err)
	}
	return w
}

// checkServer checks a Deployment's container: its subcommand, that the named
// port is the one the process listens on, and probes on /livez and /readyz.
func checkServer(t *testing.T, d *appsv1.Deployment, sub, portName, addrVar string, api bool) {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	if len(d.Spec.Template.Spec.Containers) != 1 || !slices.Equal(c.Args, []string{sub}) {
		t.Errorf("%s: want one container running %q, got %v", d.Name, sub, c.Args)
	}
	port := containerPort(d.Spec.Template.Spec, portName)
	if port == 0 {
		t.Fatalf("%s: no container port %s", d.Name, portName)
	}
	checkListens(t, d, portName, addrVar)
	for _, pr := range []struct {
		probe *corev1.Probe
		path  string
	}{{c.LivenessProbe, "/livez"}, {c.ReadinessProbe, "/readyz"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			t.Errorf("%s: no HTTP probe for %s", d.Name, pr.path)
			continue
		}
		g := pr.probe.HTTPGet
		if g.Path != pr.path || g.Port.Type != intstr.String || g.Port.StrVal != portName {
			t.Errorf("%s: probe GET %s on port %s, want %s on %s", d.Name, g.Path, g.Port.String(), pr.path, portName)
		}
		if pr.probe.TimeoutSeconds < 1 || pr.probe.PeriodSeconds < 1 {
			t.Errorf("%s: probe %s without timing", d.Name, pr.path)
		}
	}
	if d.Spec.Template.Labels["app.kubernetes.io/component"] != sub {
		t.Errorf("%s: pods labelled component %q, want %q", d.Name, d.Spec.Template.Labels["app.kubernetes.io/component"], sub)
	}
	if !api {
		for _, e := range c.Env {
			if e.Name == "BUFFERD_ADMIN_TOKEN" {
				t.Errorf("%s: the syncer gets the admin token it does not need", d.Name)
			}
		}
	}
}

// checkListens checks that the container listens on its named port on every
// interface through addrVar.
func checkListens(t *testing.T, d *appsv1.Deployment, portName, addrVar string) {
	t.Helper()
	port := containerPort(d.Spec.Template.Spec, portName)
	var addr string
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		if e.Name == addrVar {
			addr = e.Value
		}
	}
	host, p, err := net.SplitHostPort(addr)
	if err != nil || p != strconv.Itoa(int(port)) || (host != "0.0.0.0" && host != "") {
		t.Errorf("%s: %s=%q, but the container port %s is %d on every interface", d.Name, addrVar, addr, portName, port)
	}
}

// sameComponent checks that an object selecting d's pods is labelled as
// their component (the api PDB guards the api pods); false when d is nil.
func sameComponent(t *testing.T, what string, meta metav1.ObjectMeta, d *appsv1.Deployment) bool {
	t.Helper()
	if d == nil {
		return false
	}
	if c := meta.Labels["app.kubernetes.io/component"]; c != d.Spec.Template.Labels["app.kubernetes.io/component"] {
		t.Errorf("%s is labelled component %q but selects the pods of %s", what, c, d.Name)
	}
	return true
}

func containerPort(ps corev1.PodSpec, name string) int32 {
	for _, c := range ps.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return p.ContainerPort
			}
		}
	}
	return 0
}

// selectsOne returns the one Deployment whose pods sel selects (nil, reported, otherwise).
func selectsOne(t *testing.T, what string, sel labels.Selector, deps []*appsv1.Deployment) *appsv1.Deployment {
	t.Helper()
	var out []*appsv1.Deployment
	for _, d := range deps {
		if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			out = append(out, d)
		}
	}
	if len(out) != 1 {
		t.Errorf("%s: selector %s selects %d Deployments' pods, want 1", what, sel, len(out))
		return nil
	}
	return out[0]
}

func selector(t *testing.T, ls *metav1.LabelSelector) labels.Selector {
	t.Helper()
	if ls == nil || (len(ls.MatchLabels) == 0 && len(ls.MatchExpressions) == 0) {
		t.Error("empty label selector (selects everything)")
		return labels.Nothing()
	}
	s, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		t.Error(err)
		return labels.Nothing()
	}
	return s
}

func imageRef(v chartutil.Values) string {
	img := v["image"].(map[string]any)
	if d, _ := img["digest"].(string); d != "" {
		return img["repository"].(string) + "@" + d
	}
	tag, _ := img["tag"].(string)
	if tag == "" {
		tag = mustChartAppVersion
	}
	return img["repository"].(string) + ":" + tag
}

// mustChartAppVersion is Chart.yaml's appVersion, the image tag by default.
const mustChartAppVersion = "0.1.0"

func mustDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Errorf("duration %q: %v", s, err)
	}
	return d
}

// all returns the rendered objects of type T.
func all[T any](r rendered) []T {
	var out []T
	for _, o := range r.objects {
		if x, ok := o.obj.(T); ok {
			out = append(out, x)
		}
	}
	return out
}

// only returns the one rendered object of type T.
func only[T any](t *testing.T, r rendered) T {
	t.Helper()
	xs := all[T](r)
	if len(xs) != 1 {
		var zero T
		t.Fatalf("%d objects of type %T, want 1", len(xs), zero)
	}
	return xs[0]
}

// byName returns the rendered object of type T with that name.
func byName[T any](t *testing.T, r rendered, name string) T {
	t.Helper()
	for _, o := range r.objects {
		if x, ok := o.obj.(T); ok && o.meta.Name == name {
			return x
		}
	}
	var zero T
	t.Errorf("no %T named %s rendered", zero, name)
	return zero
}

func deployment(t *testing.T, r rendered, component string) *appsv1.Deployment {
	t.Helper()
	d := byName[*appsv1.Deployment](t, r, releaseName+"-"+component)
	if d == nil {
		t.FailNow()
	}
	return d
}

// find returns the object wrapper of a typed object.
func find(t *testing.T, r rendered, x any) object {
	t.Helper()
	for _, o := range r.objects {
		if o.obj == x {
			return o
		}
	}
	t.Fatalf("object %T not rendered", x)
	return object{}
}

// enabled reports whether the values object section has key set to true.
func enabled(section any, key string) bool {
	on, _ := section.(map[string]any)[key].(bool)
	return on
}
