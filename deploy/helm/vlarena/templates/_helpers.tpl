{{/* The chart's name. */}}
{{- define "vlarena.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The resource name prefix, short enough for "-inference-headless" within 63 characters. */}}
{{- define "vlarena.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* A component's resource name: (dict "root" $ "component" "arena"). */}}
{{- define "vlarena.componentName" -}}
{{- printf "%s-%s" (include "vlarena.fullname" .root) .component }}
{{- end }}

{{- define "vlarena.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of a component: (dict "root" $ "component" "arena"). */}}
{{- define "vlarena.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vlarena.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Every label of a component: (dict "root" $ "component" "arena"). */}}
{{- define "vlarena.labels" -}}
helm.sh/chart: {{ include "vlarena.chart" .root }}
{{ include "vlarena.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: vlarena
{{- end }}

{{/* The image: (dict "root" $ "cuda" true) for the CUDA build. */}}
{{- define "vlarena.image" -}}
{{- $image := .root.Values.image }}
{{- $tag := default .root.Chart.AppVersion $image.tag }}
{{- if .cuda }}
{{- $tag = default (printf "%s-cuda" .root.Chart.AppVersion) $image.cudaTag }}
{{- end }}
{{- printf "%s:%s" $image.repository $tag }}
{{- end }}

{{- define "vlarena.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vlarena.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret with the database URL, the Redis URLs and the tokens. */}}
{{- define "vlarena.secretName" -}}
{{- default (include "vlarena.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* An env entry from the Secret: (dict "root" $ "name" "VLA_X" "key" "x" "optional" true). */}}
{{- define "vlarena.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "vlarena.secretName" .root }}
      key: {{ .key }}
      optional: {{ .optional }}
{{- end }}

{{/* The pod-level fields every workload shares. */}}
{{- define "vlarena.podCommon" -}}
serviceAccountName: {{ include "vlarena.serviceAccountName" . }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* The /tmp emptyDir every workload mounts (the root filesystem is read-only). */}}
{{- define "vlarena.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end }}

{{- define "vlarena.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* Scheduling fields of a component's values: nodeSelector, tolerations, affinity. */}}
{{- define "vlarena.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The headless Service's in-cluster gRPC target: every inference pod's address. */}}
{{- define "vlarena.inferenceTarget" -}}
{{- printf "dns:///%s.%s.svc.%s:%d" (include "vlarena.componentName" (dict "root" . "component" "inference-headless")) .Release.Namespace .Values.clusterDomain (.Values.inference.grpcPort | int) }}
{{- end }}
