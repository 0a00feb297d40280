{{/* One pod of the generation RayService (dict "root" $ "container" NAME "gpu" BOOL "resources" ... "nodeSelector" ... "tolerations" ... "ports" ...). */}}
{{- define "copilot.rayPodSpec" -}}
{{- $c := .root.Values.generation -}}
serviceAccountName: {{ include "copilot.serviceAccountName" (dict "root" .root "name" "generation") }}
automountServiceAccountToken: false
{{- include "copilot.imagePullSecrets" .root }}
securityContext:
  {{- include "copilot.podSecurityContext" .root | nindent 2 }}
containers:
  - name: {{ .container }}
    image: {{ include "copilot.image" (dict "root" .root "name" "generation") | quote }}
    imagePullPolicy: {{ include "copilot.imagePullPolicy" (dict "root" .root "name" "generation") }}
    securityContext:
      {{- include "copilot.containerSecurityContext" .root | nindent 6 }}
    env:
      - name: HOME
        value: /tmp
      - name: HF_HUB_OFFLINE
        value: "1"
      - name: TRANSFORMERS_OFFLINE
        value: "1"
    {{- with .ports }}
    ports:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    resources:
      {{- toYaml .resources | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      - name: shm
        mountPath: /dev/shm
      {{- if and .gpu (ne $c.modelVolume.kind "image") }}
      - name: models
        mountPath: {{ $c.modelVolume.mountPath }}
        readOnly: true
      {{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ $c.tmpSizeLimit }}
  - name: shm
    emptyDir:
      medium: Memory
      sizeLimit: {{ $c.shmSizeLimit }}
  {{- if and .gpu (eq $c.modelVolume.kind "pvc") }}
  - name: models
    persistentVolumeClaim:
      claimName: {{ required "generation.modelVolume.existingClaim is required when modelVolume.kind=pvc" $c.modelVolume.existingClaim }}
      readOnly: true
  {{- end }}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
