/**
 * What serve-extproc learns from the stream, and how its streams end (issue 11 items 3 and 4),
 * through the Envoy stand-in (test/support/envoy.ts) with curl as the workload and
 * `openssl s_server` as the external server:
 * - decisions name the pod (initial metadata) and the connection (Envoy 1.40 attributes), rules
 *   match the attribute port, malformed attributes fall back to the headers, then `defaultPort`;
 * - a denial becomes a Warning Event on that pod in the fake API server;
 * - `close_stream_to_ext_proc_server` after a passthrough / inspect allow;
 * - the stand-in itself: an OK end while the connection is open bypasses the rest and fails
 *   `assertClean()`; an OK end after CLOSE does not;
 * - shutdown ends open streams with UNAVAILABLE.
 */
import { describe, test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { makeWorld, worldConfig, runCmd, type World } from '../support/world';
import { startSServer, type SServer } from '../support/s-server';
import { EnvoyStandIn, startProcessor, type StandInOptions, type Processor } from '../support/envoy';
import { startFakeKubeApiServer, writeKubeconfig, type FakeKubeApiServer } from '../support/kube-apiserver';
import { until } from '../support/until';
import { afterThis } from '../support/cleanup';
import { loadProtos, type ProcessingRequest, type ProcessingResponse } from '../../internal/extproc/protos';
import { POD_HEADERS, DESTINATION_PORT_HEADER } from '../../internal/extproc/connection-info';

let w: World;
beforeAll(() => {
  w = makeWorld();
});
afterAll(() => w.cleanup());

const POD = { [POD_HEADERS.name]: 'web-5f7c9-x2k4q', [POD_HEADERS.namespace]: 'shop', [POD_HEADERS.serviceAccount]: 'web' };

async function server(leaf = w.good, extra: Partial<Parameters<typeof startSServer>[0]> = {}): Promise<SServer> {
  const s = await startSServer({ cert: leaf.certPath, key: leaf.keyPath, chain: w.chainPath, clientCA: w.pki.cas.get('client-ca')!.certPath, version: 'tls1_3', ...extra });
  afterThis(() => s.stop());
  return s;
}

async function standIn(p: Processor, s: SServer | { port: number }, extra: Partial<StandInOptions> = {}): Promise<EnvoyStandIn> {
  const e = await EnvoyStandIn.start({ target: p.grpc.address, upstream: { host: '127.0.0.1', port: s.port }, ...extra });
  afterThis(() => e.close());
  return e;
}

/** The workload: curl dialling localhost:443, redirected to the stand-in. */
function curl(e: EnvoyStandIn, ca = w.interceptionCA.certPath, extra: string[] = []) {
  return runCmd('curl', ['-sS', '--max-time', '10', '--connect-to', `localhost:443:127.0.0.1:${e.port}`, '--cacert', ca, ...extra, 'https://localhost/']);
}

describe('decisions name their pod and the real destination', () => {
  let p: Processor;
  let api: FakeKubeApiServer;
  beforeAll(async () => {
    api = await startFakeKubeApiServer();
    api.put('pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: POD[POD_HEADERS.name], namespace: 'shop', uid: 'uid-web-1' } });
    const config = worldConfig(w, { rules: [{ name: 'no-8443', match: { port: 8443 }, action: 'deny' }] });
    config.events = { enabled: true, namespace: null, ratePerMinute: 600, kubeconfig: writeKubeconfig(path.join(w.dir, 'kubeconfig-events'), api.url, 'default') };
    p = await startProcessor(config, { closeBackstopMs: 2000 });
  });
  afterAll(async () => {
    await p.stop();
    await api.stop();
  });

  test('pod, namespace and service account from the initial metadata; addresses, port and SNI from the attributes', async () => {
    const s = await server();
    const e = await standIn(p, s, { initialMetadata: POD, connectionAttributes: true });
    const res = await curl(e);
    const d = await p.nextDecision();
    assert.equal(res.code, 0, `curl failed: ${res.stderr}`);
    assert.equal(d.outcome, 'allow');
    assert.deepEqual({ pod: d.source.pod, namespace: d.source.namespace, serviceAccount: d.source.serviceAccount }, { pod: 'web-5f7c9-x2k4q', namespace: 'shop', serviceAccount: 'web' });
    assert.equal(d.source.address, '127.0.0.1');
    assert.ok(Number.isInteger(d.source.port) && d.source.port! > 0, `source port ${d.source.port}`);
    assert.deepEqual({ address: d.destination.address, port: d.destination.port, sni: d.destination.sni }, { address: '127.0.0.1', port: s.port, sni: 'localhost' });
    e.assertClean();
  });

  test('a rule on port 8443 matches the attribute port, not defaultPort (443)', async () => {
    const s = await server();
    const e = await standIn(p, s, { initialMetadata: POD, connectionAttributes: { 'destination.port': 8443 } });
    const res = await curl(e);
    const d = await p.nextDecision();
    assert.notEqual(res.code, 0, 'curl must fail: the connection is denied');
    assert.equal(d.destination.port, 8443);
    assert.equal(d.rule, 'no-8443');
    assert.equal(d.reason, 'policy_deny');
    await e.connections[0]!.done;
    assert.equal(e.connections[0]!.closedBy, 'CLOSE');
    e.assertClean();
    // The same connection without attributes: the default port, and the rule does not apply.
    const plain = await standIn(p, s, { initialMetadata: POD });
    const ok = await curl(plain);
    const d2 = await p.nextDecision();
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(d2.destination.port, 443);
    assert.equal(d2.rule, 'default');
    plain.assertClean();
  });

  test('malformed attributes are ignored: the header port applies, else defaultPort; the stream carries on', async () => {
    const s = await server();
    const junk = { 'destination.port': 'eighty', 'destination.address': 'not an address', 'source.address': 7, 'connection.requested_server_name': '\u0000evil' };
    const viaHeader = await standIn(p, s, { initialMetadata: { ...POD, [DESTINATION_PORT_HEADER]: '8443' }, connectionAttributes: junk });
    const res = await curl(viaHeader);
    const d = await p.nextDecision();
    assert.notEqual(res.code, 0);
    assert.equal(d.destination.port, 8443, 'the header port, as for Envoy before 1.40');
    assert.equal(d.rule, 'no-8443');
    assert.equal(d.source.address, undefined);
    viaHeader.assertClean();
    const viaDefault = await standIn(p, s, { initialMetadata: { [POD_HEADERS.name]: '$(CA_PROXY_POD_NAME)' }, connectionAttributes: junk });
    const ok = await curl(viaDefault);
    const d2 = await p.nextDecision();
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(d2.destination.port, 443);
    assert.equal(d2.source.pod, undefined, 'an unexpanded kubelet reference names no pod');
    assert.equal(d2.destination.sni, 'localhost', 'the ClientHello names the server');
    viaDefault.assertClean();
  });

  test('a denial (revoked server) becomes a Warning Event on the pod the stream named', async () => {
    const s = await server(w.revoked);
    const e = await standIn(p, s, { initialMetadata: POD, connectionAttributes: true });
    const res = await curl(e);
    const d = await p.nextDecision();
    assert.notEqual(res.code, 0);
    assert.equal(d.reason, 'certificate_revoked');
    assert.equal(d.source.pod, 'web-5f7c9-x2k4q');
    await until(() => api.listObjects('events', 'shop').some((ev) => (ev as { reason?: string }).reason === 'CertificateRevoked'), 'a CertificateRevoked Event in namespace shop');
    const ev = api.listObjects('events', 'shop').find((x) => (x as { reason?: string }).reason === 'CertificateRevoked') as unknown as { type: string; message: string; involvedObject: { kind: string; name: string; namespace: string; uid?: string } };
    assert.equal(ev.type, 'Warning');
    assert.deepEqual(ev.involvedObject && { kind: ev.involvedObject.kind, name: ev.involvedObject.name, namespace: ev.involvedObject.namespace, uid: ev.involvedObject.uid }, { kind: 'Pod', name: 'web-5f7c9-x2k4q', namespace: 'shop', uid: 'uid-web-1' });
    assert.match(ev.message, new RegExp(`localhost:${s.port}`), 'the message names the real destination port');
    e.assertClean();
  });
});

describe('close_stream_to_ext_proc_server once the decision needs no more bytes', () => {
  for (const action of ['passthrough', 'inspect'] as const) {
    test(`${action} allow with attributes (Envoy 1.40, honoured): the rest bypasses ca-proxy, the request succeeds`, async () => {
      const p = await startProcessor(worldConfig(w, { defaults: { action, tls13: 'deny' } }), { closeStream: 'auto' });
      afterThis(() => p.stop());
      const s = await server(w.good, { version: 'tls1_2', requireClientCert: false });
      const e = await standIn(p, s, { connectionAttributes: true, honourCloseStream: true });
      const res = await curl(e, w.pki.root.certPath);
      const d = await p.nextDecision();
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, /s_server/);
      assert.equal(d.outcome, 'allow');
      assert.equal(d.reason, action === 'passthrough' ? 'passthrough' : 'ok');
      const c = e.connections[0]!;
      await c.done;
      assert.equal(c.closeStreamRequested, true);
      assert.equal(c.bypass, true);
      assert.equal(c.failure, null);
      e.assertClean();
    });
  }

  test('auto without attributes (Envoy before 1.40): never sent; the stream follows the connection to its end', async () => {
    const p = await startProcessor(worldConfig(w, { defaults: { action: 'passthrough' } }), { closeStream: 'auto' });
    afterThis(() => p.stop());
    const s = await server(w.good, { version: 'tls1_2', requireClientCert: false });
    const e = await standIn(p, s, { honourCloseStream: true });
    const res = await curl(e, w.pki.root.certPath);
    assert.equal(res.code, 0, res.stderr);
    await e.connections[0]!.done;
    assert.equal(e.connections[0]!.closeStreamRequested, false);
    assert.equal(e.connections[0]!.bypass, false);
    e.assertClean();
  });
});

/** A processor of a few lines: answers each request with its own bytes, then does `after`. */
async function fakeProcessor(after: (call: grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>, dir: 'read_data' | 'write_data') => void): Promise<string> {
  const srv = new grpc.Server();
  srv.addService(loadProtos().extProc.service, {
    Process: (call: grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>) => {
      call.on('data', (req: ProcessingRequest) => {
        const dir = req.read_data ? 'read_data' : 'write_data';
        after(call, dir);
        void req;
      });
      call.on('error', () => undefined);
    },
  });
  const port = await new Promise<number>((resolve, reject) => srv.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  afterThis(() => srv.forceShutdown());
  return `127.0.0.1:${port}`;
}

/** A TCP upstream that records what it receives. */
async function collector(): Promise<{ port: number; received: () => string }> {
  let got = '';
  const srv = net.createServer((s) => s.on('data', (c) => (got += c.toString())).on('error', () => undefined));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  afterThis(() => new Promise<void>((r) => srv.close(() => r())));
  return { port: (srv.address() as net.AddressInfo).port, received: () => got };
}

describe('the stand-in reproduces the OK-end bypass', () => {
  test('a processor that ends the stream OK while the connection is open: the rest passes unchecked (failure_mode_allow false) and assertClean fails', async () => {
    const target = await fakeProcessor((call, dir) => {
      call.write({ [dir]: { data: Buffer.from('checked:') }, data_processing_status: 'MODIFIED', connection_status: 'CONTINUE' });
      call.end();
    });
    const up = await collector();
    const e = await EnvoyStandIn.start({ target, upstream: { host: '127.0.0.1', port: up.port }, failureModeAllow: false });
    afterThis(() => e.close());
    const client = net.connect(e.port, '127.0.0.1');
    afterThis(() => client.destroy());
    client.on('error', () => undefined);
    client.write('one');
    await until(() => e.connections[0]?.okEndWhileOpen === true, 'the stand-in to see the OK end');
    client.write('two');
    await until(() => up.received() === 'checked:two', `the second write to reach the server unprocessed (got "${up.received()}")`);
    const c = e.connections[0]!;
    assert.equal(c.bypass, true);
    assert.equal(c.closedBy, null, 'not closed: Envoy does not fail closed on an OK end');
    assert.deepEqual(e.violations(), [], 'no lockstep violation');
    assert.throws(() => e.assertClean(), /status OK while the connection was open/);
  });

  test('CLOSE, then an OK end: the connection closes, nothing bypasses, assertClean passes', async () => {
    const target = await fakeProcessor((call, dir) => {
      call.write({ [dir]: { data: Buffer.alloc(0) }, data_processing_status: 'MODIFIED', connection_status: 'CLOSE' });
      call.end();
    });
    const up = await collector();
    const e = await EnvoyStandIn.start({ target, upstream: { host: '127.0.0.1', port: up.port } });
    afterThis(() => e.close());
    const client = net.connect(e.port, '127.0.0.1');
    client.on('error', () => undefined);
    afterThis(() => client.destroy());
    client.write('one');
    await until(() => e.connections[0]?.closedBy === 'CLOSE', 'the CLOSE to be applied');
    await e.connections[0]!.done;
    assert.equal(e.connections[0]!.okEndWhileOpen, false);
    assert.equal(up.received(), '');
    e.assertClean();
  });
});

describe('shutdown ends open streams with an error status', () => {
  test('streams still open at the deadline end with UNAVAILABLE (raw client and the stand-in, which fails closed)', async () => {
    const p = await startProcessor(worldConfig(w));
    let stopped = false;
    afterThis(async () => {
      if (!stopped) await p.stop();
    });
    // A raw stream: half a ClientHello, answered (empty), then nothing.
    const client = new (loadProtos().extProc)(p.grpc.address, grpc.credentials.createInsecure());
    afterThis(() => client.close());
    const raw = (client as unknown as { Process(): grpc.ClientDuplexStream<ProcessingRequest, ProcessingResponse> }).Process();
    raw.on('error', () => undefined);
    const rawStatus = new Promise<grpc.StatusObject>((r) => raw.on('status', r));
    const answered = new Promise<void>((r) => raw.once('data', () => r()));
    raw.write({ read_data: { data: Buffer.from([22, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3]) } });
    await answered;
    // A connection through the stand-in, also mid-ClientHello.
    const up = await collector();
    const e = await standIn(p, up, { failureModeAllow: false });
    const sock = net.connect(e.port, '127.0.0.1');
    sock.on('error', () => undefined);
    afterThis(() => sock.destroy());
    sock.write(Buffer.from([22, 3, 1, 0, 200, 1]));
    await until(() => e.connections[0]?.responses.read === 1, 'the stand-in\'s first request to be answered');
    assert.equal(p.grpc.streams(), 2);
    await p.grpc.close(200);
    const st = await rawStatus;
    assert.equal(st.code, grpc.status.UNAVAILABLE, `status ${grpc.status[st.code]} ${st.details}`);
    assert.match(st.details, /shutting down/);
    await e.connections[0]!.done;
    assert.equal(e.connections[0]!.closedBy, 'failure');
    assert.match(e.connections[0]!.failure ?? '', /UNAVAILABLE/);
    e.assertClean();
    stopped = true;
    await p.rt.close();
  });
});
