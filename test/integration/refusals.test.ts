/**
 * Issue 10, item 3: every accepted socket ends in exactly one decision — also those refused
 * before any rule applied (action `none`, rule null): the global and per-source connection caps,
 * malformed CONNECT requests, forwarding loops, a CONNECT request or a ClientHello that does not arrive within
 * `limits.requestTimeoutMs`, a client that leaves before asking. Each is counted in
 * `ca_proxy_connections_total{action="none",outcome="deny",reason}`, and a slow client holding
 * sockets at its per-source cap does not lock another source out.
 *
 * Extends test/integration/front-door.test.ts (408 on a slow CONNECT, forwarding loops) and
 * bad-input.test.ts (405, a CONNECT target without a port, hostile TLS bytes).
 */
import { describe, test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import net from 'node:net';
import { makeWorld, worldConfig, startProxy, runCmd, type World, type RunningProxy } from '../support/world';
import { startSServer, type SServer } from '../support/s-server';
import { EnvoyStandIn, startProcessor } from '../support/envoy';
import { afterThis } from '../support/cleanup';
import { until } from '../support/until';
import { nodeClientHello } from '../unit/engine/support';
import type { Decision } from '../../internal/engine/decision';

let w: World;
let s: SServer;
beforeAll(async () => {
  w = makeWorld();
  s = await startSServer({ cert: w.good.certPath, key: w.good.keyPath, chain: w.chainPath, clientCA: w.pki.cas.get('client-ca')!.certPath, version: 'tls1_3', requireClientCert: false });
});
afterAll(async () => {
  await s.stop();
  w.cleanup();
});

async function proxy(limits: Partial<ReturnType<typeof worldConfig>['limits']>): Promise<RunningProxy> {
  const cfg = worldConfig(w, { sni: true });
  cfg.limits = { ...cfg.limits, ...limits };
  cfg.listen.sniUpstreamPort = s.port;
  const p = await startProxy(cfg);
  afterThis(() => p.stop());
  return p;
}

interface Client {
  sock: net.Socket;
  /** Everything received, once the proxy closed the connection. */
  closed: Promise<Buffer>;
}

/** Opens a connection from `localAddress` and writes `bytes`; the socket stays open until the proxy closes it (or the test does). */
function open(port: number, bytes: Buffer | string, localAddress = '127.0.0.1'): Client {
  const sock = net.connect({ port, host: '127.0.0.1', localAddress });
  const got: Buffer[] = [];
  sock.on('connect', () => {
    if (bytes.length) sock.write(bytes);
  });
  sock.on('data', (d) => got.push(d));
  sock.on('error', () => undefined);
  const closed = new Promise<Buffer>((resolve) => sock.on('close', () => resolve(Buffer.concat(got))));
  afterThis(() => void sock.destroy());
  return { sock, closed };
}

/** Decisions made so far, waiting until there are `n`. */
async function decisions(p: RunningProxy, n: number): Promise<Decision[]> {
  await until(() => p.decisions.length >= n, `${n} decisions (have ${p.decisions.length}: ${p.decisions.map((d) => d.reason).join(', ')})`);
  return p.decisions;
}

function refusedBeforeRouting(d: Decision, reason: string): void {
  assert.deepEqual([d.action, d.rule, d.outcome, d.reason], ['none', null, 'deny', reason], JSON.stringify(d));
}

/** The value of `ca_proxy_connections_total` for these labels (0 when the series is absent). */
async function counted(p: RunningProxy, labels: { action: string; outcome: string; reason: string }): Promise<number> {
  const text = await (await fetch(`${p.adminUrl}/metrics`)).text();
  for (const line of text.split('\n')) {
    if (!line.startsWith('ca_proxy_connections_total{')) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.split(' ').pop());
  }
  return 0;
}

const PARTIAL_CONNECT = 'CONNECT 127.0.0.1:443 HTTP/1.1\r\nhost: x\r\n';

describe('connection caps', () => {
  test('limits.maxConnections: one over the cap gets 503, a decision (connection_limit) and a metric; every socket one decision', async () => {
    const p = await proxy({ maxConnections: 2, maxConnectionsPerSource: 10, requestTimeoutMs: 20_000 });
    const port = p.rt.connect!.address.port;
    const holders = [open(port, PARTIAL_CONNECT), open(port, PARTIAL_CONNECT)];
    await until(() => p.rt.connect!.connections() === 2, 'two held connections');
    const over = open(port, PARTIAL_CONNECT);
    assert.match((await over.closed).toString(), /^HTTP\/1\.1 503 /);
    const [d] = await decisions(p, 1);
    refusedBeforeRouting(d!, 'connection_limit');
    assert.match(d!.detail ?? '', /limits\.maxConnections 2/);
    assert.equal(await counted(p, { action: 'none', outcome: 'deny', reason: 'connection_limit' }), 1);
    // The held ones leave without asking: one decision each, peer_closed.
    for (const h of holders) h.sock.destroy();
    const all = await decisions(p, 3);
    assert.deepEqual(all.map((x) => x.reason).sort(), ['connection_limit', 'peer_closed', 'peer_closed'], JSON.stringify(all.map((x) => x.detail)));
    for (const x of all) assert.equal(x.action, "none", JSON.stringify(x));
    await until(() => p.rt.connect!.connections() === 0, 'no connection left');
    assert.equal(p.decisions.length, 3, 'exactly one decision per socket');
  });

  test('limits.maxConnections on the SNI listener: the socket is closed with a decision (connection_limit)', async () => {
    const p = await proxy({ maxConnections: 1, maxConnectionsPerSource: 10, requestTimeoutMs: 20_000, handshakeTimeoutMs: 20_000 });
    const port = p.rt.sni!.address.port;
    const holder = open(port, Buffer.from([22, 3, 1])); // a ClientHello that never completes
    await until(() => p.rt.sni!.connections() === 1, 'one held connection');
    const over = open(port, Buffer.alloc(0));
    assert.equal((await over.closed).length, 0, 'closed without a byte');
    const [d] = await decisions(p, 1);
    refusedBeforeRouting(d!, 'connection_limit');
    assert.equal(d!.destination.port, s.port);
    holder.sock.destroy();
    const all = await decisions(p, 2);
    assert.equal(all[1]!.reason, 'peer_closed');
    assert.equal(await counted(p, { action: 'none', outcome: 'deny', reason: 'connection_limit' }), 1);
  });

  test('a slowloris source at limits.maxConnectionsPerSource is refused (429, source_connection_limit); another source still gets through', async () => {
    const p = await proxy({ maxConnections: 50, maxConnectionsPerSource: 3, requestTimeoutMs: 20_000 });
    const port = p.rt.connect!.address.port;
    const slow = [1, 2, 3].map(() => open(port, PARTIAL_CONNECT, '127.0.0.1'));
    await until(() => p.rt.connect!.connections() === 3, 'three held connections');
    const fourth = open(port, PARTIAL_CONNECT, '127.0.0.1');
    assert.match((await fourth.closed).toString(), /^HTTP\/1\.1 429 /);
    const [d] = await decisions(p, 1);
    refusedBeforeRouting(d!, 'source_connection_limit');
    assert.equal(d!.source.address, '127.0.0.1');
    // Another source address: its request goes through while the slow one holds its cap.
    const res = await runCmd('curl', ['-sS', '--max-time', '10', '--interface', '127.0.0.2', '--proxy', p.proxyUrl, '--cacert', w.interceptionCA.certPath, `https://localhost:${s.port}/`]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /s_server/);
    const [, ok] = await decisions(p, 2);
    assert.deepEqual([ok!.outcome, ok!.source.address], ['allow', '127.0.0.2']);
    assert.equal(await counted(p, { action: 'none', outcome: 'deny', reason: 'source_connection_limit' }), 1);
    for (const c of slow) c.sock.destroy();
    await decisions(p, 5);
    assert.deepEqual(p.decisions.slice(2).map((x) => x.reason), ['peer_closed', 'peer_closed', 'peer_closed']);
  });
});

describe('malformed and slow requests', () => {
  const MALFORMED: { name: string; bytes: string; status: RegExp; detail: RegExp }[] = [
    { name: 'a GET', bytes: 'GET / HTTP/1.1\r\nhost: x\r\n\r\n', status: /^HTTP\/1\.1 405 /, detail: /GET is not CONNECT/ },
    { name: 'a CONNECT to port 0', bytes: 'CONNECT 127.0.0.1:0 HTTP/1.1\r\n\r\n', status: /^HTTP\/1\.1 400 /, detail: /port 0/ },
    { name: 'a CONNECT to port 99999', bytes: 'CONNECT 127.0.0.1:99999 HTTP/1.1\r\n\r\n', status: /^HTTP\/1\.1 400 /, detail: /expected HOST:PORT/ },
    { name: 'bytes that are not HTTP', bytes: '\x16\x03\x01\x00\x05hello\r\n\r\n', status: /^HTTP\/1\.1 400 /, detail: /malformed HTTP request/ },
  ];
  test(`each gets its status, one decision (bad_request) and a count: ${MALFORMED.map((m) => m.name).join(', ')}`, async () => {
    const p = await proxy({});
    const port = p.rt.connect!.address.port;
    for (const [i, m] of MALFORMED.entries()) {
      const out = await open(port, m.bytes).closed;
      assert.match(out.toString('latin1'), m.status, `${m.name}: ${out.toString('latin1')}`);
      const d = (await decisions(p, i + 1))[i]!;
      refusedBeforeRouting(d, 'bad_request');
      assert.match(d.detail ?? '', m.detail, m.name);
    }
    assert.equal(await counted(p, { action: 'none', outcome: 'deny', reason: 'bad_request' }), MALFORMED.length);
    assert.equal(p.decisions.length, MALFORMED.length);
  });

  test('a CONNECT back into the proxy (its admin port): one decision, forwarding_loop, counted', async () => {
    const p = await proxy({});
    const admin = p.rt.admin!.address.port;
    const hello = await nodeClientHello({ servername: 'localhost' });
    const out = await open(p.rt.connect!.address.port, Buffer.concat([Buffer.from(`CONNECT localhost:${admin} HTTP/1.1\r\n\r\n`), hello])).closed;
    assert.match(out.toString('latin1'), /^HTTP\/1\.1 200 /);
    const [d] = await decisions(p, 1);
    refusedBeforeRouting(d!, 'forwarding_loop');
    assert.equal(await counted(p, { action: 'none', outcome: 'deny', reason: 'forwarding_loop' }), 1);
    assert.equal(p.decisions.length, 1);
  });

  test('a client that leaves before asking: peer_closed', async () => {
    const p = await proxy({});
    const c = open(p.rt.connect!.address.port, '');
    await until(() => p.rt.connect!.connections() === 1, 'the connection accepted');
    c.sock.destroy();
    const [d] = await decisions(p, 1);
    refusedBeforeRouting(d!, 'peer_closed');
  });

  test('a ClientHello that never completes: request_timeout on the SNI port and after a CONNECT, well before the handshake timeout', async () => {
    const p = await proxy({ requestTimeoutMs: 400, handshakeTimeoutMs: 20_000 });
    const serverSaw = s.output().length;
    const partial = (await nodeClientHello({ servername: 'localhost' })).subarray(0, 40);
    const viaSni = open(p.rt.sni!.address.port, partial);
    const [d1] = await decisions(p, 1);
    refusedBeforeRouting(d1!, 'request_timeout');
    assert.match(d1!.detail ?? '', /no complete ClientHello within 400 ms/);
    const out1 = await viaSni.closed;
    assert.equal(out1[0], 21, 'an alert to the workload');
    const viaConnect = open(p.rt.connect!.address.port, Buffer.concat([Buffer.from(`CONNECT localhost:${s.port} HTTP/1.1\r\n\r\n`), partial]));
    const d2 = (await decisions(p, 2))[1]!;
    refusedBeforeRouting(d2, 'request_timeout');
    assert.match((await viaConnect.closed).toString('latin1'), /^HTTP\/1\.1 200 /);
    assert.equal(await counted(p, { action: 'none', outcome: 'deny', reason: 'request_timeout' }), 2);
    assert.doesNotMatch(s.output().slice(serverSaw), /ClientHello/, 'nothing reached the server');
  });

  test('behind Envoy: a ClientHello that never completes is request_timeout too', async () => {
    const cfg = worldConfig(w);
    cfg.limits = { ...cfg.limits, requestTimeoutMs: 400, handshakeTimeoutMs: 20_000 };
    const q = await startProcessor(cfg, { closeBackstopMs: 500 });
    afterThis(() => q.stop());
    const e = await EnvoyStandIn.start({ target: q.grpc.address, upstream: { host: '127.0.0.1', port: s.port } });
    afterThis(() => e.close());
    const c = open(e.port, (await nodeClientHello({ servername: 'localhost' })).subarray(0, 40));
    const d = await q.nextDecision();
    assert.deepEqual([d.action, d.rule, d.reason], ['none', null, 'request_timeout'], JSON.stringify(d));
    await c.closed;
    e.assertClean();
  });
});
