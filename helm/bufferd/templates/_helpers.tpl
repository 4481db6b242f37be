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
The Secret holding the database URL, the Redis URL and the admin token.
*/}}
{{- define "bufferd.secretName" -}}
{{- .Values.secret.existingSecret | default (include "bufferd.fullname" .) }}
{{- end }}

{{/*
The secret BUFFERD_* variables. The admin token is optional in an existing Secret.
  include "bufferd.secretEnv" (dict "root" $ "secretName" NAME "admin" true)
*/}}
{{- define "bufferd.secretEnv" -}}
{{- $s := .root.Values.secret -}}
- name: BUFFERD_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ $s.keys.databaseURL }}
{{- if .redis }}
- name: BUFFERD_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ $s.keys.redisURL }}
{{- end }}
{{- if .admin }}
- name: BUFFERD_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ $s.keys.adminToken }}
      optional: true
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
{{- fail "config.chainURL is required: the base URL of the chain source" }}
{{- end }}
{{- if not .Values.secret.existingSecret }}
{{- if not .Values.secret.databaseURL }}
{{- fail "secret.databaseURL is required unless secret.existingSecret names a Secret" }}
{{- end }}
{{- if not .Values.secret.redisURL }}
{{- fail "secret.redisURL is required unless secret.existingSecret names a Secret" }}
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
