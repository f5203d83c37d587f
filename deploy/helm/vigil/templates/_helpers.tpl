{{/*
The chart's name, or nameOverride.
*/}}
{{- define "vigil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: fullnameOverride, else RELEASE-NAME (just RELEASE when it
already contains the chart's name: release "vigil" gives "vigil"). At most 42 characters, so that
"<fullname>-pipelines-<ordinal>" and the StatefulSet's controller-revision label stay within 63.
*/}}
{{- define "vigil.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 42 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 42 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 42 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "vigil.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "vigil.labels" -}}
helm.sh/chart: {{ include "vigil.chart" . }}
{{ include "vigil.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vigil
{{- end }}

{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The names of the two workloads and what belongs to them. */}}
{{- define "vigil.serveName" -}}
{{- printf "%s-serve" (include "vigil.fullname" .) }}
{{- end }}

{{- define "vigil.pipelinesName" -}}
{{- printf "%s-pipelines" (include "vigil.fullname" .) }}
{{- end }}

{{- define "vigil.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vigil.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "vigil.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/*
The Secret holding the bearer token of `vigil serve` (VIGIL_SERVE_TOKEN) and of remote inference
(VIGIL_INFERENCE_TOKEN): inference.token.existingSecret, else "<fullname>-token".
*/}}
{{- define "vigil.tokenSecretName" -}}
{{- if and .Values.inference.token.create .Values.inference.token.existingSecret }}
{{- fail "inference.token: give either existingSecret (a Secret you made) or create: true (the chart makes <fullname>-token), not both" }}
{{- end }}
{{- .Values.inference.token.existingSecret | default (printf "%s-token" (include "vigil.fullname" .)) }}
{{- end }}

{{/*
The serve Service's gRPC address, as inference.server takes it.
*/}}
{{- define "vigil.serveGrpcUrl" -}}
{{- printf "grpc://%s:%d" (include "vigil.serveName" .) (int .Values.serve.ports.grpc) }}
{{- end }}

{{/*
The fleet config (configs/README.md) as written into the ConfigMap: pipelines.config, with
inference.server set to the serve Service's gRPC address when the config's inference has no server
(and pipelines.useServe and serve.enabled are on).
*/}}
{{- define "vigil.fleetConfig" -}}
{{- $config := deepCopy (.Values.pipelines.config | default dict) }}
{{- $inference := get $config "inference" }}
{{- if and .Values.pipelines.useServe .Values.serve.enabled (kindIs "map" $inference) }}
{{- if not (hasKey $inference "server") }}
{{- $_ := set $inference "server" (include "vigil.serveGrpcUrl" .) }}
{{- end }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/*
The security context of every container.
*/}}
{{- define "vigil.containerSecurityContext" -}}
{{- toYaml .Values.securityContext }}
{{- end }}
