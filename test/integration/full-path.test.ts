/**
 * The full sidecar path in real Linux network namespaces (issue 11, second acceptance bullet):
 *
 *   pod netns:  curl (uid 1000) → nat OUTPUT rules of `ca-proxy redirect` → the Envoy stand-in
 *               on 0.0.0.0:15001 (uid 1337, exempt from the rules) ─┐ unix socket
 *   this netns: ca-proxy's ext_proc service (serve-extproc) ←────────┘ → the fake API server
 *   ext netns:  `openssl s_server -Verify 1` on 198.18.0.1:8443 (good) and :9443 (revoked)
 *
 * Real: the namespaces, veth, iptables rules (installed by the built `ca-proxy redirect`), the
 * kernel's REDIRECT and SO_ORIGINAL_DST, curl, openssl, ca-proxy's engine and gRPC service.
 * Stand-ins: Envoy (test/support/envoy.ts, run as the sidecar by sidecar.ts: ORIGINAL_DST
 * upstream, Envoy 1.40 connection_attributes, the pod's identity as initial_metadata as the
 * injected bootstrap sets them) and the Kubernetes API server (kube-apiserver.ts). serve-extproc
 * runs in-process through the same composition root as the CLI (startProcessor), reached over a
 * Unix socket as with `placement: sidecar`; it lives in the test's own namespace so that it
 * reaches the fake API server on loopback.
 */
import { afterAll, beforeAll, test } from '@jest/globals';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ADDR, NetnsPair, netnsPrerequisites, netnsSuite } from '../support/netns';
import { startSidecar, type Sidecar } from '../support/sidecar';
import { startProcessor, type Processor } from '../support/envoy';
import { startSServer, type SServer } from '../support/s-server';
import { makeWorld, worldConfig, type World } from '../support/world';
import { startFakeKubeApiServer, writeKubeconfig, type FakeKubeApiServer } from '../support/kube-apiserver';
import { until } from '../support/until';
import { POD_HEADERS } from '../../internal/extproc/connection-info';

const PROXY_PORT = 15001;
const GOOD_PORT = 8443;
const REVOKED_PORT = 9443;
const WORKLOAD_UID = 1000;
const POD = { name: 'web-5f7c9-x2k4q', namespace: 'shop', serviceAccount: 'web', uid: 'uid-web-1' };

netnsSuite('full path: pod → redirect → sidecar stand-in → serve-extproc → s_server', netnsPrerequisites(['iptables', 'curl', 'openssl']), () => {
  let w: World;
  let pair: NetnsPair | undefined;
  let api: FakeKubeApiServer | undefined;
  let p: Processor | undefined;
  let sidecar: Sidecar;
  let good: SServer;
  let revoked: SServer;
  let shared: string;
  let caFile: string;
  /** The set-up, awaited by afterAll so that nothing it starts outlives the clean-up (each step has its own deadline). */
  let setup: Promise<void> | undefined;
  /** The set-up step under way, named when the hook times out. */
  let stage = 'PKI';
  let setupDone = false;

  beforeAll(() => (setup = setUp()), 50_000);

  async function setUp(): Promise<void> {
    w = makeWorld();
    // What other uids need: the folder of the processor's socket (the proxy uid) and the CA bundle (the workload).
    shared = fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-full-path-'));
    fs.chmodSync(shared, 0o755);
    caFile = path.join(shared, 'interception-ca.crt');
    fs.copyFileSync(w.interceptionCA.certPath, caFile);
    fs.chmodSync(caFile, 0o644);

    stage = 'namespaces';
    pair = await NetnsPair.create('fullpath');
    stage = 'ca-proxy redirect';
    const redirect = await pair.caProxy(pair.pod, ['redirect', '--ports', `${GOOD_PORT},${REVOKED_PORT}`, '--proxy-port', String(PROXY_PORT), '--proxy-uid', '1337'], { timeoutMs: 20_000 });
    assert.equal(redirect.code, 0, `ca-proxy redirect failed: ${redirect.stderr}`);

    stage = 'fake API server and serve-extproc';
    api = await startFakeKubeApiServer();
    api.put('pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: POD.name, namespace: POD.namespace, uid: POD.uid } });
    const config = worldConfig(w);
    config.destinations = { allow: ['198.18.0.0/15'], deny: [] };
    config.events = { enabled: true, namespace: null, ratePerMinute: 600, kubeconfig: writeKubeconfig(path.join(w.dir, 'kubeconfig-events'), api.url, 'default') };
    const socket = path.join(shared, 'extproc.sock');
    p = await startProcessor(config, { listen: `unix:${socket}` }); // mode 0666, as for an Envoy of another uid

    stage = 'sidecar stand-in';
    sidecar = await startSidecar(pair, {
      port: PROXY_PORT,
      target: `unix:${socket}`,
      connectionAttributes: true,
      initialMetadata: { [POD_HEADERS.name]: POD.name, [POD_HEADERS.namespace]: POD.namespace, [POD_HEADERS.serviceAccount]: POD.serviceAccount },
      messageTimeoutMs: 2000,
    });
    stage = 's_server';
    const prefix = ['ip', 'netns', 'exec', pair.external];
    const common = { chain: w.chainPath, clientCA: w.pki.cas.get('client-ca')!.certPath, version: 'tls1_3' as const, prefix };
    good = await startSServer({ ...common, cert: w.good.certPath, key: w.good.keyPath, port: GOOD_PORT });
    revoked = await startSServer({ ...common, cert: w.revoked.certPath, key: w.revoked.keyPath, port: REVOKED_PORT });
    setupDone = true;
  }

  afterAll(async () => {
    if (!setupDone) process.stderr.write(`full-path: set-up did not finish (at: ${stage})\n`);
    await setup?.catch(() => undefined);
    // Each step runs even when one before it failed: the namespaces must go whatever happened.
    const steps = [() => good?.stop(), () => revoked?.stop(), () => sidecar?.stop(), () => p?.stop(), () => api?.stop(), () => pair?.destroy(), () => fs.rmSync(shared, { recursive: true, force: true }), () => w?.cleanup()];
    for (const step of steps) await Promise.resolve().then(step).catch((e: Error) => process.stderr.write(`full-path cleanup: ${e.message}\n`));
  });

  /** The workload: curl in the pod as an ordinary uid, dialling the external host by name. */
  function curl(port: number) {
    return pair!.exec(pair!.pod, ['curl', '-sS', '--max-time', '10', '--resolve', `localhost:${port}:${ADDR.extV4}`, '--cacert', caFile, `https://localhost:${port}/`], { uid: WORKLOAD_UID, env: { ...process.env, HOME: shared } });
  }

  test('a good server: s_server sees the proxy identity; the decision names the pod and the real destination port', async () => {
    const res = await curl(GOOD_PORT);
    const d = await p!.nextDecision();
    assert.equal(res.code, 0, `curl failed: ${res.stderr}`);
    assert.match(res.stdout, /s_server/, 'the s_server -www page reached the workload');
    const seen = await good.waitFor(/depth=0/);
    assert.match(seen, /depth=0 [^\n]*CN = proxy-identity\n/, 'the client certificate s_server verified is the proxy identity');
    assert.doesNotMatch(seen, /CN = workload/);
    assert.equal(d.outcome, 'allow');
    assert.deepEqual(d.substitution, { requested: true, identity: 'upstream', workloadCertificate: false });
    assert.deepEqual({ pod: d.source.pod, namespace: d.source.namespace, serviceAccount: d.source.serviceAccount, address: d.source.address }, { pod: POD.name, namespace: POD.namespace, serviceAccount: POD.serviceAccount, address: ADDR.podV4 });
    assert.deepEqual({ address: d.destination.address, port: d.destination.port, sni: d.destination.sni }, { address: ADDR.extV4, port: GOOD_PORT, sni: 'localhost' });
    const c = await sidecar.ended(1);
    assert.deepEqual(c.destination, { address: ADDR.extV4, port: GOOD_PORT }, 'the stand-in dialled the original destination');
    assert.equal(c.failure, null);
    sidecar.assertClean();
  });

  test('a revoked server: denied with certificate_revoked, and a Warning Event on the pod', async () => {
    const res = await curl(REVOKED_PORT);
    const d = await p!.nextDecision();
    assert.notEqual(res.code, 0, 'curl must fail: the connection is denied');
    assert.match(res.stderr, /certificate revoked|alert number 44/i, `the workload sees the certificate_revoked alert: ${res.stderr}`);
    const out = await revoked.waitFor(/certificate_revoked|certificate revoked/i);
    assert.doesNotMatch(out, /depth=0|GET \//, 'no client certificate and no request reached the revoked server');
    assert.equal(d.outcome, 'deny');
    assert.equal(d.reason, 'certificate_revoked');
    assert.equal(d.source.pod, POD.name);
    assert.equal(d.destination.port, REVOKED_PORT);
    await until(() => api!.listObjects('events', POD.namespace).some((ev) => (ev as { reason?: string }).reason === 'CertificateRevoked'), 'a CertificateRevoked Event in namespace shop');
    const ev = api!.listObjects('events', POD.namespace).find((x) => (x as { reason?: string }).reason === 'CertificateRevoked') as unknown as { type: string; message: string; involvedObject: { kind: string; name: string; namespace: string; uid?: string } };
    assert.equal(ev.type, 'Warning');
    assert.deepEqual({ kind: ev.involvedObject.kind, name: ev.involvedObject.name, namespace: ev.involvedObject.namespace, uid: ev.involvedObject.uid }, { kind: 'Pod', name: POD.name, namespace: POD.namespace, uid: POD.uid });
    assert.match(ev.message, new RegExp(`:${REVOKED_PORT}\\b`), 'the message names the real destination port');
    const c = await sidecar.ended(2);
    assert.deepEqual(c.destination, { address: ADDR.extV4, port: REVOKED_PORT });
    assert.equal(c.metadata.ca_proxy?.reason, 'certificate_revoked');
    assert.notEqual(c.closedBy, 'failure', `closed by ${c.closedBy}: ${c.failure}`);
    sidecar.assertClean();
  });

  test('a connection dialled straight at the sidecar (not redirected) has no original destination: closed, never proxied', async () => {
    const before = sidecar.connections.length;
    const [r] = await pair!.connect(pair!.pod, [{ host: '127.0.0.1', port: PROXY_PORT }], { uid: WORKLOAD_UID });
    assert.ok(r!.error !== undefined || (r!.said as unknown) === '', `closed without a byte: ${JSON.stringify(r)}`);
    const c = await sidecar.ended(before + 1);
    assert.equal(c.closedBy, 'failure');
    assert.match(c.failure ?? '', /^no original destination: /);
    assert.equal(c.destination, null);
    assert.equal(c.requests.read, 0, 'no ext_proc stream traffic for it');
  });
});
