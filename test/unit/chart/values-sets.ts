/**
 * The value sets the chart tests render (test/unit/chart/*.test.ts): the defaults and one set per
 * deployment shape a user would choose. Certificates are real (openssl, test/support/pki.ts); the
 * chart only ever sees their public parts.
 */
import type { Pki } from '../../support/pki';

export const NAMESPACE = 'ca-proxy';
export const INJECTED = ['team-a', 'team-b'];

/** Settings every non-default set shares: trust, identities, injection namespaces. */
export function baseValues(pki: Pki): Record<string, unknown> {
  return {
    interceptionCA: { secretName: 'ca-proxy-interception-ca', certificate: pki.root.certPem },
    trust: { caCertificates: pki.root.certPem },
    revocation: { crlSigners: pki.intermediate.certPem },
    identities: [{ name: 'corp', secretName: 'corp-client-tls' }],
    injection: { namespaces: INJECTED, caBundleExtra: pki.intermediate.certPem },
    defaults: { identity: 'corp' },
    destinations: { allow: ['10.20.0.0/16'], deny: [] },
    rules: [
      { name: 'internal-apis', match: { sni: '**.corp.example' }, action: 'passthrough' },
      { name: 'mirrors', match: { sni: '*.mirror.example' }, identity: null, revocation: 'softFail', leafOnly: true },
    ],
  };
}

const publisher = { enabled: true, sources: { urls: ['http://pki.example.com/issuing.crl'] } };

/** name → values (merged over values.yaml by helm). */
export function valueSets(pki: Pki): Record<string, Record<string, unknown>> {
  const base = baseValues(pki);
  return {
    default: {},
    central: { ...base, publisher, processor: { autoscaling: { enabled: true } }, limits: { handshakeTimeoutMs: 5000 }, log: { level: 'debug' } },
    sidecar: { ...base, placement: 'sidecar', publisher },
    certManager: { ...base, certManager: { enabled: true } },
    certManagerIssuer: { ...base, certManager: { enabled: true, issuerRef: { kind: 'ClusterIssuer', name: 'corp-ca', group: 'cert-manager.io' } } },
    monitoring: {
      ...base,
      publisher,
      monitoring: { serviceMonitor: { enabled: true, labels: { release: 'prometheus' } }, prometheusRule: { enabled: true }, dashboard: { enabled: true } },
    },
    podMonitor: { ...base, publisher, monitoring: { podMonitor: { enabled: true } } },
    networkPolicy: {
      ...base,
      publisher,
      networkPolicy: { enabled: true, kubeAPIServer: { cidrs: ['10.96.0.1/32'] }, metricsFrom: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }] },
    },
    helmTest: { ...base, tests: { target: 'api.partner.example:443', expect: 'deny' } },
  };
}
