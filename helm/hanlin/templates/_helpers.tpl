{{/* The chart's name. */}}
{{- define "hanlin.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name, used for every namespaced object. */}}
{{- define "hanlin.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Cluster-scoped names carry the namespace too: two releases may share a name. */}}
{{- define "hanlin.clusterName" -}}
{{- printf "%s-%s" (include "hanlin.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hanlin.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hanlin.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "hanlin.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "hanlin.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: hanlin
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "hanlin.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hanlin.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "hanlin.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "hanlin.runtimeImage" -}}
{{- printf "%s:%s" .Values.runtimeImage.repository (default .Chart.AppVersion .Values.runtimeImage.tag) -}}
{{- end -}}

{{/* "true" when the Prometheus Operator objects should be rendered. */}}
{{- define "hanlin.monitoring" -}}
{{- $m := .Values.monitoring.enabled -}}
{{- if kindIs "bool" $m -}}
{{- ternary "true" "" $m -}}
{{- else if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" -}}
true
{{- end -}}
{{- end -}}

{{/* "true" when the Grafana dashboard ConfigMaps should be rendered. */}}
{{- define "hanlin.dashboards" -}}
{{- $d := .Values.monitoring.grafanaDashboards.enabled -}}
{{- if kindIs "bool" $d -}}
{{- ternary "true" "" $d -}}
{{- else -}}
{{- include "hanlin.monitoring" . -}}
{{- end -}}
{{- end -}}
