{{/*
Expand the name of the chart.
*/}}
{{- define "bufferd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "bufferd.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "bufferd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "bufferd.labels" -}}
helm.sh/chart: {{ include "bufferd.chart" . }}
{{ include "bufferd.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bufferd
{{- end }}

{{/*
Selector labels
*/}}
{{- define "bufferd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bufferd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of one component (api, syncer, migrations, test):
  include "bufferd.componentLabels" (dict "root" $ "component" "api")
*/}}
{{- define "bufferd.componentLabels" -}}
{{ include "bufferd.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Selector labels of one component.
*/}}
{{- define "bufferd.componentSelectorLabels" -}}
{{ include "bufferd.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "bufferd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "bufferd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository@digest, else repository:tag (tag defaults to appVersion).
*/}}
{{- define "bufferd.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The Secret the chart makes from secret.databaseURL, secret.redisURL and
secret.adminToken.
*/}}
{{- define "bufferd.secretName" -}}
{{- include "bufferd.fullname" . }}
{{- end }}

{{/*
Where one secret value comes from, as a dict {name, key, optional, chart}
(chart: the chart's own Secret holds it), or an empty dict when it is not set:
its own Secret reference, else existingSecret, else the value in the chart's
Secret.
  include "bufferd.secretRef" (dict "root" $ "value" "databaseURL") | fromYaml
*/}}
{{- define "bufferd.secretRef" -}}
{{- $s := .root.Values.secret -}}
{{- $own := get $s (printf "%sSecret" .value) -}}
{{- if $own.name -}}
{{- dict "name" $own.name "key" $own.key | toYaml }}
{{- else if and (eq .value "redisURL") $s.redisPasswordSecret.name -}}
{{- dict "name" $s.redisPasswordSecret.name "key" $s.redisPasswordSecret.key "password" true | toYaml }}
{{- else if $s.existingSecret -}}
{{- dict "name" $s.existingSecret "key" (get $s.keys .value) "optional" (eq .value "adminToken") | toYaml }}
{{- else if get $s .value -}}
{{- dict "name" (include "bufferd.secretName" .root) "key" (get $s.keys .value) "chart" true | toYaml }}
{{- end -}}
{{- end }}

{{/*
The values the chart's own Secret holds (a list; empty: no Secret).
*/}}
{{- define "bufferd.chartSecretValues" -}}
{{- $out := list -}}
{{- range $v := list "databaseURL" "redisURL" "adminToken" -}}
{{- if (include "bufferd.secretRef" (dict "root" $ "value" $v) | fromYaml).chart -}}
{{- $out = append $out $v -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}

{{/*
The secret BUFFERD_* variables: the database URL, and the Redis URL and the
admin token when asked for. secretName, when given, replaces the chart's own
Secret (the migration hook's copy).
  include "bufferd.secretEnv" (dict "root" $ "redis" true "admin" true)
*/}}
{{- define "bufferd.secretEnv" -}}
{{- $vars := dict "databaseURL" "BUFFERD_DATABASE_URL" "redisURL" "BUFFERD_REDIS_URL" "adminToken" "BUFFERD_ADMIN_TOKEN" -}}
{{- $want := list "databaseURL" -}}
{{- if .redis }}{{ $want = append $want "redisURL" }}{{ end -}}
{{- if .admin }}{{ $want = append $want "adminToken" }}{{ end -}}
{{- range $v := $want }}
{{- $ref := include "bufferd.secretRef" (dict "root" $.root "value" $v) | fromYaml }}
{{- if $ref.password }}
{{- if not $.root.Values.secret.redisAddress }}
{{- fail "secret.redisAddress is required with secret.redisPasswordSecret: the Redis URL without its password, e.g. redis://redis-master:6379/0" }}
{{- end }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $ref.name }}
      key: {{ $ref.key }}
- name: BUFFERD_REDIS_URL
  value: {{ regexReplaceAll "(^|,)\\s*(rediss?://)" $.root.Values.secret.redisAddress "${1}${2}:$$(REDIS_PASSWORD)@" | quote }}
{{- else if $ref.name }}
- name: {{ get $vars $v }}
  valueFrom:
    secretKeyRef:
      name: {{ if and $ref.chart $.secretName }}{{ $.secretName }}{{ else }}{{ $ref.name }}{{ end }}
      key: {{ $ref.key }}
      {{- if $ref.optional }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The checksum of the chart's own Secret, as a pod annotation, when there is one.
*/}}
{{- define "bufferd.secretChecksum" -}}
{{- if ne (include "bufferd.chartSecretValues" .) "[]" }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end }}

{{/*
extraEnv, then extraEnvFrom's entries are added by the callers.
*/}}
{{- define "bufferd.extraEnv" -}}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Pod-level settings every bufferd pod shares.
*/}}
{{- define "bufferd.podSpecCommon" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Scheduling settings of a component (nodeSelector, affinity, tolerations,
topologySpreadConstraints); a spread constraint without a labelSelector gets
the component's selector labels.
  include "bufferd.scheduling" (dict "root" $ "values" .Values.api "component" "api")
*/}}
{{- define "bufferd.scheduling" -}}
{{- $v := .values }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.topologySpreadConstraints }}
{{- $sel := include "bufferd.componentSelectorLabels" (dict "root" $.root "component" $.component) | fromYaml }}
topologySpreadConstraints:
{{- range $c := . }}
{{- if not (hasKey $c "labelSelector") }}
{{- $c = merge (dict "labelSelector" (dict "matchLabels" $sel)) $c }}
{{- end }}
  - {{ toYaml $c | indent 4 | trim }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Checks of values the schema cannot express.
*/}}
{{- define "bufferd.validate" -}}
{{- if not .Values.config.chainURL }}
{{- fail "config.chainURL is required: the base URL of the chain source (e.g. --set config.chainURL=https://blockcenter.example.com)" }}
{{- end }}
{{- range $v := list "databaseURL" "redisURL" }}
{{- if not (include "bufferd.secretRef" (dict "root" $ "value" $v) | fromYaml).name }}
{{- fail (printf "secret.%s is required: set secret.existingSecret (a Secret with key secret.keys.%s), secret.%sSecret.name, or secret.%s itself" $v $v $v $v) }}
{{- end }}
{{- end }}
{{- include "bufferd.connectionBudget" . }}
{{- $own := dict "BUFFERD_ADDR" "api.containerPort" "BUFFERD_API_METRICS_ADDR" "api.metricsPort" "BUFFERD_METRICS_ADDR" "syncer.metricsPort" "BUFFERD_DATABASE_MAX_CONNS" "api.databaseMaxConns and syncer.databaseMaxConns" "BUFFERD_INSTANCE_ID" "nothing: the pod's name is its instance id" "BUFFERD_DATABASE_URL" "secret.*" "BUFFERD_REDIS_URL" "secret.*" "BUFFERD_ADMIN_TOKEN" "secret.*" "BUFFERD_LOG_LEVEL" "config.logLevel" "BUFFERD_LOG_FORMAT" "config.logFormat" }}
{{- range $e := .Values.extraEnv }}
{{- with get $own $e.name }}
{{- fail (printf "extraEnv: %s is set by the chart (a duplicate would break upgrades); set %s" $e.name .) }}
{{- end }}
{{- end }}
{{- $a := .Values.api.autoscaling }}
{{- if and $a.enabled (gt (int $a.minReplicas) (int $a.maxReplicas)) }}
{{- fail "api.autoscaling.minReplicas must not exceed maxReplicas" }}
{{- end }}
{{- range $c := list "api" "syncer" }}
{{- $pdb := (get $.Values $c).podDisruptionBudget }}
{{- if and $pdb.enabled (not (kindIs "invalid" $pdb.minAvailable)) (not (kindIs "invalid" $pdb.maxUnavailable)) }}
{{- fail (printf "%s.podDisruptionBudget: set minAvailable or maxUnavailable, not both" $c) }}
{{- end }}
{{- if and $pdb.enabled (kindIs "invalid" $pdb.minAvailable) (kindIs "invalid" $pdb.maxUnavailable) }}
{{- fail (printf "%s.podDisruptionBudget: set minAvailable or maxUnavailable" $c) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Egress rules of the NetworkPolicies: DNS, then networkPolicy.egress.
*/}}
{{- define "bufferd.egressRules" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{ toYaml .Values.networkPolicy.egress }}
{{- end }}

{{/*
The connection budget: at the peak of a rolling update (API: its most
replicas + 25% surge; syncer: replicas + 1) the pods may open at most
postgresql.maxConnections - reservedConnections connections.
*/}}
{{- define "bufferd.connectionBudget" -}}
{{- $api := .Values.api }}
{{- $apiPods := int $api.replicaCount }}
{{- if $api.autoscaling.enabled }}{{ $apiPods = int $api.autoscaling.maxReplicas }}{{ end }}
{{- $apiPeak := add $apiPods (div (add $apiPods 3) 4) }}
{{- $syncerPeak := add (int .Values.syncer.replicaCount) 1 }}
{{- $apiConns := mul $apiPeak (int $api.databaseMaxConns) }}
{{- $syncerConns := mul $syncerPeak (int .Values.syncer.databaseMaxConns) }}
{{- $limit := sub (int .Values.postgresql.maxConnections) (int .Values.postgresql.reservedConnections) }}
{{- if gt (add $apiConns $syncerConns) $limit }}
{{- fail (printf "connection budget: %d API pods x api.databaseMaxConns %d + %d syncer pods x syncer.databaseMaxConns %d = %d PostgreSQL connections at the peak of a rollout, over postgresql.maxConnections %d - reservedConnections %d = %d: lower the pool sizes or the replicas, or raise postgresql.maxConnections to what the server allows" $apiPeak (int $api.databaseMaxConns) $syncerPeak (int .Values.syncer.databaseMaxConns) (add $apiConns $syncerConns) (int .Values.postgresql.maxConnections) (int .Values.postgresql.reservedConnections) $limit) }}
{{- end }}
{{- end }}
