{{/*
Non-secret settings of each component, as the ConfigMap its pods load with envFrom. The names are the
fields of the service's pydantic settings class (services/<name>/settings.py) under its env prefix;
secrets are not here but in the Deployment's env (secretKeyRef).
*/}}

{{/* Settings every service has (copilot/settings.py ServiceSettings). */}}
{{- define "copilot.env.common" -}}
{{- $v := .root.Values -}}
{{- $c := index $v .name -}}
{{- $p := include "copilot.envPrefix" . -}}
{{ $p }}HOST: {{ $v.listenHost | quote }}
{{ $p }}PORT: {{ $c.port | quote }}
{{ $p }}LOG_FORMAT: "json"
{{ $p }}LOG_LEVEL: {{ default $v.logLevel $c.logLevel | quote }}
{{- if include "copilot.embeds" . }}
{{- /* The ONNX export of the embedding model, baked into the image (Dockerfile): the root filesystem is
read-only, so a service cannot write it on first start. */}}
{{ $p }}EMBEDDING_CACHE_DIR: {{ include "copilot.embeddingCacheDir" . | quote }}
{{- end }}
{{ $p }}AUTH__ISSUER: {{ required "auth.issuer is required: the Keycloak realm URL, https://HOST/realms/REALM" $v.auth.issuer | quote }}
{{ $p }}AUTH__AUDIENCE: {{ $v.auth.audience | quote }}
{{- with $v.auth.jwksUrl }}
{{ $p }}AUTH__JWKS_URL: {{ . | quote }}
{{- end }}
{{- if include "copilot.talksToKafka" . }}
{{ include "copilot.env.kafka" . }}
{{- end }}
{{- if $v.telemetry.otlp.enabled }}
{{ $p }}TELEMETRY__EXPORTER: "otlp"
{{ $p }}TELEMETRY__OTLP_ENDPOINT: {{ $v.telemetry.otlp.endpoint | quote }}
{{- else }}
{{ $p }}TELEMETRY__EXPORTER: "none"
{{- end }}
{{- if $v.metrics.enabled }}
{{ $p }}TELEMETRY__PROMETHEUS_PORT: {{ include "copilot.metricsPort" . | quote }}
{{- /* The settings' default is loopback, which Prometheus could not reach. */}}
{{ $p }}TELEMETRY__PROMETHEUS_HOST: {{ $v.listenHost | quote }}
{{- end }}
{{- end -}}

{{/*
KafkaSettings (copilot/settings.py). The SASL password is no setting here: the Deployment reads it from
kafka.existingSecret; the TLS files are mounted from kafka.tls's Secrets.
*/}}
{{- define "copilot.env.kafka" -}}
{{- $k := .root.Values.kafka -}}
{{- $p := include "copilot.envPrefix" . -}}
{{- $protocol := $k.securityProtocol -}}
{{- $sasl := hasPrefix "SASL_" $protocol -}}
{{- $tls := hasSuffix "SSL" $protocol -}}
{{- if and (not $sasl) (or $k.sasl.mechanism $k.sasl.username $k.existingSecret) -}}
{{- fail (printf "kafka.sasl and kafka.existingSecret need kafka.securityProtocol SASL_SSL or SASL_PLAINTEXT, not %s" $protocol) -}}
{{- end -}}
{{- if and (not $tls) (include "copilot.kafkaTlsFiles" .root) -}}
{{- fail (printf "kafka.tls needs kafka.securityProtocol SSL or SASL_SSL, not %s" $protocol) -}}
{{- end -}}
{{ $p }}KAFKA__BOOTSTRAP_SERVERS: {{ required "kafka.bootstrapServers is required" $k.bootstrapServers | quote }}
{{ $p }}KAFKA__INTERACTIONS_TOPIC: {{ $k.topics.interactions | quote }}
{{ $p }}KAFKA__DOCUMENTS_TOPIC: {{ $k.topics.documents | quote }}
{{ $p }}KAFKA__INGEST_REQUESTS_TOPIC: {{ $k.topics.ingestRequests | quote }}
{{ $p }}KAFKA__SPOOL_DIR: "/var/lib/copilot/spool"
{{ $p }}KAFKA__SPOOL_MAX_BYTES: {{ div (mul $k.spoolSizeMiB 1048576 8) 10 | quote }}
{{- if ne $protocol "PLAINTEXT" }}
{{ $p }}KAFKA__SECURITY_PROTOCOL: {{ $protocol | quote }}
{{- end }}
{{- if $sasl }}
{{ $p }}KAFKA__SASL_MECHANISM: {{ required "kafka.sasl.mechanism is required with a SASL securityProtocol (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)" $k.sasl.mechanism | quote }}
{{ $p }}KAFKA__SASL_USERNAME: {{ required "kafka.sasl.username is required with a SASL securityProtocol" $k.sasl.username | quote }}
{{- end }}
{{- if $k.tls.caSecret }}
{{ $p }}KAFKA__SSL_CAFILE: {{ printf "%s/ca.crt" (include "copilot.kafkaTlsDir" .) | quote }}
{{- end }}
{{- if $k.tls.clientSecret }}
{{ $p }}KAFKA__SSL_CERTFILE: {{ printf "%s/tls.crt" (include "copilot.kafkaTlsDir" .) | quote }}
{{ $p }}KAFKA__SSL_KEYFILE: {{ printf "%s/tls.key" (include "copilot.kafkaTlsDir" .) | quote }}
{{- end }}
{{- end -}}

{{/* StoreSettings (copilot/settings.py): production always talks to a Qdrant server. */}}
{{- define "copilot.env.store" -}}
{{- $p := include "copilot.envPrefix" . -}}
{{ $p }}STORE__KIND: "qdrant"
{{ $p }}STORE__QDRANT_URL: {{ include "copilot.qdrantUrl" .root | quote }}
{{ $p }}STORE__COLLECTION: {{ .root.Values.vectorStore.collection | quote }}
{{- end -}}

{{- define "copilot.env.ingest" -}}
{{- $c := .root.Values.ingest -}}
{{- $p := include "copilot.envPrefix" . -}}
{{ include "copilot.env.common" . }}
{{ include "copilot.env.store" . }}
{{ $p }}INGEST_ROLE: {{ $c.ingestRole | quote }}
{{ $p }}MAX_DOCUMENT_BYTES: {{ $c.maxDocumentBytes | int64 | quote }}
{{ $p }}MAX_UNZIPPED_BYTES: {{ $c.limits.maxUnzippedBytes | int64 | quote }}
{{ $p }}MAX_COMPRESSION_RATIO: {{ $c.limits.maxCompressionRatio | quote }}
{{ $p }}MAX_SPREADSHEET_CELLS: {{ $c.limits.maxSpreadsheetCells | int64 | quote }}
{{ $p }}EMBEDDING_THREADS: {{ $c.embeddingThreads | quote }}
{{ $p }}CONSUME_REQUESTS: {{ $c.consumeRequests | quote }}
{{ $p }}REQUESTS_GROUP: {{ $c.requestsGroup | quote }}
{{ $p }}PARALLEL_REQUESTS: {{ $c.parallelRequests | quote }}
{{ $p }}DEAD_LETTER_TOPIC: {{ $c.deadLetterTopic | quote }}
{{ $p }}TOMBSTONE_RETENTION_S: {{ $c.tombstoneRetentionSeconds | quote }}
{{ $p }}TOMBSTONE_PURGE_INTERVAL_S: {{ $c.tombstonePurgeIntervalSeconds | quote }}
{{- end -}}

{{- define "copilot.env.retrieval" -}}
{{- $c := .root.Values.retrieval -}}
{{- $p := include "copilot.envPrefix" . -}}
{{ include "copilot.env.common" . }}
{{ include "copilot.env.store" . }}
{{ $p }}DEFAULT_TOP_K: {{ $c.defaultTopK | quote }}
{{ $p }}MAX_TOP_K: {{ $c.maxTopK | quote }}
{{ $p }}EMBEDDING_THREADS: {{ $c.embeddingThreads | quote }}
{{ $p }}ROLE_GROUPS: {{ $c.roleGroups | toJson | quote }}
{{ $p }}AUDITOR_ROLE: {{ $c.auditorRole | quote }}
{{- with $c.search }}
{{ $p }}DEFAULT_MODE: {{ .defaultMode | quote }}
{{ $p }}DENSE_WEIGHT: {{ .denseWeight | quote }}
{{ $p }}LEXICAL_WEIGHT: {{ .lexicalWeight | quote }}
{{ $p }}RRF_K: {{ .rrfK | quote }}
{{ $p }}MERGE_ADJACENT_CHUNKS: {{ .mergeAdjacentChunks | quote }}
{{ $p }}MAX_CHUNKS_PER_DOCUMENT: {{ .maxChunksPerDocument | quote }}
{{ $p }}MAX_AUDIENCE: {{ .maxAudience | quote }}
{{ $p }}RERANKER: {{ .reranker | quote }}
{{ $p }}RERANK_CANDIDATES: {{ .rerankCandidates | quote }}
{{ $p }}RERANK_THREADS: {{ .rerankThreads | quote }}
{{- end }}
{{- end -}}

{{- define "copilot.env.generation" -}}
{{- $v := .root.Values -}}
{{- $c := $v.generation -}}
{{- $p := include "copilot.envPrefix" . -}}
{{ include "copilot.env.common" . }}
{{ $p }}RETRIEVAL_TARGET: {{ include "copilot.grpcTarget" (dict "root" .root "name" "retrieval") | quote }}
{{ $p }}ENGINE: {{ $c.engine | quote }}
{{ $p }}MODEL: {{ $c.model | quote }}
{{- with $c.extraModels }}
{{ $p }}MODELS: {{ toJson . | quote }}
{{- end }}
{{ $p }}MODEL_CACHE_DIR: {{ include "copilot.modelCacheDir" .root | quote }}
{{ $p }}ENGINE_THREADS: {{ $c.engineThreads | quote }}
{{ $p }}CONTEXT_TOKENS: {{ $c.contextTokens | quote }}
{{ $p }}MAX_ANSWER_TOKENS: {{ $c.maxAnswerTokens | quote }}
{{ $p }}ENGINE_START_TIMEOUT_S: {{ $c.engineStartTimeoutSeconds | quote }}
{{ $p }}RAY_TEMP_DIR: "/tmp/ray"
{{- if $c.database.readers }}
{{ $p }}DATABASE__READERS: {{ toJson $c.database.readers | quote }}
{{ $p }}DATABASE__TENANT: {{ $c.database.tenant | quote }}
{{ $p }}DATABASE__DESCRIPTION: {{ $c.database.description | quote }}
{{- end }}
{{- /* Weights come from the model volume or the image: nothing may reach a model hub at start. */}}
HF_HUB_OFFLINE: "1"
TRANSFORMERS_OFFLINE: "1"
{{- end -}}

{{- define "copilot.env.monitor" -}}
{{- $c := .root.Values.monitor -}}
{{- $p := include "copilot.envPrefix" . -}}
{{ include "copilot.env.common" . }}
{{- /* Retrieval's role mapping, so the ACL-anomaly check grants what the search granted. */}}
{{ $p }}ROLE_GROUPS: {{ .root.Values.retrieval.roleGroups | toJson | quote }}
{{- /* The PostgreSQL URL (DATABASE_URL) is a secret, set by the Deployment; without it, SQLite on the claim. */}}
{{- if not $c.postgresql.existingSecret }}
{{ $p }}DATABASE: "/var/lib/copilot/monitor/monitor.sqlite"
{{- end }}
{{ $p }}HTTP_HOST: {{ .root.Values.listenHost | quote }}
{{ $p }}HTTP_PORT: {{ $c.http.port | quote }}
{{ $p }}COOKIE_SECURE: {{ $c.http.cookieSecure | quote }}
{{ $p }}REVIEW_BASE_URL: {{ $c.reviewBaseUrl | quote }}
{{ $p }}CONSUMER_GROUP: {{ $c.consumerGroup | quote }}
{{ $p }}DEAD_LETTER_TOPIC: {{ $c.deadLetterTopic | quote }}
{{ $p }}REVIEWER_ROLE: {{ $c.reviewerRole | quote }}
{{ $p }}LATENCY_CEILING_MS: {{ $c.latencyCeilingMs | quote }}
{{ $p }}DRIFT_SAMPLE_RATE: {{ $c.sampleRates.drift | quote }}
{{ $p }}TOXICITY_CLASSIFIER_SAMPLE_RATE: {{ $c.sampleRates.toxicityClassifier | quote }}
{{- /* The webhook URLs carry credentials: the Deployment reads them from monitor.alerts.existingSecret. */}}
{{ $p }}ALERT_MIN_SEVERITY: {{ $c.alerts.minSeverity | quote }}
{{ $p }}ALERT_RATE_PER_MINUTE: {{ $c.alerts.ratePerMinute | quote }}
{{ $p }}ALERT_BURST: {{ $c.alerts.burst | quote }}
{{ $p }}ALERT_DEDUP_WINDOW_S: {{ $c.alerts.dedupWindowSeconds | quote }}
{{- end -}}

{{- define "copilot.env.bots" -}}
{{- $v := .root.Values -}}
{{- $c := $v.bots -}}
{{- $p := include "copilot.envPrefix" . -}}
{{- /* https://HOST/realms/REALM -> https://HOST/ and REALM, unless given. */}}
{{- $serverUrl := default (regexReplaceAll "realms/[^/]+/?$" $v.auth.issuer "") $c.keycloak.serverUrl -}}
{{- $realm := default (regexFind "[^/]+/?$" $v.auth.issuer | trimSuffix "/") $c.keycloak.realm -}}
{{ include "copilot.env.common" . }}
{{ $p }}HTTP_HOST: {{ $v.listenHost | quote }}
{{ $p }}HTTP_PORT: {{ $c.http.port | quote }}
{{ $p }}GENERATION_TARGET: {{ include "copilot.grpcTarget" (dict "root" .root "name" "generation") | quote }}
{{ $p }}KEYCLOAK__SERVER_URL: {{ $serverUrl | quote }}
{{ $p }}KEYCLOAK__REALM: {{ $realm | quote }}
{{ $p }}KEYCLOAK__CLIENT_ID: {{ $c.keycloak.clientId | quote }}
{{ $p }}KEYCLOAK__AUDIENCE: {{ $v.auth.audience | quote }}
{{ $p }}SLACK__ENABLED: {{ $c.slack.enabled | quote }}
{{ $p }}SLACK__MODE: {{ $c.slack.mode | quote }}
{{ $p }}TEAMS__ENABLED: {{ $c.teams.enabled | quote }}
{{- if $c.teams.enabled }}
{{ $p }}TEAMS__APP_ID: {{ required "bots.teams.appId is required when bots.teams.enabled" $c.teams.appId | quote }}
{{ $p }}TEAMS__APP_TENANT_ID: {{ $c.teams.appTenantId | quote }}
{{- if not (or $c.teams.appTenantId $c.teams.allowedTenantIds) }}
{{- fail "bots.teams.allowedTenantIds must name the Azure AD tenants whose users may ask (or set bots.teams.appTenantId)" }}
{{- end }}
{{ $p }}TEAMS__ALLOWED_TENANT_IDS: {{ toJson $c.teams.allowedTenantIds | quote }}
{{- end }}
{{ $p }}FEEDBACK_TOPIC: {{ $c.feedbackTopic | quote }}
{{ $p }}DATABASE: "/var/lib/copilot/bots/bots.sqlite"
{{- end -}}

{{/* Where the engine finds its weights: the model volume when one is mounted, else inside the image. */}}
{{- define "copilot.modelCacheDir" -}}
{{- $c := .Values.generation -}}
{{- if eq $c.modelVolume.kind "image" -}}
{{- $c.modelCacheDir -}}
{{- else -}}
{{- $c.modelVolume.mountPath -}}
{{- end -}}
{{- end -}}
