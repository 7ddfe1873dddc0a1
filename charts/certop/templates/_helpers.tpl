{{- define "certop.labels" -}}
app.kubernetes.io/name: certop
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}
{{- define "certop.selector" -}}
app.kubernetes.io/name: certop
{{- end }}
