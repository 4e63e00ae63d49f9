/**
 * The injector's answers for the cases of issue 11 (a plain pod, init containers, containers that
 * set the CA variables, opt-out, a namespace-labelled pod, an already injected pod, hostNetwork,
 * both placements, bad annotations, malformed requests). Every patch is applied as the API server
 * applies it (fast-json-patch, each operation validated), every patched pod is validated against
 * the Kubernetes Pod schema (kubernetes-models), and the Envoy bootstrap in the sidecar's args —
 * after kubelet's $(VAR) expansion (test/support/kubelet.ts) — against Envoy's API protos.
 */
import { describe, expect, test } from '@jest/globals';
import assert from 'node:assert/strict';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { admissionReview, applyResponse, injectorSettings, podFixture, responsePatch, stored, validatePod } from '../../support/admission';
import { validateBootstrap, validateMessage } from '../../support/envoy-api';
import { expandedArgs, expand } from '../../support/kubelet';
import { review, ReviewError, type AdmissionResponse } from '../../../internal/k8s/injector/review';
import { CA_BUNDLE_FILE, CA_ENV_VARS } from '../../../internal/k8s/injector/pod';
import { kubeletArg, DESTINATION_PORT_HEADER } from '../../../internal/k8s/injector/bootstrap';
import { DESTINATION_PORT_HEADER as STREAM_PORT_HEADER } from '../../../internal/extproc/stream';
import { parseCidrs, parsePorts } from '../../../internal/k8s/injector/annotations';
import { PACKAGE_VERSION } from '../../../internal/config/defaults';
import type { InjectorConfig } from '../../../internal/config/types';

function answer(pod: unknown, over: Partial<InjectorConfig> = {}, o: Parameters<typeof admissionReview>[1] = {}): AdmissionResponse {
  const req = admissionReview(pod, o);
  const r = review(JSON.stringify(req), injectorSettings(over));
  assert.equal(r.review.apiVersion, 'admission.k8s.io/v1');
  assert.equal(r.review.kind, 'AdmissionReview');
  assert.equal(r.review.response.uid, (req.request as { uid: string }).uid, 'the response names the request uid');
  return r.review.response;
}

/** Injects `pod`, applies the patch, validates the result; returns it as the API server stores it. */
function inject(pod: V1Pod, over: Partial<InjectorConfig> = {}, namespace = 'shop'): { pod: V1Pod; response: AdmissionResponse } {
  const response = answer(pod, over, { namespace });
  assert.equal(response.allowed, true, JSON.stringify(response.status));
  assert.ok(response.patch, 'a patch');
  const patched = applyResponse(pod, response);
  validatePod(patched);
  return { pod: stored(patched, namespace), response };
}

function named(list: V1Container[] | undefined, name: string): V1Container {
  const c = (list ?? []).find((x) => x.name === name);
  assert.ok(c, `container ${name}`);
  return c;
}

/** The Envoy bootstrap as Envoy receives it: the --config-yaml argument after kubelet's expansion. */
function envoyBootstrap(pod: V1Pod): any {
  const envoy = named(pod.spec!.initContainers, 'ca-proxy-envoy');
  const args = expandedArgs(envoy, pod);
  const i = args.indexOf('--config-yaml');
  assert.ok(i >= 0, '--config-yaml in the args');
  return JSON.parse(args[i + 1]!);
}

function egressChains(bootstrap: any): any[] {
  return bootstrap.static_resources.listeners.find((l: { name: string }) => l.name === 'ca_proxy_egress').filter_chains;
}

function headers(chain: any): Record<string, string> {
  return Object.fromEntries(chain.filters[0].typed_config.grpc_service.initial_metadata.map((h: { key: string; value: string }) => [h.key, h.value]));
}

describe('a plain labelled pod (central placement, the default)', () => {
  const original = podFixture({ spec: { securityContext: { runAsUser: 1000, runAsNonRoot: true } } });
  const { pod, response } = inject(original);
  const init = pod.spec!.initContainers!;

  test('the patch applies to the pod as received and leaves it a valid Pod; the original is untouched', () => {
    expect(response.warnings).toBeUndefined();
    expect(original.spec!.initContainers).toBeUndefined();
    expect(pod.metadata!.annotations!['ca-proxy.io/injected']).toBe(PACKAGE_VERSION);
    expect(responsePatch(response)!.every((op) => op.op === 'add')).toBe(true);
  });

  test('redirect first, then Envoy as a native sidecar; the app keeps its place', () => {
    expect(init.map((c) => c.name)).toEqual(['ca-proxy-redirect', 'ca-proxy-envoy']);
    expect(pod.spec!.containers.map((c) => c.name)).toEqual(['app']);
    expect(init[0]!.restartPolicy).toBeUndefined();
    expect(init[1]!.restartPolicy).toBe('Always');
  });

  test('the redirect container: `ca-proxy redirect` with the injector defaults, as root with NET_ADMIN and NET_RAW only', () => {
    const r = init[0]!;
    expect(r.image).toBe('registry.test/ca-proxy:test');
    expect(r.args).toEqual(['redirect', '--proxy-port', '15001', '--proxy-uid', '1337', '--ports', '443']);
    expect(r.securityContext).toMatchObject({ runAsUser: 0, runAsNonRoot: false, privileged: false, allowPrivilegeEscalation: false, capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] } });
  });

  test('Envoy runs as the excluded uid whatever the pod says, read-only, no capabilities, probed on /ready', () => {
    const e = init[1]!;
    expect(pod.spec!.securityContext!.runAsUser).toBe(1000);
    expect(e.securityContext).toMatchObject({ runAsUser: 1337, runAsGroup: 1337, runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    expect(e.readinessProbe!.httpGet).toEqual({ path: '/ready', port: 15021 });
    expect(e.startupProbe!.httpGet).toEqual({ path: '/ready', port: 15021 });
    expect(e.command).toEqual(['envoy']);
  });

  test("the bootstrap, after kubelet's expansion, is a valid Envoy Bootstrap naming this pod, with the 1.40 attributes and the fail-closed filter", () => {
    const b = envoyBootstrap(pod);
    expect(validateBootstrap(b)).toEqual([]);
    expect(b.node.id).toBe('web.shop');
    const chains = egressChains(b);
    expect(chains).toHaveLength(1);
    expect(chains[0].filter_chain_match).toEqual({ destination_port: 443 });
    expect(headers(chains[0])).toEqual({
      'x-ca-proxy-pod-name': 'web',
      'x-ca-proxy-pod-namespace': 'shop',
      'x-ca-proxy-pod-service-account': 'web-sa',
      'x-ca-proxy-destination-port': '443',
    });
    const cfg = chains[0].filters[0].typed_config;
    expect(cfg.failure_mode_allow).toBe(false);
    expect(cfg.connection_attributes).toEqual(['source.address', 'destination.address', 'destination.port', 'connection.requested_server_name']);
    expect(cfg.metadata_options).toEqual({ receiving_namespaces: { untyped: ['ca_proxy'] } });
    expect(b.layered_runtime.layers[0].static_layer['envoy.reloadable_features.connection_close_through_filter_manager']).toBe(true);
  });

  test('central: the processor Service over mTLS, the client certificate through an SDS file projected from an annotation', () => {
    const b = envoyBootstrap(pod);
    const cluster = b.static_resources.clusters.find((c: { name: string }) => c.name === 'ca_proxy_extproc');
    expect(cluster.type).toBe('STRICT_DNS');
    expect(cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address).toEqual({ address: 'ca-proxy-extproc.ca-proxy.svc', port_value: 9901 });
    const tlsCtx = cluster.transport_socket.typed_config;
    expect(tlsCtx.sni).toBe('ca-proxy-extproc.ca-proxy.svc');
    expect(tlsCtx.common_tls_context.combined_validation_context.default_validation_context.match_typed_subject_alt_names).toEqual([{ san_type: 'DNS', matcher: { exact: 'ca-proxy-extproc.ca-proxy.svc' } }]);
    const sdsPath = tlsCtx.common_tls_context.tls_certificate_sds_secret_configs[0].sds_config.path_config_source.path;
    expect(sdsPath).toBe('/etc/ca-proxy/envoy-sds/sds.json');

    const vol = pod.spec!.volumes!.find((v) => v.name === 'ca-proxy-envoy-sds')!;
    const item = vol.downwardAPI!.items![0]!;
    expect(item.path).toBe('sds.json');
    const m = /^metadata\.annotations\['(.+)'\]$/.exec(item.fieldRef!.fieldPath)!;
    const sds = JSON.parse(pod.metadata!.annotations![m[1]!]!);
    expect(validateMessage('envoy.service.discovery.v3.DiscoveryResponse', sds)).toEqual([]);
    const names = sds.resources.map((r: { name: string }) => r.name);
    expect(names).toEqual(['ca_proxy_envoy_client', 'ca_proxy_processor_ca']);
    expect(sds.resources[0].tls_certificate.certificate_chain.filename).toBe('/etc/ca-proxy/envoy-client/tls.crt');
    expect(pod.spec!.volumes!.find((v) => v.name === 'ca-proxy-envoy-client')!.secret!.secretName).toBe('ca-proxy-envoy-client');
    const envoy = named(pod.spec!.initContainers, 'ca-proxy-envoy');
    expect(envoy.volumeMounts!.map((v) => v.mountPath).sort()).toEqual(['/etc/ca-proxy/envoy-client', '/etc/ca-proxy/envoy-sds', '/var/run/ca-proxy-envoy']);
  });

  test('the app container gets the CA bundle, read-only, and the four variables', () => {
    const app = pod.spec!.containers[0]!;
    expect(app.volumeMounts).toEqual([{ name: 'ca-proxy-ca-bundle', mountPath: '/etc/ca-proxy/ca-bundle', readOnly: true }]);
    expect(app.env).toEqual(CA_ENV_VARS.map((name) => ({ name, value: CA_BUNDLE_FILE })));
    const bundle = pod.spec!.volumes!.find((v) => v.name === 'ca-proxy-ca-bundle')!;
    expect(bundle.configMap).toEqual({ name: 'ca-proxy-ca-bundle', items: [{ key: 'ca.crt', path: 'ca.crt' }], defaultMode: 0o444 });
    // Our own containers do not get it.
    expect(pod.spec!.initContainers!.every((c) => !(c.env ?? []).some((e) => e.name === 'SSL_CERT_FILE'))).toBe(true);
  });
});

test('a pod with init containers: ours come first (so theirs run behind the filter), and theirs get the CA bundle too', () => {
  const original = podFixture({
    spec: {
      initContainers: [{ name: 'migrate', image: 'registry.test/migrate:1', env: [{ name: 'DB', value: 'x' }] }, { name: 'istio-like', image: 'i', restartPolicy: 'Always' }],
      containers: [{ name: 'app', image: 'a', volumeMounts: [{ name: 'data', mountPath: '/data' }] }, { name: 'worker', image: 'w' }],
      volumes: [{ name: 'data', emptyDir: {} }],
    },
  });
  const { pod } = inject(original);
  expect(pod.spec!.initContainers!.map((c) => c.name)).toEqual(['ca-proxy-redirect', 'ca-proxy-envoy', 'migrate', 'istio-like']);
  const migrate = named(pod.spec!.initContainers, 'migrate');
  expect(migrate.env!.map((e) => e.name)).toEqual(['DB', ...CA_ENV_VARS]);
  expect(migrate.volumeMounts).toEqual([{ name: 'ca-proxy-ca-bundle', mountPath: '/etc/ca-proxy/ca-bundle', readOnly: true }]);
  expect(named(pod.spec!.containers, 'app').volumeMounts!.map((m) => m.name)).toEqual(['data', 'ca-proxy-ca-bundle']);
  expect(named(pod.spec!.containers, 'worker').env!.map((e) => e.name)).toEqual([...CA_ENV_VARS]);
  expect(pod.spec!.volumes!.map((v) => v.name)).toEqual(['data', 'ca-proxy-ca-bundle', 'ca-proxy-envoy-run', 'ca-proxy-envoy-client', 'ca-proxy-envoy-sds']);
});

test('containers that already set CA variables keep them, and an annotation says which', () => {
  const original = podFixture({
    spec: {
      initContainers: [{ name: 'fetch', image: 'f', env: [{ name: 'CURL_CA_BUNDLE', value: '/mine/curl.pem' }] }],
      containers: [
        { name: 'app', image: 'a', env: [{ name: 'SSL_CERT_FILE', value: '/etc/ssl/mine.pem' }, { name: 'NODE_EXTRA_CA_CERTS', valueFrom: { configMapKeyRef: { name: 'c', key: 'k' } } }] },
        { name: 'other', image: 'o' },
      ],
    },
  });
  const { pod } = inject(original);
  const app = named(pod.spec!.containers, 'app');
  expect(app.env).toEqual([
    { name: 'SSL_CERT_FILE', value: '/etc/ssl/mine.pem' },
    { name: 'NODE_EXTRA_CA_CERTS', valueFrom: { configMapKeyRef: { name: 'c', key: 'k' } } },
    { name: 'REQUESTS_CA_BUNDLE', value: CA_BUNDLE_FILE },
    { name: 'CURL_CA_BUNDLE', value: CA_BUNDLE_FILE },
  ]);
  expect(named(pod.spec!.initContainers, 'fetch').env!.filter((e) => e.name === 'CURL_CA_BUNDLE')).toEqual([{ name: 'CURL_CA_BUNDLE', value: '/mine/curl.pem' }]);
  expect(named(pod.spec!.containers, 'other').env!.map((e) => e.value)).toEqual(CA_ENV_VARS.map(() => CA_BUNDLE_FILE));
  expect(pod.metadata!.annotations!['ca-proxy.io/kept-env']).toBe('fetch=CURL_CA_BUNDLE;app=SSL_CERT_FILE,NODE_EXTRA_CA_CERTS');
});

test('an opted-out pod (label "false") is admitted unchanged, without a warning', () => {
  const r = answer(podFixture({ metadata: { name: 'web', labels: { 'ca-proxy.io/inject': 'false' } } }));
  expect(r).toEqual({ uid: r.uid, allowed: true });
});

test('a pod of a labelled namespace (no pod label, created under generateName with no namespace of its own) is injected and named by the Downward API', () => {
  const original = podFixture({ metadata: { generateName: 'web-7d4b9-', labels: { app: 'web' } } });
  delete (original.metadata as { name?: string }).name;
  delete (original.metadata as { namespace?: string }).namespace;
  const { pod } = inject(original, {}, 'payments');
  const b = envoyBootstrap(pod);
  expect(headers(egressChains(b)[0])).toMatchObject({ 'x-ca-proxy-pod-name': 'web-7d4b9-x7k2q', 'x-ca-proxy-pod-namespace': 'payments' });
  expect(validateBootstrap(b)).toEqual([]);
});

test('an already injected pod is a no-op: injecting the result again changes nothing', () => {
  const first = answer(podFixture());
  const once = applyResponse(podFixture(), first);
  const again = answer(once);
  expect(again).toEqual({ uid: again.uid, allowed: true });
  // A stale annotation alone (containers gone) does not disable the filter.
  const copied = podFixture({ metadata: { name: 'web', labels: { 'ca-proxy.io/inject': 'true' }, annotations: { 'ca-proxy.io/injected': '0.0.1', 'team': 'x' } } });
  const { pod } = inject(copied);
  expect(pod.metadata!.annotations).toMatchObject({ 'ca-proxy.io/injected': PACKAGE_VERSION, team: 'x' });
  expect(pod.spec!.initContainers!.map((c) => c.name)).toEqual(['ca-proxy-redirect', 'ca-proxy-envoy']);
});

describe('pods that cannot be patched safely are admitted unchanged with a warning', () => {
  test.each([
    ['hostNetwork', podFixture({ spec: { hostNetwork: true } }), /hostNetwork/],
    ['a Windows pod', podFixture({ spec: { os: { name: 'windows' } } }), /Windows/],
    ['a container named like ours', podFixture({ spec: { containers: [{ name: 'ca-proxy-envoy', image: 'x' }] } }), /container named ca-proxy-envoy/],
    ['a volume named like ours', podFixture({ spec: { volumes: [{ name: 'ca-proxy-ca-bundle', emptyDir: {} }] } }), /volume named ca-proxy-ca-bundle/],
    ['a mount where the bundle goes', podFixture({ spec: { containers: [{ name: 'app', image: 'a', volumeMounts: [{ name: 'v', mountPath: '/etc/ca-proxy/ca-bundle/' }] }], volumes: [{ name: 'v', emptyDir: {} }] } }), /already mounts/],
  ])('%s', (_what, pod, why) => {
    const r = answer(pod);
    expect(r.allowed).toBe(true);
    expect(r.patch).toBeUndefined();
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings![0]).toMatch(/^ca-proxy: pod shop\/web admitted WITHOUT the egress filter: /);
    expect(r.warnings![0]).toMatch(why);
  });
});

describe('placement sidecar', () => {
  const { pod } = inject(podFixture(), { placement: 'sidecar' });

  test('adds serve-extproc after Envoy, on a Unix socket in an emptyDir only the two mount', () => {
    expect(pod.spec!.initContainers!.map((c) => c.name)).toEqual(['ca-proxy-redirect', 'ca-proxy-envoy', 'ca-proxy-extproc']);
    const p = named(pod.spec!.initContainers, 'ca-proxy-extproc');
    expect(p.restartPolicy).toBe('Always');
    expect(p.args).toEqual(['serve-extproc', '--config', '/etc/ca-proxy/config/config.yaml', '--listen', 'unix:/var/run/ca-proxy/extproc.sock', '--admin', '0.0.0.0:15020']);
    expect(p.securityContext).toMatchObject({ runAsUser: 1337, runAsNonRoot: true, readOnlyRootFilesystem: true });
    expect(p.readinessProbe!.httpGet).toEqual({ path: '/readyz', port: 15020 });
    const mountsOf = (c: V1Container) => (c.volumeMounts ?? []).filter((m) => m.name === 'ca-proxy-run').map((m) => m.mountPath);
    expect(mountsOf(p)).toEqual(['/var/run/ca-proxy']);
    expect(mountsOf(named(pod.spec!.initContainers, 'ca-proxy-envoy'))).toEqual(['/var/run/ca-proxy']);
    expect(mountsOf(named(pod.spec!.containers, 'app'))).toEqual([]);
    expect(pod.spec!.volumes!.find((v) => v.name === 'ca-proxy-config')!.configMap!.name).toBe('ca-proxy-sidecar-config');
    expect(pod.spec!.volumes!.find((v) => v.name === 'ca-proxy-secrets')!.secret!.secretName).toBe('ca-proxy-sidecar');
    expect(pod.metadata!.annotations!['ca-proxy.io/envoy-sds']).toBeUndefined();
  });

  test('the bootstrap points the ext_proc cluster at that socket, and validates', () => {
    const b = envoyBootstrap(pod);
    expect(validateBootstrap(b)).toEqual([]);
    const cluster = b.static_resources.clusters.find((c: { name: string }) => c.name === 'ca_proxy_extproc');
    expect(cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address).toEqual({ pipe: { path: '/var/run/ca-proxy/extproc.sock' } });
    expect(cluster.transport_socket).toBeUndefined();
  });
});

describe('ports and exclusions from the annotations', () => {
  test('several ports: one filter chain and one port header each; exclusions passed to redirect, normalised', () => {
    const { pod } = inject(
      podFixture({ metadata: { name: 'web', labels: { 'ca-proxy.io/inject': 'true' }, annotations: { 'ca-proxy.io/ports': '8443, 443,443', 'ca-proxy.io/exclude-ports': '25', 'ca-proxy.io/exclude-cidrs': '10.0.0.0/8, FD00:0:0::/8,192.0.2.7' } } }),
    );
    const r = named(pod.spec!.initContainers, 'ca-proxy-redirect');
    expect(r.args).toEqual(['redirect', '--proxy-port', '15001', '--proxy-uid', '1337', '--ports', '443,8443', '--exclude-ports', '25', '--exclude-cidrs', '10.0.0.0/8,fd00::/8,192.0.2.7/32']);
    const chains = egressChains(envoyBootstrap(pod));
    expect(chains.map((c: any) => [c.filter_chain_match.destination_port, headers(c)['x-ca-proxy-destination-port']])).toEqual([
      [443, '443'],
      [8443, '8443'],
    ]);
  });

  test('"*": every port, one chain matching everything and no port header (Envoy 1.40 sends destination.port)', () => {
    const { pod } = inject(podFixture({ metadata: { name: 'web', labels: { 'ca-proxy.io/inject': 'true' }, annotations: { 'ca-proxy.io/ports': '*' } } }), { ipv6: true });
    expect(named(pod.spec!.initContainers, 'ca-proxy-redirect').args).toContain('*');
    const b = envoyBootstrap(pod);
    expect(validateBootstrap(b)).toEqual([]);
    const chains = egressChains(b);
    expect(chains).toHaveLength(1);
    expect(chains[0].filter_chain_match).toBeUndefined();
    expect(headers(chains[0])[DESTINATION_PORT_HEADER]).toBeUndefined();
    expect(b.static_resources.listeners[0].additional_addresses).toEqual([{ address: { socket_address: { address: '::', port_value: 15001 } } }]);
  });

  test.each([
    ['ca-proxy.io/ports', '443,https', /annotation ca-proxy\.io\/ports: "https" is not a port/],
    ['ca-proxy.io/ports', '70000', /not a port 1-65535/],
    ['ca-proxy.io/ports', '', /no port given/],
    ['ca-proxy.io/exclude-ports', '*', /annotation ca-proxy\.io\/exclude-ports: "\*" is not a port/],
    ['ca-proxy.io/exclude-ports', '443', /443 also in injector default for ca-proxy\.io\/ports/],
    ['ca-proxy.io/exclude-cidrs', '10.0.0.0/33', /"10\.0\.0\.0\/33" is not an IPv4 or IPv6 CIDR/],
    ['ca-proxy.io/exclude-cidrs', '10.1.2.3/8', /host bits set \(the network is 10\.0\.0\.0\/8\)/],
    ['ca-proxy.io/exclude-cidrs', 'example.com', /not an IPv4 or IPv6 CIDR/],
  ])('a bad %s (%j) denies the pod with a message naming it', (key, value, message) => {
    const r = answer(podFixture({ metadata: { name: 'web', labels: { 'ca-proxy.io/inject': 'true' }, annotations: { [key]: value } } }));
    expect(r.allowed).toBe(false);
    expect(r.patch).toBeUndefined();
    expect(r.status!.code).toBe(400);
    expect(r.status!.message).toMatch(/^ca-proxy: pod shop\/web: /);
    expect(r.status!.message).toMatch(message);
  });

  test('a container running as the proxy uid (pod-level or its own) denies the pod: its traffic would bypass the redirect', () => {
    const pod = podFixture({ spec: { securityContext: { runAsUser: 1337 }, containers: [{ name: 'app', image: 'a' }, { name: 'ok', image: 'b', securityContext: { runAsUser: 1000 } }] } });
    const r = answer(pod);
    expect(r.allowed).toBe(false);
    expect(r.status!.message).toMatch(/container app runs as uid 1337, the proxy's uid/);
    expect(answer(podFixture({ spec: { securityContext: { runAsUser: 1337 }, containers: [{ name: 'app', image: 'a', securityContext: { runAsUser: 1000 } }] } })).allowed).toBe(true);
  });

  test('a label value other than "true" or "false" denies the pod', () => {
    const r = answer(podFixture({ metadata: { name: 'web', labels: { 'ca-proxy.io/inject': 'False' } } }));
    expect(r.allowed).toBe(false);
    expect(r.status!.message).toMatch(/must be "true" or "false" \(got "False"\)/);
  });
});

describe('requests that are not a Pod CREATE, or not an AdmissionReview', () => {
  test.each([
    ['not JSON', '{"apiVersion":', /body is not JSON/],
    ['a JSON list', '[]', /not a JSON object/],
    ['another kind', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'ConversionReview', request: { uid: 'u' } }), /kind is "ConversionReview"/],
    ['v1beta1', JSON.stringify({ ...admissionReview(podFixture()), apiVersion: 'admission.k8s.io/v1beta1' }), /speaks admission\.k8s\.io\/v1 only/],
    ['no request', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }), /has no request/],
    ['no uid', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { kind: {} } }), /uid is missing/],
  ])('%s: a ReviewError (HTTP 400)', (_what, body, message) => {
    expect(() => review(body, injectorSettings())).toThrow(ReviewError);
    expect(() => review(body, injectorSettings())).toThrow(message);
  });

  test('a Pod CREATE without an object, or with one that is no Pod, is denied (it would start unfiltered)', () => {
    for (const [object, why] of [
      [undefined, /request\.object is missing/],
      [{ metadata: { name: 'x' } }, /spec is missing/],
      [{ metadata: { labels: { a: 1 } }, spec: { containers: [{ name: 'a' }] } }, /metadata\.labels is not a map of strings/],
      [{ spec: { containers: [{ name: 'a', env: 'x' }] } }, /containers\[0\]\.env is not a list/],
      [{ spec: { containers: [] } }, /containers is missing or empty/],
    ] as const) {
      const r = answer(object);
      expect(r.allowed).toBe(false);
      expect(r.status!.message).toMatch(/^ca-proxy injector: cannot read the Pod: /);
      expect(r.status!.message).toMatch(why);
    }
  });

  test('another kind of object is allowed with a warning; a Pod UPDATE or DELETE is allowed silently', () => {
    const cm = answer({ metadata: { name: 'c' } }, {}, { kind: { group: '', version: 'v1', kind: 'ConfigMap' } });
    expect(cm.allowed).toBe(true);
    expect(cm.warnings![0]).toMatch(/sent a core\/v1 ConfigMap, which it does not mutate/);
    for (const operation of ['UPDATE', 'DELETE', 'CONNECT']) expect(answer(podFixture(), {}, { operation })).toEqual({ uid: expect.any(String), allowed: true });
  });
});

describe('pieces', () => {
  test("kubeletArg: after kubelet's expansion only the pod references change; every other $ survives", () => {
    const value = { a: 'cost $5, $$ and $(HOME) and $(CA_PROXY_POD_NAME)', b: '$(CA_PROXY_POD_NAMESPACE)$', c: '$(' };
    const env: Record<string, string> = { HOME: '/root', CA_PROXY_POD_NAME: 'p', CA_PROXY_POD_NAMESPACE: 'n' };
    const out = JSON.parse(expand(kubeletArg(value), (n) => env[n]));
    expect(out).toEqual({ a: 'cost $5, $$ and $(HOME) and p', b: 'n$', c: '$(' });
  });

  test("the port header is the one serve-extproc reads (internal/extproc/stream.ts)", () => {
    expect(DESTINATION_PORT_HEADER).toBe(STREAM_PORT_HEADER);
  });

  test('port and CIDR lists', () => {
    expect(parsePorts(' 443 ,80,443', 'x', true)).toEqual([80, 443]);
    expect(parsePorts('*', 'x', true)).toBe('*');
    expect(() => parsePorts('0', 'x', false)).toThrow(/not a port/);
    expect(parseCidrs('::/0,0.0.0.0/0, 2001:DB8::/32, ::ffff:10.0.0.0/104, 2001:db8:0:0:1:0:0:1', 'x')).toEqual(['::/0', '0.0.0.0/0', '2001:db8::/32', '::ffff:a00:0/104', '2001:db8::1:0:0:1/128']);
    expect(() => parseCidrs('2001:db8::1/64', 'x')).toThrow(/host bits set \(the network is 2001:db8::\/64\)/);
    expect(() => parseCidrs('1.2.3.4/', 'x')).toThrow(/not an IPv4 or IPv6 CIDR/);
  });
});
