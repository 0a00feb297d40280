{{/*
Names, labels and the pieces every component's templates share. A "component context" is
(dict "root" $ "name" "ingest"): the chart root plus the component's key under .Values.
*/}}

{{- define "copilot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "copilot.fullname" -}}
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

{{- define "copilot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "copilot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "copilot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "copilot.labels" -}}
helm.sh/chart: {{ include "copilot.chart" . }}
{{ include "copilot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: copilot
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* (dict "root" $ "name" "ingest") */}}
{{- define "copilot.componentSelectorLabels" -}}
{{ include "copilot.selectorLabels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "copilot.componentLabels" -}}
{{ include "copilot.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "copilot.componentName" -}}
{{- printf "%s-%s" (include "copilot.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "copilot.serviceAccountName" -}}
{{- $sa := (index .root.Values .name).serviceAccount -}}
{{- if $sa.create -}}
{{- default (include "copilot.componentName" .) $sa.name -}}
{{- else -}}
{{- default "default" $sa.name -}}
{{- end -}}
{{- end -}}

{{- define "copilot.annotations" -}}
{{- with .Values.commonAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The image a component runs: its own image block overrides the chart-wide one key by key. */}}
{{- define "copilot.image" -}}
{{- $image := merge (deepCopy (default dict (index .root.Values .name).image)) .root.Values.image -}}
{{- $registry := default $image.registry .root.Values.global.imageRegistry -}}
{{- $repository := ternary (printf "%s/%s" $registry $image.repository) $image.repository (ne $registry "") -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .root.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "copilot.imagePullPolicy" -}}
{{- $image := merge (deepCopy (default dict (index .root.Values .name).image)) .root.Values.image -}}
{{- $image.pullPolicy -}}
{{- end -}}

{{- define "copilot.imagePullSecrets" -}}
{{- $secrets := concat (default list .Values.global.imagePullSecrets) (default list .Values.imagePullSecrets) | uniq -}}
{{- if $secrets }}
imagePullSecrets:
{{- range $secrets }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Every settings class reads COPILOT_<SERVICE>_*, nested fields joined with "__". */}}
{{- define "copilot.envPrefix" -}}
{{- printf "COPILOT_%s_" (upper .name) -}}
{{- end -}}

{{- define "copilot.secretName" -}}
{{- default (printf "%s-secrets" (include "copilot.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* The bundled Qdrant's Service when qdrant.enabled, else the operator's Qdrant. */}}
{{- define "copilot.qdrantUrl" -}}
{{- if .Values.qdrant.enabled -}}
{{- printf "http://%s-qdrant:%v" .Release.Name .Values.qdrant.httpPort -}}
{{- else -}}
{{- required "vectorStore.url is required (or qdrant.enabled=true for a trial)" .Values.vectorStore.url -}}
{{- end -}}
{{- end -}}

{{- define "copilot.qdrantApiKeySecret" -}}
{{- if .Values.qdrant.enabled -}}
{{- .Values.qdrant.apiKey.existingSecret -}}
{{- else -}}
{{- .Values.vectorStore.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "copilot.qdrantApiKeyKey" -}}
{{- if .Values.qdrant.enabled -}}
{{- .Values.qdrant.apiKey.key -}}
{{- else -}}
{{- .Values.vectorStore.existingSecretKey -}}
{{- end -}}
{{- end -}}

{{- define "copilot.grpcTarget" -}}
{{- printf "%s:%v" (include "copilot.componentName" .) (index .root.Values .name).port -}}
{{- end -}}

{{/* Non-empty for the components with a Kafka client (retrieval has none): (dict "root" $ "name" "ingest"). */}}
{{- define "copilot.talksToKafka" -}}
{{- if has .name (list "ingest" "generation" "monitor" "bots") }}true{{ end -}}
{{- end -}}

{{/* Non-empty for the components that publish events through the spooling EventPublisher: (dict "root" $ "name" "ingest").
The monitor consumes only; retrieval has no Kafka client. */}}
{{- define "copilot.publishesEvents" -}}
{{- if has .name (list "ingest" "generation" "bots") }}true{{ end -}}
{{- end -}}

{{/* Non-empty when the component's event spool is on a claim of its own (kafka.spoolPersistence): it then runs as
a StatefulSet whose volumeClaimTemplates give each ordinal its claim. (dict "root" $ "name" "ingest") */}}
{{- define "copilot.persistentSpool" -}}
{{- if and .root.Values.kafka.spoolPersistence.enabled (include "copilot.publishesEvents" .) }}true{{ end -}}
{{- end -}}

{{/* The headless Service governing a component's StatefulSet (its serviceName). It has no metrics port, so the
ServiceMonitor, which selects Services by component, scrapes each pod once, through the component's Service. */}}
{{- define "copilot.headlessServiceName" -}}
{{- printf "%s-headless" (include "copilot.componentName" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Non-empty for the components that embed text with all-MiniLM-L6-v2: (dict "root" $ "name" "ingest"). */}}
{{- define "copilot.embeds" -}}
{{- if has .name (list "ingest" "retrieval" "generation" "monitor") }}true{{ end -}}
{{- end -}}

{{/* Where the image keeps the embedding model's ONNX export (the Dockerfile's builder stage makes it). */}}
{{- define "copilot.embeddingCacheDir" -}}
/opt/copilot/embedding
{{- end -}}

{{/* Where the Kafka TLS files are mounted (kafka.tls): the CA bundle and the client certificate and key. */}}
{{- define "copilot.kafkaTlsDir" -}}
/etc/copilot/kafka-tls
{{- end -}}

{{/* Non-empty when the Kafka clients need TLS files mounted. */}}
{{- define "copilot.kafkaTlsFiles" -}}
{{- if or .Values.kafka.tls.caSecret .Values.kafka.tls.clientSecret }}true{{ end -}}
{{- end -}}

{{- define "copilot.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{- define "copilot.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- end -}}

{{/* metrics.port, refused where it would clash with one of the component's own ports:
(dict "root" $ "name" "ingest"). */}}
{{- define "copilot.metricsPort" -}}
{{- $port := int .root.Values.metrics.port -}}
{{- $c := index .root.Values .name -}}
{{- $own := list (int $c.port) -}}
{{- if hasKey $c "http" }}{{ $own = append $own (int $c.http.port) }}{{ end -}}
{{- if has $port $own -}}
{{- fail (printf "metrics.port %d is also a port of %s (%s): give the metrics endpoint a port of its own" $port .name (join ", " $own)) -}}
{{- end -}}
{{- $port -}}
{{- end -}}
