{{/* The chart's name, or nameOverride. */}}
{{- define "tally-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: fullnameOverride, else the release name when it already holds the
chart's name, else <release>-<chart>. */}}
{{- define "tally-operator.fullname" -}}
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

{{- define "tally-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tally-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tally-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of the operator's pods: no chart version, so that a new chart alone restarts
nothing. */}}
{{- define "tally-operator.podLabels" -}}
{{ include "tally-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: tally
{{- end }}

{{- define "tally-operator.labels" -}}
helm.sh/chart: {{ include "tally-operator.chart" . }}
{{ include "tally-operator.podLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels of objects that belong to the release but not to the operator's pods. */}}
{{- define "tally-operator.commonLabels" -}}
helm.sh/chart: {{ include "tally-operator.chart" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: tally
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tally-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tally-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tally-operator.leaseName" -}}
{{- default (include "tally-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "tally-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* "true" when a Prometheus Operator object should be rendered: the cluster serves
monitoring.coreos.com/v1 and the value (`dict "root" $ "enabled" .Values.x.enabled`) is true or
"auto". */}}
{{- define "tally-operator.monitoring" -}}
{{- $enabled := .enabled }}
{{- if and (.root.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") (or (eq (toString $enabled) "true") (eq (toString $enabled) "auto")) }}true{{- end }}
{{- end }}

{{/* What the operator may do with namespaced objects, in every watched namespace (a ClusterRole
when it watches all of them, a Role in each otherwise). Nothing more: no nodes, no RBAC objects,
no CRDs. */}}
{{- define "tally-operator.rules" -}}
- apiGroups: ["tally.dev"]
  resources: ["consortia", "peers", "channels", "chaincodes", "backups", "backupschedules"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["tally.dev"]
  resources: ["consortia/status", "peers/status", "channels/status", "chaincodes/status", "backups/status", "backupschedules/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["tally.dev"]
  resources: ["consortia/finalizers", "peers/finalizers", "channels/finalizers", "chaincodes/finalizers", "backups/finalizers", "backupschedules/finalizers"]
  verbs: ["update"]
- apiGroups: ["tally.dev"]
  resources: ["backups"]
  verbs: ["create", "delete"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["delete"]
- apiGroups: [""]
  resources: ["services", "configmaps", "secrets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["list", "create"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
{{- end }}

{{/*
The namespaces the operator manages, comma-separated; empty when it manages every namespace
(rbac.clusterWide). Default: the release's namespace only.
*/}}
{{- define "tally-operator.watchNamespaces" -}}
{{- if .Values.rbac.clusterWide -}}
{{- if .Values.watchNamespaces -}}
{{- fail "set either rbac.clusterWide=true (every namespace) or watchNamespaces (a list), not both" -}}
{{- end -}}
{{- else if .Values.watchNamespaces -}}
{{- join "," .Values.watchNamespaces -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end }}
