{{/* Names follow the parent's "<release>-qdrant" so the copilot chart can find the Service. */}}
{{- define "qdrant.fullname" -}}
{{- printf "%s-qdrant" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "qdrant.selectorLabels" -}}
app.kubernetes.io/name: qdrant
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "qdrant.labels" -}}
{{ include "qdrant.selectorLabels" . }}
app.kubernetes.io/component: vector-store
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
