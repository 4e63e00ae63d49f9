{{/* Names: `<release>-<chart>` unless overridden, cut to 63 characters (DNS label). */}}
{{- define "ca-proxy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ca-proxy.fullname" -}}
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

{{/* `<fullname>-<component>`, e.g. ca-proxy-processor; `dict "root" $ "component" "processor"`. */}}
{{- define "ca-proxy.componentName" -}}
{{- printf "%s-%s" (include "ca-proxy.fullname" .root | trunc (int (sub 62 (len .component)))) .component | trimSuffix "-" -}}
{{- end -}}

{{- define "ca-proxy.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "ca-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ca-proxy
{{- end -}}

{{/* Labels of a component's objects; `dict "root" $ "component" "processor"`. */}}
{{- define "ca-proxy.componentLabels" -}}
{{ include "ca-proxy.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ca-proxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ca-proxy.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ca-proxy.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* prometheus.io/* annotations, when no Prometheus Operator monitor is used. */}}
{{- define "ca-proxy.scrapeAnnotations" -}}
{{- if and .Values.monitoring.annotations (not .Values.monitoring.serviceMonitor.enabled) (not .Values.monitoring.podMonitor.enabled) }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.adminPort | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{/* Mount points inside every ca-proxy container (the rendered config names these paths). */}}
{{- define "ca-proxy.paths" -}}
config: /etc/ca-proxy/config
trust: /etc/ca-proxy/trust
interceptionCA: /etc/ca-proxy/interception-ca
identities: /etc/ca-proxy/identities
extprocTLS: /etc/ca-proxy/extproc-tls
injectorTLS: /etc/ca-proxy/injector-tls
{{- end -}}

{{/* The PEM files of the trust ConfigMap, by key, for the keys that have content. */}}
{{- define "ca-proxy.trustFiles" -}}
{{- $files := dict -}}
{{- with .Values.trust.caCertificates }}{{ $_ := set $files "trust-anchors.pem" . }}{{ end -}}
{{- with .Values.revocation.crlSigners }}{{ $_ := set $files "crl-signers.pem" . }}{{ end -}}
{{- with .Values.workloadCA }}{{ $_ := set $files "workload-ca.pem" . }}{{ end -}}
{{- with .Values.publisher.sources.caCertificates }}{{ $_ := set $files "crl-source-cas.pem" . }}{{ end -}}
{{- toYaml $files -}}
{{- end -}}

{{/*
The processor's ca-proxy configuration (docs/configuration.md), as YAML; `dict "root" $ "layout"
"central"|"sidecar"`. The loader validates it again at start with the same schema; the chart's
tests load every rendered one. Layouts (where the files are mounted):
  central — the chart's processor Deployment and the helm test Pod: trust files from the trust
            ConfigMap, the interception CA and identities from their own Secrets;
  sidecar — the ca-proxy container the injector adds to each pod (placement sidecar): the trust
            files beside config.yaml in this ConfigMap, the keys in injection.sidecarSecret
            (mounted by the injector at /etc/ca-proxy/secrets).
*/}}
{{- define "ca-proxy.processorConfig" -}}
{{- $root := .root -}}
{{- $sidecar := eq .layout "sidecar" -}}
{{- $p := fromYaml (include "ca-proxy.paths" $root) -}}
{{- $trustDir := ternary $p.config $p.trust $sidecar -}}
{{- $cfg := dict -}}
{{- if $sidecar -}}
{{- $_ := set $cfg "admin" (printf "0.0.0.0:%d" (int (dig "processorAdminPort" 15020 $root.Values.injector.config))) -}}
{{- $_ := set $cfg "interceptionCA" (dict "cert" "/etc/ca-proxy/secrets/interception-ca.crt" "key" "/etc/ca-proxy/secrets/interception-ca.key") -}}
{{- else -}}
{{- $_ := set $cfg "admin" (printf "0.0.0.0:%d" (int $root.Values.adminPort)) -}}
{{- $_ := set $cfg "interceptionCA" (dict "cert" (printf "%s/tls.crt" $p.interceptionCA) "key" (printf "%s/tls.key" $p.interceptionCA)) -}}
{{- end -}}
{{- $trust := list -}}
{{- if $root.Values.trust.caCertificates }}{{ $trust = append $trust (printf "%s/trust-anchors.pem" $trustDir) }}{{ end -}}
{{- $_ := set $cfg "trust" (dict "caFiles" $trust "systemRoots" $root.Values.trust.systemRoots) -}}
{{- $signers := list -}}
{{- if $root.Values.revocation.crlSigners }}{{ $signers = append $signers (printf "%s/crl-signers.pem" $trustDir) }}{{ end -}}
{{- $kube := dict "namespace" $root.Release.Namespace "labelSelector" "ca-proxy.io/crl=true" "mode" "api" -}}
{{- $_ := set $cfg "revocation" (dict "crlSigners" $signers "clockSkewSeconds" (int $root.Values.revocation.clockSkewSeconds) "kubernetes" $kube) -}}
{{- $ids := list -}}
{{- range $root.Values.identities -}}
{{- if $sidecar -}}
{{- $ids = append $ids (dict "name" .name "cert" (printf "/etc/ca-proxy/secrets/identity-%s.crt" .name) "key" (printf "/etc/ca-proxy/secrets/identity-%s.key" .name)) -}}
{{- else -}}
{{- $ids = append $ids (dict "name" .name "cert" (printf "%s/%s/tls.crt" $p.identities .name) "key" (printf "%s/%s/tls.key" $p.identities .name)) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg "identities" $ids -}}
{{- /* One process per sidecar; the central processor's count is a value (auto would count the node's CPUs, not the pod's limit). */ -}}
{{- $_ := set $cfg "workers" (ternary 1 (int $root.Values.processor.workers) $sidecar) -}}
{{- if $root.Values.workloadCA }}{{ $_ := set $cfg "workloadCA" (list (printf "%s/workload-ca.pem" $trustDir)) }}{{ end -}}
{{- with $root.Values.limits }}{{ $_ := set $cfg "limits" . }}{{ end -}}
{{- with $root.Values.leaf }}{{ $_ := set $cfg "leaf" . }}{{ end -}}
{{- $_ := set $cfg "destinations" $root.Values.destinations -}}
{{- $_ := set $cfg "defaults" $root.Values.defaults -}}
{{- $_ := set $cfg "rules" $root.Values.rules -}}
{{- $_ := set $cfg "log" $root.Values.log -}}
{{- $_ := set $cfg "events" (dict "enabled" $root.Values.events.enabled "ratePerMinute" (int $root.Values.events.ratePerMinute)) -}}
{{- $ext := dict "closeMode" $root.Values.extproc.closeMode "closeStream" $root.Values.extproc.closeStream "shutdownDeadlineMs" (int $root.Values.extproc.shutdownDeadlineMs) "defaultPort" (int $root.Values.extproc.defaultPort) -}}
{{- if $sidecar -}}
{{- /* The injector passes the same --listen; the socket's emptyDir is shared only with Envoy. */ -}}
{{- $_ := set $ext "listen" "unix:/var/run/ca-proxy/extproc.sock" -}}
{{- $_ := set $ext "tls" nil -}}
{{- else -}}
{{- $_ := set $ext "listen" (printf "0.0.0.0:%d" (int $root.Values.extproc.port)) -}}
{{- $_ := set $ext "tls" (dict "cert" (printf "%s/tls.crt" $p.extprocTLS) "key" (printf "%s/tls.key" $p.extprocTLS) "clientCA" (printf "%s/ca.crt" $p.extprocTLS)) -}}
{{- end -}}
{{- $_ := set $cfg "extproc" $ext -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* The publisher's configuration (publish-crl reads the processors' format; no interceptionCA). */}}
{{- define "ca-proxy.publisherConfig" -}}
{{- $p := fromYaml (include "ca-proxy.paths" .) -}}
{{- $pub := .Values.publisher -}}
{{- $cfg := dict "admin" (printf "0.0.0.0:%d" (int .Values.adminPort)) "log" .Values.log -}}
{{- $trust := list -}}
{{- if .Values.trust.caCertificates }}{{ $trust = append $trust (printf "%s/trust-anchors.pem" $p.trust) }}{{ end -}}
{{- $_ := set $cfg "trust" (dict "caFiles" $trust "systemRoots" .Values.trust.systemRoots) -}}
{{- $signers := list -}}
{{- if .Values.revocation.crlSigners }}{{ $signers = append $signers (printf "%s/crl-signers.pem" $p.trust) }}{{ end -}}
{{- $_ := set $cfg "revocation" (dict "crlSigners" $signers "clockSkewSeconds" (int .Values.revocation.clockSkewSeconds)) -}}
{{- $cas := list -}}
{{- if $pub.sources.caCertificates }}{{ $cas = append $cas (printf "%s/crl-source-cas.pem" $p.trust) }}{{ end -}}
{{- $fetch := dict "timeoutMs" (int $pub.fetch.timeoutMs) "maxBytes" (int $pub.fetch.maxBytes) "retries" (int $pub.fetch.retries) -}}
{{- $lease := dict "name" (include "ca-proxy.componentName" (dict "root" . "component" "publisher")) "durationSeconds" (int $pub.lease.durationSeconds) "renewSeconds" (int $pub.lease.renewSeconds) -}}
{{- $_ := set $cfg "publisher" (dict "sources" (dict "urls" $pub.sources.urls "caFiles" $cas) "namespace" .Release.Namespace "configMapName" $pub.configMapName "intervalSeconds" (int $pub.intervalSeconds) "nextUpdateMarginSeconds" (int $pub.nextUpdateMarginSeconds) "fetch" $fetch "lease" $lease "kubeconfig" nil) -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Volumes every processor pod (and the helm test Pod) mounts. */}}
{{- define "ca-proxy.processorVolumes" -}}
- name: config
  configMap:
    name: {{ include "ca-proxy.componentName" (dict "root" . "component" "processor") }}
- name: trust
  configMap:
    name: {{ include "ca-proxy.componentName" (dict "root" . "component" "trust") }}
- name: interception-ca
  secret:
    secretName: {{ .Values.interceptionCA.secretName }}
    defaultMode: 0400
{{- range .Values.identities }}
- name: identity-{{ .name | lower | replace "_" "-" | replace "." "-" }}
  secret:
    secretName: {{ .secretName }}
    defaultMode: 0400
{{- end }}
{{- end -}}

{{- define "ca-proxy.processorMounts" -}}
{{- $p := fromYaml (include "ca-proxy.paths" .) -}}
- name: config
  mountPath: {{ $p.config }}
  readOnly: true
- name: trust
  mountPath: {{ $p.trust }}
  readOnly: true
- name: interception-ca
  mountPath: {{ $p.interceptionCA }}
  readOnly: true
{{- range .Values.identities }}
- name: identity-{{ .name | lower | replace "_" "-" | replace "." "-" }}
  mountPath: {{ printf "%s/%s" $p.identities .name }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* The interception CA certificate for the workload bundle: the value, else the Secret's tls.crt. */}}
{{- define "ca-proxy.interceptionCACert" -}}
{{- if .Values.interceptionCA.certificate -}}
{{- .Values.interceptionCA.certificate -}}
{{- else -}}
{{- $s := lookup "v1" "Secret" .Release.Namespace .Values.interceptionCA.secretName -}}
{{- if and $s $s.data (index $s.data "tls.crt") -}}
{{- index $s.data "tls.crt" | b64dec -}}
{{- else -}}
{{- fail (printf "interceptionCA.certificate is empty and Secret %s/%s (tls.crt) could not be read; create the Secret before installing, or set interceptionCA.certificate (always needed with helm template, which has no cluster)" .Release.Namespace .Values.interceptionCA.secretName) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Whether the chart itself generates TLS material (no cert-manager). */}}
{{- define "ca-proxy.selfSigned" -}}
{{- if not .Values.certManager.enabled }}true{{ end -}}
{{- end -}}

{{/* The cert-manager issuerRef every Certificate uses. */}}
{{- define "ca-proxy.issuerRef" -}}
{{- if .Values.certManager.issuerRef -}}
{{- toYaml .Values.certManager.issuerRef -}}
{{- else -}}
name: {{ include "ca-proxy.componentName" (dict "root" . "component" "ca") }}
kind: ClusterIssuer
group: cert-manager.io
{{- end -}}
{{- end -}}

{{/*
The chart's own CA for the processor's gRPC endpoint (placement central, no cert-manager):
generated once, then read back from its Secret on every upgrade (`lookup`), so the processor's
server certificate and the Envoy client certificates of new namespaces chain to the same CA.
Returns YAML {cert, key} (PEM).
*/}}
{{- define "ca-proxy.extprocCA" -}}
{{- $name := include "ca-proxy.componentName" (dict "root" . "component" "extproc-ca") -}}
{{- $s := lookup "v1" "Secret" .Release.Namespace $name -}}
{{- if and $s $s.data (index $s.data "tls.crt") (index $s.data "tls.key") -}}
cert: {{ index $s.data "tls.crt" | b64dec | quote }}
key: {{ index $s.data "tls.key" | b64dec | quote }}
{{- else -}}
{{- $ca := genCA (printf "%s ext_proc CA" (include "ca-proxy.fullname" .)) (int .Values.processor.tlsValidityDays) -}}
cert: {{ $ca.Cert | quote }}
key: {{ $ca.Key | quote }}
{{- end -}}
{{- end -}}

{{/*
The injector's configuration (`injector` in docs/configuration.md): what the chart knows
(addresses, names of the Secrets and ConfigMaps it creates, the image) merged under
`injector.config` from values.
*/}}
{{- define "ca-proxy.injectorConfig" -}}
{{- $p := fromYaml (include "ca-proxy.paths" .) -}}
{{- $processor := include "ca-proxy.componentName" (dict "root" . "component" "processor") -}}
{{- $inj := dict
  "listen" (printf "0.0.0.0:%d" (int .Values.injector.port))
  "admin" (printf "0.0.0.0:%d" (int .Values.adminPort))
  "tls" (dict "cert" (printf "%s/tls.crt" $p.injectorTLS) "key" (printf "%s/tls.key" $p.injectorTLS))
  "imagePullPolicy" .Values.image.pullPolicy
  "placement" .Values.placement
  "processorAddress" (printf "%s.%s.svc:%d" $processor .Release.Namespace (int .Values.extproc.port))
  "envoyClientSecret" .Values.injection.envoyClientSecret
  "sidecarConfigMap" $processor
  "sidecarSecret" .Values.injection.sidecarSecret
  "caBundleConfigMap" .Values.injection.caBundleConfigMap
  "caBundleKey" "ca.crt"
-}}
{{- $images := dict "caProxy" (include "ca-proxy.image" .) -}}
{{- with .Values.injector.config.images }}{{ $images = merge $images (deepCopy .) }}{{ end -}}
{{- $_ := set $inj "images" $images -}}
{{- /* What the chart sets wins: its mounts, Services and object names must match. */ -}}
{{- $inj = merge $inj (omit (deepCopy .Values.injector.config) "images") -}}
{{- toYaml (dict "log" .Values.log "injector" $inj) -}}
{{- end -}}

{{/* The runbook annotation of an alert; `dict "root" $ "alert" NAME`. */}}
{{- define "ca-proxy.runbook" -}}
{{- if .root.Values.monitoring.prometheusRule.runbookBaseURL -}}
runbook_url: {{ printf "%s#%s" .root.Values.monitoring.prometheusRule.runbookBaseURL (lower .alert) | quote }}
{{- else -}}
runbook_url: {{ printf "ca-proxy chart README.md, Alerts: %s" .alert | quote }}
{{- end -}}
{{- end }}
