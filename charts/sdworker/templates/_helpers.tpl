{{/*
Expand the name of the chart.
*/}}
{{- define "sdworker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "sdworker.fullname" -}}
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
{{- define "sdworker.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "sdworker.labels" -}}
helm.sh/chart: {{ include "sdworker.chart" . }}
app.kubernetes.io/part-of: sdworker
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Operator: names, selector labels, labels.
*/}}
{{- define "sdworker.operator.fullname" -}}
{{- printf "%s-operator" (include "sdworker.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sdworker.operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sdworker.name" . }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sdworker.operator.labels" -}}
{{ include "sdworker.labels" . }}
{{ include "sdworker.operator.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "sdworker.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "sdworker.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The kopf peering name: set only when more than one replica runs (leader election).
*/}}
{{- define "sdworker.operator.peering" -}}
{{- if gt (int .Values.operator.replicas) 1 }}
{{- default (include "sdworker.fullname" .) .Values.operator.peeringName }}
{{- end }}
{{- end }}

{{/*
Agent: names, selector labels, labels. The ServiceAccount name also appears inside the admission
policies' CEL (usernames), so it is computed in one place.
*/}}
{{- define "sdworker.agent.fullname" -}}
{{- printf "%s-agent" (include "sdworker.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sdworker.agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sdworker.name" . }}-agent
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sdworker.agent.labels" -}}
{{ include "sdworker.labels" . }}
{{ include "sdworker.agent.selectorLabels" . }}
app.kubernetes.io/component: node-agent
{{- end }}

{{- define "sdworker.agent.serviceAccountName" -}}
{{- default (include "sdworker.agent.fullname" .) .Values.agent.serviceAccount.name }}
{{- end }}

{{/* The username of the agent's ServiceAccount, and the prefix of the per-node fallback identities. */}}
{{- define "sdworker.agent.username" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "sdworker.agent.serviceAccountName" .) }}
{{- end }}

{{- define "sdworker.agent.perNodePrefix" -}}
{{- printf "%s-node-" (include "sdworker.agent.username" .) }}
{{- end }}

{{/*
Image reference: repository:tag, or repository@digest when a digest is set.
*/}}
{{- define "sdworker.image" -}}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository (toString (default $.appVersion .tag)) }}
{{- end }}
{{- end }}
