/**
 * The validated configuration of ca-proxy (one YAML file, `ca-proxy run --config FILE`).
 * Paths are resolved relative to the config file's directory by the loader.
 * See docs/configuration.md for every field with its default.
 */

export type Action = 'intercept' | 'inspect' | 'passthrough' | 'deny';
/** What `inspect` does when the server chooses TLS 1.3, whose Certificate is encrypted (RFC 8446 §4.4.2). */
export type Tls13Policy = 'deny' | 'allowUnchecked' | 'intercept';
export type RevocationPolicy = 'hardFail' | 'softFail';
export type ClientAuth = 'none' | 'optional' | 'require';
/** Lowest TLS version a rule accepts from the server (and offers the workload), as Node names them. */
export type MinTlsVersion = 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';

/** Per-destination settings; a rule overrides the defaults field by field. */
export interface RuleSettings {
  action: Action;
  /** Name of a proxy identity (`identities[].name`) presented on CertificateRequest; null: none. */
  identity: string | null;
  /** What to do when no usable CRL covers a certificate of the chain. */
  revocation: RevocationPolicy;
  /** Whether the proxy asks the workload for a certificate (verified against `workloadCA`). */
  clientAuth: ClientAuth;
  /** Check only the server's leaf against CRLs, not the intermediates. */
  leafOnly: boolean;
  /**
   * `inspect` only, when the server selects TLS 1.3: `deny` (alert protocol_version),
   * `allowUnchecked` (relay, revocation `not_checked`) or `intercept` (switch to split TLS).
   */
  tls13: Tls13Policy;
  /**
   * Lowest protocol version accepted (default `TLSv1.2`): intercept offers nothing older upstream
   * or downstream; inspect denies a ServerHello below it (`protocol_version`).
   */
  minVersion: MinTlsVersion;
}

export interface RuleMatch {
  /** Glob on the SNI: `*` matches one DNS label (`*.example.com`), `**` any number; case-insensitive. */
  sni?: string;
  /** Destination TCP port. */
  port?: number;
  /** CIDR ranges the dialled address must lie in (`10.1.0.0/16`, `2001:db8::/32`). */
  cidr?: string[];
}

export interface Rule extends Partial<RuleSettings> {
  name?: string;
  match: RuleMatch;
}

export interface IdentityConfig {
  name: string;
  /** PEM certificate chain (leaf first). */
  cert?: string;
  /** PEM private key. */
  key?: string;
  /** PKCS#12 file, alternative to cert+key. */
  pfx?: string;
  /** Passphrase for `pfx` or an encrypted key, read from this environment variable. */
  passphraseEnv?: string;
}

export interface Config {
  listen: {
    /** HTTP CONNECT listener `host:port`, or null to disable. */
    connect: string | null;
    /** SNI-routed TLS listener `host:port`, or null to disable. */
    sni: string | null;
    /** Upstream port for connections accepted on the SNI listener. */
    sniUpstreamPort: number;
  };
  /** Admin HTTP listener `host:port` for /metrics, /healthz, /readyz; null disables it. */
  admin: string | null;
  /**
   * Processes that take connections (`run`, `serve-extproc`): `auto` = one per CPU
   * (`os.availableParallelism()`), like HAProxy's `nbthread`. Above 1, a primary process serves
   * the admin port, writes the log and restarts workers (cmd/ca-proxy/workers.ts).
   */
  workers: number | 'auto';
  /** The interception CA that signs minted leaves (PEM files). */
  interceptionCA: { cert: string; key: string };
  leaf: { validityHours: number; cacheSize: number };
  trust: {
    /** PEM bundles of trust anchors for server chains (and CRL signatures). */
    caFiles: string[];
    /** Also trust Node's bundled Mozilla roots. */
    systemRoots: boolean;
  };
  revocation: {
    /** CRL files or folders (PEM or DER; several CRLs per PEM file). */
    crlPaths: string[];
    /** Extra CA certificates (e.g. intermediates) whose keys may sign CRLs; not trust anchors. */
    crlSigners: string[];
    /** Tolerated clock skew for thisUpdate/nextUpdate, seconds. */
    clockSkewSeconds: number;
    /** Watch crlPaths and reload on change. */
    watch: boolean;
    /** CRLs from Kubernetes ConfigMaps written by `ca-proxy publish-crl` (docs/kubernetes.md); null = none. */
    kubernetes?: KubernetesCrlSource | null;
  };
  /**
   * The destination address policy (DESIGN.md "Egress policy"), checked against the address that is
   * dialled: `deny` CIDRs are always refused, `allow` CIDRs are permitted, and other addresses that
   * are not publicly routable (loopback, link-local, RFC 1918, …) are refused (`destination_not_allowed`).
   */
  destinations: { allow: string[]; deny: string[] };
  identities: IdentityConfig[];
  /** PEM bundles of CAs that sign workload certificates (clientAuth optional/require). */
  workloadCA: string[];
  limits: {
    /** Largest accepted handshake message, bytes (default 262144). */
    maxHandshakeMessageBytes: number;
    /** Whole handshake deadline (both sides), milliseconds. */
    handshakeTimeoutMs: number;
    /** Upstream TCP connect timeout, milliseconds. */
    connectTimeoutMs: number;
    /** `inspect`: most bytes held back (server flight before its Certificate is checked, workload bytes before the ServerHello), per connection. */
    maxBufferedBytes: number;
    /** Most connections open at once per listener; further ones are refused at accept (like HAProxy `maxconn`). */
    maxConnections: number;
    /** Most connections open at once per listener from one source address (so one client cannot hold the cap). */
    maxConnectionsPerSource: number;
    /** Deadline for the CONNECT request and for a complete ClientHello, from accept, milliseconds. */
    requestTimeoutMs: number;
    /** On SIGTERM/SIGINT: how long open connections may go on after the listeners close, milliseconds. */
    shutdownGraceMs: number;
  };
  defaults: RuleSettings;
  rules: Rule[];
  log: { level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent' };
  /** `ca-proxy serve-extproc`: the Envoy network ext_proc gRPC service (docs/extproc.md). */
  extproc: ExtProcConfig;
  /** `ca-proxy publish-crl`: the CRL publisher (docs/kubernetes.md "Publisher"). */
  publisher?: PublisherConfig;
  /** Denials as Kubernetes Events on the workload's Pod (docs/kubernetes.md). */
  events?: KubernetesEventsConfig;
  /** `ca-proxy inject`: the sidecar-injecting admission webhook (docs/kubernetes.md "Sidecar injection"). */
  injector?: InjectorConfig;
}

/** The watcher's source of CRL ConfigMaps (docs/kubernetes.md "Watcher"). */
export interface KubernetesCrlSource {
  /** Namespace of the CRL ConfigMaps. */
  namespace: string;
  /** Label selector of the CRL ConfigMaps (default `ca-proxy.io/crl=true`). */
  labelSelector?: string;
  /** kubeconfig file; null or absent = in-cluster service account. */
  kubeconfig?: string | null;
  /** Mounted ConfigMap volume folders (one CRL set each), read instead of the API when `mode` is `volume`, or in `auto` when no API configuration is available. */
  volumePaths?: string[];
  /** `api`, `volume`, or `auto` (default): the API when a kubeconfig or in-cluster environment exists, else `volumePaths`. */
  mode?: 'api' | 'volume' | 'auto';
}

/** Kubernetes Events for denied connections (core/v1 Events on the source Pod). */
export interface KubernetesEventsConfig {
  enabled: boolean;
  /** Namespace assumed for a decision that names a pod but no namespace; null = skip such decisions. */
  namespace?: string | null;
  /** Most Event writes (creates + count updates) per minute, whole process. */
  ratePerMinute: number;
  /** kubeconfig file; null or absent = in-cluster (or `revocation.kubernetes.kubeconfig` when set). */
  kubeconfig?: string | null;
}

/**
 * `ca-proxy publish-crl`: fetch CRLs, validate them as a processor would (trust.caFiles,
 * revocation.crlSigners, revocation.clockSkewSeconds) and publish them into ConfigMaps.
 */
export interface PublisherConfig {
  sources: {
    /** CRL URLs (http or https), fetched as they are. */
    urls: string[];
    /** PEM files of CA certificates whose cRLDistributionPoints (http/https URIs, RFC 5280 §4.2.1.13) are fetched too; their keys also verify CRLs. */
    caFiles: string[];
  };
  /** Namespace of the ConfigMaps and the Lease; null: the pod's own namespace (else `default`). */
  namespace: string | null;
  /** Prefix of the CRL sets: each source's set is `<configMapName>-<10 hex digits of SHA-256(url)>`. */
  configMapName: string;
  /** Fetch every source at least this often, seconds. */
  intervalSeconds: number;
  /** Fetch again no later than nextUpdate minus this margin, seconds; past it without a newer CRL, a Warning Event. */
  nextUpdateMarginSeconds: number;
  fetch: {
    /** Whole-exchange deadline of one HTTP GET, ms. */
    timeoutMs: number;
    /** Largest CRL accepted, bytes. */
    maxBytes: number;
    /** Further attempts after a failed GET (jittered exponential backoff). */
    retries: number;
  };
  /** coordination.k8s.io/v1 Lease for leader election: one replica publishes at a time. */
  lease: { name: string; durationSeconds: number; renewSeconds: number };
  /** kubeconfig file; null: in-cluster service account. */
  kubeconfig: string | null;
}

/** The Envoy network ext_proc gRPC listener (`ca-proxy serve-extproc`). */
export interface ExtProcConfig {
  /** `unix:/path/to.sock` or `host:port` (sidecar placement: a Unix socket or loopback). */
  listen: string;
  /** TLS with client-certificate verification (central placement); null: plaintext. Paths are relative to the config file. */
  tls: { cert: string; key: string; clientCA: string } | null;
  /** How a denied connection is closed once its alert has been delivered: FIN (`CLOSE`) or RST (`CLOSE_RST`). */
  closeMode: 'CLOSE' | 'CLOSE_RST';
  /** On SIGTERM, how long open streams may finish before they are cancelled, milliseconds. */
  shutdownDeadlineMs: number;
  /** Destination port when Envoy names none (no `destination.port` connection attribute, no `x-ca-proxy-destination-port` header). */
  defaultPort: number;
  /**
   * When to send `close_stream_to_ext_proc_server` (Envoy ≥ 1.39) once a `passthrough` or
   * `inspect` allow needs no more bytes: `never`, `auto` (when the stream's first request carries
   * `attributes`, i.e. Envoy ≥ 1.40), `always`. docs/extproc.md says when it is safe.
   */
  closeStream: 'never' | 'auto' | 'always';
}

/** Compute resources of one added container (core/v1 ResourceRequirements; quantities as Kubernetes writes them). */
export interface ContainerResources {
  requests?: Record<string, string>;
  limits?: Record<string, string>;
}

/**
 * `ca-proxy inject`: the mutating admission webhook that adds the redirect init container, the
 * Envoy sidecar (and, for `placement: sidecar`, a serve-extproc container) and the interception CA
 * bundle to labelled pods (docs/kubernetes.md "Sidecar injection"). Flat on purpose: the Helm chart
 * renders it from its values.
 */
export interface InjectorConfig {
  /** HTTPS listener for AdmissionReviews (`POST /mutate`), `host:port`. */
  listen: string;
  /** Admin listener (/metrics, /healthz, /readyz); null: the top-level `admin`. */
  admin: string | null;
  /** Serving certificate chain and key (PEM files, e.g. a cert-manager Secret's tls.crt/tls.key), reloaded when they change. */
  tls: { cert: string; key: string };
  /** Largest AdmissionReview body accepted, bytes. */
  maxRequestBytes: number;
  images: {
    /** The ca-proxy image (entrypoint: the ca-proxy CLI): the redirect init container and, for `placement: sidecar`, serve-extproc. */
    caProxy: string;
    /** The Envoy image (≥ 1.40 for connection_attributes; `envoy` on its PATH). */
    envoy: string;
  };
  imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never';
  /** Where the ext_proc processor runs: a central Service (`central`) or a container in every pod (`sidecar`). */
  placement: 'central' | 'sidecar';
  /** `central`: the processor Service, `host:port` with a DNS name (its certificate must carry it as a SAN). */
  processorAddress: string;
  /** `central`: Secret in each injected namespace with Envoy's client certificate (`tls.crt`, `tls.key`) and the processor's CA (`ca.crt`). */
  envoyClientSecret: string;
  /** `sidecar`: ConfigMap in each injected namespace holding the processor's `config.yaml`. */
  sidecarConfigMap: string;
  /** `sidecar`: Secret in each injected namespace with the files that config names (interception CA key, identities), mounted at /etc/ca-proxy/secrets. */
  sidecarSecret: string;
  /** uid (and gid) of Envoy and the processor sidecar; its traffic is never redirected. */
  proxyUid: number;
  /** Envoy's egress listener, the redirect target. */
  proxyPort: number;
  /** Envoy's readiness listener (GET /ready, probed by kubelet on the pod IP). */
  readyPort: number;
  /** `sidecar`: the processor's admin port (/healthz, /readyz, /metrics) on the pod IP. */
  processorAdminPort: number;
  /** Also listen on [::] (dual-stack pods). Off: IPv6 egress is redirected to a port with no listener, so it fails closed. */
  ipv6: boolean;
  /** Default of the `ca-proxy.io/ports` annotation: comma-separated ports, or `*` for every port. */
  ports: string;
  /** Default of `ca-proxy.io/exclude-ports` (comma-separated; empty: none). */
  excludePorts: string;
  /** Default of `ca-proxy.io/exclude-cidrs` (comma-separated IPv4/IPv6 CIDRs; empty: none). */
  excludeCidrs: string;
  /** ConfigMap in each injected namespace with the workloads' trust bundle (the interception CA and whatever roots they need). */
  caBundleConfigMap: string;
  /** The key of that ConfigMap holding the PEM bundle. */
  caBundleKey: string;
  /** Envoy's ext_proc `message_timeout`, ms. */
  messageTimeoutMs: number;
  /** Envoy's `--log-level`. */
  envoyLogLevel: 'trace' | 'debug' | 'info' | 'warning' | 'error' | 'critical' | 'off';
  /** A bootstrap template other than deploy/envoy/sidecar-bootstrap.template.yaml; null: that one. */
  envoyBootstrapTemplate: string | null;
  resources: { redirect: ContainerResources; envoy: ContainerResources; processor: ContainerResources };
}
