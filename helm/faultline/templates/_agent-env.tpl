{{/*
The one place chart values become the agent's environment variables (rendered into the inject
config's `env`, which the webhook gives every agent as is). The webhook adds only what depends
on the pod: FAULTLINE_POD_NAME/NAMESPACE and FAULTLINE_AGENT_ID (Downward API), the pod's labels
(FAULTLINE_LABEL_<i>, composed into FAULTLINE_LABELS with $(VAR) expansion), FAULTLINE_ADMIN and
FAULTLINE_HEALTH (from agent.ports), and the capture listeners and mark the pod's annotations ask
for; it refuses a config that sets any of those here.
*/}}
{{- define "faultline.agentEnv" -}}
- name: FAULTLINE_CONTROLLER
  value: {{ include "faultline.controllerUrl" . | quote }}
- name: FAULTLINE_LOG_FORMAT
  value: {{ .Values.agent.logFormat | quote }}
- name: FAULTLINE_LOG
  value: {{ .Values.agent.logLevel | quote }}
- name: FAULTLINE_DRAIN_GRACE
  value: {{ .Values.agent.drainGrace | quote }}
{{- with .Values.agent.tls.secretName }}
- name: FAULTLINE_TLS_CA
  value: {{ printf "%s/ca.crt" $.Values.agent.tls.mountPath | quote }}
- name: FAULTLINE_TLS_CERT
  value: {{ printf "%s/tls.crt" $.Values.agent.tls.mountPath | quote }}
- name: FAULTLINE_TLS_KEY
  value: {{ printf "%s/tls.key" $.Values.agent.tls.mountPath | quote }}
{{- end }}
{{- with .Values.agent.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}
