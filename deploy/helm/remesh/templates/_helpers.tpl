{{/* The chart's name, overridable. */}}
{{- define "remesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource name prefix: the release name, unless it lacks the chart's name. */}}
{{- define "remesh.fullname" -}}
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

{{/* The headless Service: stable pod DNS names and the join seed list. */}}
{{- define "remesh.headlessName" -}}
{{- printf "%s-headless" (include "remesh.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "remesh.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "remesh.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "remesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "remesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "remesh.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* "true" when the proxies should join each other, "" otherwise. */}}
{{- define "remesh.clustering" -}}
{{- $forced := .Values.clustering.enabled }}
{{- if kindIs "bool" $forced }}
{{- if $forced }}true{{ end }}
{{- else if or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled }}true
{{- end }}
{{- end }}

{{/* Non-empty when the nodes fill each other's misses: a cluster of executors
with no shared backing cache. */}}
{{- define "remesh.peerFill" -}}
{{- if and (include "remesh.clustering" .) .Values.executor.enabled (not .Values.executor.backingCache) }}true{{ end }}
{{- end }}

{{/* host:port every proxy joins through: the headless Service's DNS name. */}}
{{- define "remesh.joinAddress" -}}
{{- printf "%s.%s.svc.%s:%d" (include "remesh.headlessName" .) .Release.Namespace .Values.clusterDomain (int .Values.proxy.ports.gossip) }}
{{- end }}

{{- define "remesh.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "remesh.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{- define "remesh.meshTlsSecretName" -}}
{{- default (printf "%s-mesh-tls" (include "remesh.fullname" .)) .Values.meshTls.secretName }}
{{- end }}

{{/* proxy.toml. node_id, grpc_advertise, gossip_advertise and peer_advertise come
from the pod's environment (REMESH_PROXY_*), which overrides the file. */}}
{{- define "remesh.proxyToml" -}}
listen = "0.0.0.0:{{ int .Values.proxy.ports.grpc }}"
admin_listen = "0.0.0.0:{{ int .Values.proxy.ports.admin }}"
gossip_listen = "0.0.0.0:{{ int .Values.proxy.ports.gossip }}"
{{- if include "remesh.peerFill" . }}
# No shared backing cache: the executor's misses are asked of the other nodes here.
fill_listen = "127.0.0.1:{{ int .Values.proxy.ports.fill }}"
{{- end }}
{{- if .Values.meshTls.enabled }}
# Peers meet here with mutual TLS ([mesh_tls]); listen serves clients only.
peer_listen = "0.0.0.0:{{ int .Values.proxy.ports.peer }}"
{{- end }}
{{- if .Values.executor.enabled }}
backend = "grpc://127.0.0.1:{{ int .Values.executor.ports.grpc }}"
backend_mode = "executor"
backend_load = "grpc://127.0.0.1:{{ int .Values.executor.ports.load }}"
{{- else }}
backend = {{ required "backend.address is required when executor.enabled is false" .Values.backend.address | quote }}
backend_mode = {{ .Values.backend.mode | quote }}
capacity = {{ int64 .Values.backend.capacity }}
{{- end }}
{{- if include "remesh.clustering" . }}
join = [{{ include "remesh.joinAddress" . | quote }}]
{{- end }}
policy = {{ .Values.proxy.policy | quote }}
{{- if .Values.gossipKeyring.enabled }}
gossip_keyring = "{{ .Values.gossipKeyring.mountPath }}/keyring"
{{- else }}
# Gossip travels unsealed: set gossipKeyring to seal it.
insecure_plaintext_gossip = true
{{- end }}
{{- with .Values.proxy.config }}
{{ toToml . | trim }}
{{- end }}
{{- if .Values.tls.enabled }}

[tls]
cert_file = "{{ .Values.tls.mountPath }}/tls.crt"
key_file = "{{ .Values.tls.mountPath }}/tls.key"
client_auth = {{ .Values.tls.clientAuth | quote }}
{{- if ne .Values.tls.clientAuth "off" }}
client_ca_file = "{{ .Values.tls.mountPath }}/ca.crt"
{{- end }}
{{- end }}
{{- if .Values.meshTls.enabled }}

[mesh_tls]
ca_file = "{{ .Values.meshTls.mountPath }}/ca.crt"
cert_file = "{{ .Values.meshTls.mountPath }}/tls.crt"
key_file = "{{ .Values.meshTls.mountPath }}/tls.key"
{{- end }}
{{- end }}

{{/* executor.toml: every port on loopback, the data directory on the data volume. */}}
{{- define "remesh.executorToml" -}}
{{- if .Values.executor.enabled -}}
listen = "127.0.0.1:{{ int .Values.executor.ports.grpc }}"
load_listen = "127.0.0.1:{{ int .Values.executor.ports.load }}"
metrics_listen = "127.0.0.1:{{ int .Values.executor.ports.metrics }}"
data_dir = {{ .Values.executor.dataDir | quote }}
cas_max_bytes = {{ int64 .Values.executor.casMaxBytes }}
runners = {{ int64 .Values.executor.runners }}
queue_max = {{ int64 .Values.executor.queueMax }}
shutdown_grace = "{{ int64 .Values.executor.shutdownGraceSeconds }}s"
{{- with .Values.executor.backingCache }}
backing_cache = {{ . | quote }}
{{- end }}
{{- if include "remesh.peerFill" . }}
# The proxy's fill endpoint: misses are read from the other nodes, nothing is written.
backing_cache = "grpc://127.0.0.1:{{ int .Values.proxy.ports.fill }}"
backing_read_only = true
{{- end }}
{{- with .Values.executor.backingInstanceName }}
backing_instance_name = {{ . | quote }}
{{- end }}
{{- with .Values.executor.config }}
{{ toToml . | trim }}
{{- end }}
{{- end }}
{{- end }}

{{/* Rolls the pods when either config file changes. */}}
{{- define "remesh.configChecksum" -}}
{{- printf "%s\n%s" (include "remesh.proxyToml" .) (include "remesh.executorToml" .) | sha256sum }}
{{- end }}

{{/* Refuses values that would kill running actions on every pod deletion. */}}
{{- define "remesh.checkGrace" -}}
{{- if .Values.executor.enabled }}
{{- $needed := add (int .Values.executor.preStopSleepSeconds) (int .Values.executor.shutdownGraceSeconds) }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed executor.preStopSleepSeconds + executor.shutdownGraceSeconds (%d)" (int .Values.terminationGracePeriodSeconds) (int $needed)) }}
{{- end }}
{{- end }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int .Values.proxy.preStopSleepSeconds) }}
{{- fail "terminationGracePeriodSeconds must exceed proxy.preStopSleepSeconds" }}
{{- end }}
{{- end }}
