{{/*
Names, labels, and the loramux serving config the ConfigMap ships.
*/}}

{{- define "loramux.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "loramux.fullname" -}}
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

{{/* Labels of every object; call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "loramux.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
{{ include "loramux.selectorLabels" . }}
{{- end -}}

{{- define "loramux.selectorLabels" -}}
app.kubernetes.io/name: {{ include "loramux.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "loramux.postgres" -}}
{{- if has .Values.database.kind (list "postgres-bundled" "postgres-external") -}}true{{- end -}}
{{- end -}}

{{/* The Secret holding admin-key and vllm-api-key. */}}
{{- define "loramux.secretName" -}}
{{- default (printf "%s-secrets" (include "loramux.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* The Secret and key holding the PostgreSQL DSN (LORAMUX_DATABASE_URL). */}}
{{- define "loramux.databaseSecretName" -}}
{{- if and (eq .Values.database.kind "postgres-external") .Values.database.external.existingSecret -}}
{{- .Values.database.external.existingSecret -}}
{{- else -}}
{{- printf "%s-database" (include "loramux.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "loramux.databaseSecretKey" -}}
{{- if and (eq .Values.database.kind "postgres-external") .Values.database.external.existingSecret -}}
{{- .Values.database.external.existingSecretKey -}}
{{- else -}}url{{- end -}}
{{- end -}}

{{/* Base URL of every vLLM replica: its stable name under the headless Service. */}}
{{- define "loramux.vllmUrls" -}}
{{- $full := include "loramux.fullname" . -}}
{{- $urls := list -}}
{{- range $i := until (int .Values.vllm.replicas) -}}
{{- $urls = append $urls (printf "http://%s-vllm-%d.%s-vllm.%s.svc:%d" $full $i $full $.Release.Namespace (int $.Values.vllm.port)) -}}
{{- end -}}
{{- toJson $urls -}}
{{- end -}}

{{/*
Refuse what cannot work, with a message naming the value: never render a release that would
silently do something else than asked.
*/}}
{{- define "loramux.checks" -}}
{{- $v := .Values -}}
{{- if and (not (include "loramux.postgres" .)) (or (gt (int $v.gateway.replicas) 1) $v.gateway.autoscaling.enabled) -}}
{{- fail "gateway.replicas > 1 and gateway.autoscaling need database.kind postgres-bundled or postgres-external: with sqlite the registry is one host's file (docs/kubernetes.md)" -}}
{{- end -}}
{{- if and (eq $v.database.kind "postgres-external") (not $v.database.external.url) (not $v.database.external.existingSecret) -}}
{{- fail "database.kind postgres-external needs database.external.url or database.external.existingSecret" -}}
{{- end -}}
{{- if and $v.database.external.url $v.database.external.existingSecret -}}
{{- fail "give database.external.url or database.external.existingSecret, not both" -}}
{{- end -}}
{{- if and (ne $v.database.kind "postgres-external") (or $v.database.external.url $v.database.external.existingSecret) -}}
{{- fail (printf "database.external.* is set but database.kind is %s: set database.kind postgres-external, or remove database.external" $v.database.kind) -}}
{{- end -}}
{{- if and $v.vllm.enabled (eq $v.vllm.modelSource "pvc") (not $v.vllm.modelClaim) -}}
{{- fail "vllm.modelSource pvc needs vllm.modelClaim (the PersistentVolumeClaim holding the model)" -}}
{{- end -}}
{{- $rank := int (dig "registry" "limits" "max_rank" 64 $v.config) -}}
{{- if and $v.vllm.enabled (gt $rank (int $v.vllm.maxLoraRank)) -}}
{{- fail (printf "config.registry.limits.max_rank (%d) is above vllm.maxLoraRank (%d): vLLM would refuse adapters the registry accepts" $rank (int $v.vllm.maxLoraRank)) -}}
{{- end -}}
{{- if and $v.secrets.existingSecret (or $v.secrets.adminKey $v.secrets.vllmApiKey) -}}
{{- fail "give secrets.existingSecret or secrets.adminKey / secrets.vllmApiKey, not both" -}}
{{- end -}}
{{- $managed := list "server.host" "server.port" "server.log_format" "paths" "auth.enabled" "model.id" "registry.store" "kb.dir" "decisions.dir" "admin.keys.admin" -}}
{{- if $v.vllm.enabled -}}
{{- $managed = concat $managed (list "engine.kind" "engine.remote.urls" "engine.remote.api_key" "engine.remote.model" "engine.remote.adapter_dir") -}}
{{- else if not (dig "engine" "kind" "" $v.config) -}}
{{- fail "vllm.enabled is false: set config.engine.kind (hf, fake, or remote with config.engine.remote.urls)" -}}
{{- end -}}
{{- range $key := $managed -}}
{{- $node := $v.config -}}
{{- $found := true -}}
{{- range $part := splitList "." $key -}}
{{- if and $found (kindIs "map" $node) (hasKey $node $part) -}}
{{- $node = index $node $part -}}
{{- else -}}
{{- $found = false -}}
{{- end -}}
{{- end -}}
{{- if $found -}}
{{- fail (printf "config.%s is set by the chart: remove it from `config` (docs/kubernetes.md, \"What the chart sets\")" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The serving config: the user's `config` plus the keys the chart owns. */}}
{{- define "loramux.config" -}}
{{- $v := .Values -}}
{{- $managed := dict
  "server" (dict "host" "0.0.0.0" "port" (int $v.gateway.port) "log_format" $v.gateway.logFormat)
  "paths" (dict "data_dir" "/var/lib/loramux" "cache_dir" "/opt/loramux/cache")
  "auth" (dict "enabled" $v.gateway.auth)
  "model" (dict "id" $v.model.id)
  "registry" (dict "store" (ternary "postgres" "sqlite" (eq (include "loramux.postgres" .) "true")))
  "kb" (dict "dir" "/var/lib/loramux-local/kb")
  "decisions" (dict "dir" "/var/lib/loramux-local/decisions")
-}}
{{- if $v.vllm.enabled -}}
{{- $_ := set $managed "engine" (dict "kind" "remote" "remote" (dict "urls" (include "loramux.vllmUrls" . | fromJsonArray) "model" $v.model.id)) -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite (deepCopy $v.config) $managed) -}}
{{- end -}}
