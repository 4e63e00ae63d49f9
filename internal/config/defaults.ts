/**
 * The embedded default configuration (what a config file is merged over) and the
 * development configuration `make run` uses with the PKI that `scripts/dev-pki` writes
 * under `.local/`. docs/configuration.md lists the same values; keep the two in step.
 */
import path from 'node:path';
import type { Config } from './types';

/** This build's version (package.json): the default image tag and the `ca-proxy.io/injected` annotation. */
export const PACKAGE_VERSION: string = (require('../../../package.json') as { version: string }).version;

/**
 * Everything has a default except the interception CA: a key pair that signs certificates
 * the workloads trust must be chosen explicitly, so the loader reports it missing.
 */
export type ConfigDefaults = Omit<Config, 'interceptionCA'>;

/** A fresh, mutable copy of the defaults (callers merge into it). */
export function defaultConfig(): ConfigDefaults {
  return {
    listen: { connect: '127.0.0.1:3128', sni: null, sniUpstreamPort: 443 },
    admin: '127.0.0.1:9090',
    workers: 'auto',
    leaf: { validityHours: 24, cacheSize: 1000 },
    trust: { caFiles: [], systemRoots: false },
    revocation: { crlPaths: [], crlSigners: [], clockSkewSeconds: 300, watch: true },
    destinations: { allow: [], deny: [] },
    identities: [],
    workloadCA: [],
    limits: {
      maxHandshakeMessageBytes: 262144,
      handshakeTimeoutMs: 10000,
      connectTimeoutMs: 5000,
      maxBufferedBytes: 524288,
      maxConnections: 10000,
      maxConnectionsPerSource: 512,
      requestTimeoutMs: 5000,
      shutdownGraceMs: 10000,
    },
    defaults: { action: 'intercept', identity: null, revocation: 'hardFail', clientAuth: 'none', leafOnly: false, tls13: 'deny', minVersion: 'TLSv1.2' },
    rules: [],
    log: { level: 'info' },
    extproc: { listen: '127.0.0.1:9901', tls: null, closeMode: 'CLOSE', shutdownDeadlineMs: 10000, defaultPort: 443, closeStream: 'auto' },
    publisher: {
      sources: { urls: [], caFiles: [] },
      namespace: null,
      configMapName: 'ca-proxy-crl',
      intervalSeconds: 300,
      nextUpdateMarginSeconds: 3600,
      fetch: { timeoutMs: 10000, maxBytes: 134217728, retries: 3 },
      lease: { name: 'ca-proxy-publisher', durationSeconds: 15, renewSeconds: 5 },
      kubeconfig: null,
    },
    events: { enabled: false, namespace: null, ratePerMinute: 60, kubeconfig: null },
    injector: {
      listen: '0.0.0.0:8443',
      admin: null,
      tls: { cert: '/etc/ca-proxy/webhook/tls.crt', key: '/etc/ca-proxy/webhook/tls.key' },
      maxRequestBytes: 4 * 1024 * 1024,
      images: { caProxy: `ca-proxy:${PACKAGE_VERSION}`, envoy: 'envoyproxy/envoy:v1.40.0' },
      imagePullPolicy: 'IfNotPresent',
      placement: 'central',
      processorAddress: 'ca-proxy-extproc.ca-proxy.svc:9901',
      envoyClientSecret: 'ca-proxy-envoy-client',
      sidecarConfigMap: 'ca-proxy-sidecar-config',
      sidecarSecret: 'ca-proxy-sidecar',
      proxyUid: 1337,
      proxyPort: 15001,
      readyPort: 15021,
      processorAdminPort: 15020,
      ipv6: false,
      ports: '443',
      excludePorts: '',
      excludeCidrs: '',
      caBundleConfigMap: 'ca-proxy-ca-bundle',
      caBundleKey: 'ca.crt',
      messageTimeoutMs: 1000,
      envoyLogLevel: 'warning',
      envoyBootstrapTemplate: null,
      resources: {
        redirect: { requests: { cpu: '10m', memory: '16Mi' }, limits: { cpu: '100m', memory: '64Mi' } },
        envoy: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
        processor: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '512Mi' } },
      },
    },
  };
}

/**
 * File names of the development PKI inside the `.local/` folder (written by `scripts/dev-pki`,
 * read by `devConfig`). Only the interception CA and the proxy identity have private keys.
 */
export const DEV_PKI_FILES = {
  interceptionCACert: 'interception-ca.crt',
  interceptionCAKey: 'interception-ca.key',
  identityCert: 'proxy-identity.crt',
  identityKey: 'proxy-identity.key',
  /** Trust anchor for the demo servers' chains (and signer of the demo CRL). */
  trustCA: 'demo-ca.crt',
  crl: 'demo-crl.pem',
  workloadCA: 'workload-ca.crt',
} as const;

/** Destinations `--dev` allows although they are not publicly routable: loopback. */
export const DEV_ALLOWED_DESTINATIONS = ['127.0.0.0/8', '::1/128'] as const;

/** Name of the proxy identity in the development configuration. */
export const DEV_IDENTITY_NAME = 'default';

/**
 * The configuration of `ca-proxy run --dev DIR` (`make run`): the defaults plus the
 * development PKI in `dir` (absolute paths). Presents the proxy identity on every
 * CertificateRequest.
 */
export function devConfig(dir: string): Config {
  const at = (file: string): string => path.resolve(dir, file);
  const base = defaultConfig();
  return {
    ...base,
    interceptionCA: { cert: at(DEV_PKI_FILES.interceptionCACert), key: at(DEV_PKI_FILES.interceptionCAKey) },
    // The demo CA, and the system's roots so that `curl … https://a-real-host/` works too.
    trust: { ...base.trust, caFiles: [at(DEV_PKI_FILES.trustCA)], systemRoots: true },
    revocation: { ...base.revocation, crlPaths: [at(DEV_PKI_FILES.crl)] },
    // The demo servers, and anything a developer runs beside the proxy, are on loopback.
    destinations: { allow: [...DEV_ALLOWED_DESTINATIONS], deny: [] },
    identities: [
      { name: DEV_IDENTITY_NAME, cert: at(DEV_PKI_FILES.identityCert), key: at(DEV_PKI_FILES.identityKey) },
    ],
    workloadCA: [at(DEV_PKI_FILES.workloadCA)],
    defaults: { ...base.defaults, identity: DEV_IDENTITY_NAME },
  };
}
