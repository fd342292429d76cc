{{/* Names, labels and the values several templates derive from. */}}

{{- define "faultline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "faultline.fullname" -}}
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

{{- define "faultline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "faultline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "faultline.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "faultline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: faultline
{{- end }}

{{- define "faultline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "faultline.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "faultline.controllerImage" -}}
{{- printf "%s:%s" .Values.controller.image.repository (default .Chart.AppVersion .Values.controller.image.tag) }}
{{- end }}

{{- define "faultline.agentImage" -}}
{{- printf "%s:%s" .Values.agent.image.repository (default .Chart.AppVersion .Values.agent.image.tag) }}
{{- end }}

{{/* The URL agents dial: the Service's cluster DNS name, https when the gRPC port has TLS. */}}
{{- define "faultline.controllerUrl" -}}
{{- if .Values.agent.controllerUrl }}
{{- .Values.agent.controllerUrl }}
{{- else }}
{{- $scheme := ternary "https" "http" (ne .Values.controller.tls.existingSecret "") }}
{{- printf "%s://%s.%s.svc:%d" $scheme (include "faultline.fullname" .) .Release.Namespace (int .Values.controller.ports.grpc) }}
{{- end }}
{{- end }}

{{/* The Secret holding the webhook's certificate: the operator's, or the one the chart makes. */}}
{{- define "faultline.webhookSecretName" -}}
{{- default (printf "%s-webhook-tls" (include "faultline.fullname" .)) .Values.webhook.tls.existingSecret }}
{{- end }}

{{/*
The Secret with the operators' tokens file: the operator's, else the one the chart makes
(templates/tokens-secret.yaml); none only with controller.insecure.
*/}}
{{- define "faultline.tokensSecretName" -}}
{{- if .Values.controller.tokens.existingSecret }}
{{- .Values.controller.tokens.existingSecret }}
{{- else if not .Values.controller.insecure }}
{{- printf "%s-operator-tokens" (include "faultline.fullname" .) }}
{{- end }}
{{- end }}

{{/* Refuses values that cannot work, with the reason. */}}
{{- define "faultline.validate" -}}
{{- if ne (int .Values.controller.replicaCount) 1 }}
{{- fail "controller.replicaCount must be 1: the controller is the only writer of its SQLite store (see values.yaml)" }}
{{- end }}
{{- if and .Values.webhook.enabled .Values.webhook.tls.existingSecret (not .Values.webhook.tls.caBundle) (not .Values.webhook.tls.certManagerInjectFrom) }}
{{- fail "webhook.tls.existingSecret needs webhook.tls.caBundle (the CA's PEM) or webhook.tls.certManagerInjectFrom" }}
{{- end }}
{{- if not (has .Values.webhook.failurePolicy (list "Ignore" "Fail")) }}
{{- fail "webhook.failurePolicy must be Ignore or Fail" }}
{{- end }}
{{- if and .Values.webhook.enabled .Values.controller.tls.existingSecret (not .Values.agent.tls.secretName) }}
{{- fail "controller.tls.existingSecret needs agent.tls.secretName: with TLS, agents dial https:// and must present a client certificate of role agent" }}
{{- end }}
{{- if and .Values.agent.tls.secretName (not .Values.controller.tls.existingSecret) (not (hasPrefix "https://" .Values.agent.controllerUrl)) }}
{{- fail "agent.tls.secretName needs controller.tls.existingSecret (or an https:// agent.controllerUrl): an agent with a CA refuses an http:// controller" }}
{{- end }}
{{- if not (regexMatch "^[-._a-zA-Z0-9]+$" (toString .Values.controller.tokens.key)) }}
{{- fail "controller.tokens.key must be a Secret key ([-._a-zA-Z0-9]+)" }}
{{- end }}
{{- if not (has .Values.agent.capture (list "outbound" "inbound" "both" "none")) }}
{{- fail "agent.capture must be one of outbound, inbound, both, none" }}
{{- end }}
{{- if not (kindIs "bool" .Values.agent.ipv6) }}
{{- fail "agent.ipv6 must be true or false" }}
{{- end }}
{{- if not (kindIs "bool" .Values.agent.nativeSidecar) }}
{{- fail "agent.nativeSidecar must be true or false" }}
{{- end }}
{{- if and .Values.agent.nativeSidecar (semverCompare "<1.29.0-0" .Capabilities.KubeVersion.Version) }}
{{- fail (printf "agent.nativeSidecar needs Kubernetes 1.29 or later (native sidecar containers); this cluster is %s" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- end }}
