/**
 * Case h, second half: hostile bytes on the TLS (SNI) port and on the CONNECT port. Each must
 * end in a clean close with a decision; the process lives on and holds no more handles after
 * the connections are gone than before them.
 */
import { describe, test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import net from 'node:net';
import { makeWorld, worldConfig, startProxy, type World, type RunningProxy } from '../support/world';

let w: World;
let p: RunningProxy;
let sniPort: number;
beforeAll(async () => {
  w = makeWorld();
  p = await startProxy(worldConfig(w, { sni: true }));
  sniPort = p.rt.sni!.address.port;
});
afterAll(async () => {
  await p.stop();
  w.cleanup();
});

/** Sends `chunks` to the SNI port (then half-closes when `end`); resolves with what came back once the proxy closed. */
function send(chunks: Buffer[], end: boolean, port = sniPort): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => {
      for (const c of chunks) s.write(c);
      if (end) s.end();
    });
    const got: Buffer[] = [];
    s.on('data', (d) => got.push(d));
    s.on('error', () => undefined);
    s.on('close', () => resolve(Buffer.concat(got)));
    setTimeout(() => reject(new Error('proxy did not close the connection')), 8000).unref();
  });
}

function handshakeRecord(type: number, bodyLen: number, body: Buffer): Buffer {
  const msg = Buffer.concat([Buffer.from([type, bodyLen >> 16, (bodyLen >> 8) & 0xff, bodyLen & 0xff]), body]);
  const hdr = Buffer.from([22, 3, 1, msg.length >> 8, msg.length & 0xff]);
  return Buffer.concat([hdr, msg]);
}

const CASES: { name: string; chunks: Buffer[]; end: boolean; reason: string }[] = [
  { name: 'garbage bytes', chunks: [Buffer.from('\x00\x01\x02garbage\xff\xfe')], end: false, reason: 'not_tls' },
  { name: 'plain HTTP', chunks: [Buffer.from('GET / HTTP/1.1\r\nhost: x\r\n\r\n')], end: false, reason: 'not_tls' },
  { name: 'ClientHello cut off mid-record', chunks: [Buffer.from([22, 3, 1, 0x02, 0x00, 1, 0, 1, 0xfc, 3, 3])], end: true, reason: 'peer_closed' },
  { name: 'oversized handshake message', chunks: [handshakeRecord(1, 0x100000, Buffer.alloc(100))], end: false, reason: 'handshake_too_large' },
  { name: 'handshake message that is not a ClientHello', chunks: [handshakeRecord(2, 4, Buffer.alloc(4))], end: false, reason: 'malformed_handshake' },
  { name: 'malformed ClientHello', chunks: [handshakeRecord(1, 6, Buffer.from([3, 3, 0, 0, 0, 0]))], end: false, reason: 'malformed_handshake' },
];

describe('hostile input on the TLS port', () => {
  for (const c of CASES) {
    test(`${c.name}: clean close with decision ${c.reason}`, async () => {
      await send(c.chunks, c.end);
      const d = await p.nextDecision();
      assert.equal(d.outcome, 'deny');
      assert.equal(d.reason, c.reason);
    });
  }

  test('a silent client is closed by the handshake timeout', async () => {
    const cfg = worldConfig(w, { sni: true });
    cfg.limits.handshakeTimeoutMs = 300;
    const q = await startProxy(cfg);
    try {
      await send([Buffer.from([22, 3, 1])], false, q.rt.sni!.address.port);
      const d = await q.nextDecision();
      assert.equal(d.reason, 'handshake_timeout');
    } finally {
      await q.stop();
    }
  });

  test('no growth in open handles after 60 hostile connections', async () => {
    const handles = () => process.getActiveResourcesInfo().filter((r) => r !== 'Timeout' && r !== 'Immediate').length;
    // warm up: one round of each, so lazily created handles exist before the baseline
    for (const c of CASES) await send(c.chunks, c.end);
    await new Promise((r) => setTimeout(r, 200));
    const baseline = handles();
    for (let i = 0; i < 10; i++) for (const c of CASES) await send(c.chunks, c.end);
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(handles() <= baseline, `handles grew from ${baseline} to ${handles()}: ${process.getActiveResourcesInfo().join(',')}`);
    assert.equal(p.rt.sni!.connections(), 0, 'no connection left open');
    assert.equal(p.decisions.length >= 66 + CASES.length, true, 'every hostile connection got a decision');
    p.skipDecisions();
    const metrics = await (await fetch(`${p.adminUrl}/metrics`)).text();
    assert.match(metrics, /^ca_proxy_active_connections 0$/m, 'the active-connections gauge returned to 0');
  });
});

describe('the CONNECT port', () => {
  test('a plain HTTP request gets 405 with a hint', async () => {
    const res = await fetch(`${p.proxyUrl}/`);
    assert.equal(res.status, 405);
    assert.match(await res.text(), /CONNECT/);
    const d = await p.nextDecision();
    assert.deepEqual([d.action, d.rule, d.outcome, d.reason], ['none', null, 'deny', 'bad_request']);
  });

  test('a bad CONNECT target gets 400', async () => {
    const out = await send([Buffer.from('CONNECT nonsense HTTP/1.1\r\n\r\n')], false, Number(new URL(p.proxyUrl).port));
    assert.match(out.toString(), /^HTTP\/1\.1 400/);
    const d = await p.nextDecision();
    assert.deepEqual([d.action, d.reason], ['none', 'bad_request']);
    assert.match(d.detail ?? '', /CONNECT target: expected HOST:PORT/);
  });

  test('an unreachable server: denied with upstream_connect_failed, the workload gets an alert', async () => {
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const hello = Buffer.from(
      // A real ClientHello from Node, captured at test time, would be nicer; a minimal valid one suffices.
      '160301003b0100003703030000000000000000000000000000000000000000000000000000000000000000000002002f0100000c000000080006000003782e79',
      'hex',
    );
    const out = await send([Buffer.from(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\n\r\n`), hello], false, Number(new URL(p.proxyUrl).port));
    assert.match(out.toString('latin1'), /^HTTP\/1\.1 200/);
    const d = await p.nextDecision();
    assert.equal(d.reason, 'upstream_connect_failed');
    assert.equal(out[out.length - 7], 21, 'an alert record closes the stream');
  });
});
