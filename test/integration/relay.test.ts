/**
 * The relay phase of intercept and passthrough: byte-exact bulk transfer in both directions
 * (SHA-256 compared end to end), and half-close — a server that sends its answer and closes
 * at once must have every byte delivered before the workload sees the end.
 */
import { test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { makeWorld, worldConfig, startProxy, type World, type RunningProxy } from '../support/world';

let w: World;
let p: RunningProxy;
let server: tls.Server;
let port: number;
const SIZE = 48 * 1024 * 1024;

/** Deterministic bytes, so corruption or reordering changes the hash. */
function payload(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i += 32) crypto.createHash('sha256').update(String(i)).digest().copy(b, i);
  return b;
}
const DATA = payload(SIZE);
const DATA_SHA = crypto.createHash('sha256').update(DATA).digest('hex');

beforeAll(async () => {
  w = makeWorld();
  server = tls.createServer(
    {
      cert: fs.readFileSync(w.good.certPath, 'utf8') + fs.readFileSync(w.chainPath, 'utf8'),
      key: fs.readFileSync(w.good.keyPath),
      ca: fs.readFileSync(w.pki.cas.get('client-ca')!.certPath),
      requestCert: true,
      rejectUnauthorized: true,
    },
    (s) => {
      // "send": write the payload and close at once; "echo": hash what arrives and answer with the hash.
      s.once('data', (first) => {
        if (first.toString().startsWith('send')) s.end(DATA);
        else {
          const h = crypto.createHash('sha256');
          let n = 0;
          const take = (d: Buffer) => {
            h.update(d);
            n += d.length;
            if (n === SIZE) s.end(h.digest('hex'));
          };
          take(first.subarray(4));
          s.on('data', take);
        }
      });
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as net.AddressInfo).port;
  p = await startProxy(worldConfig(w, { rules: [{ name: 'pt', match: { sni: 'passthrough.localhost' }, action: 'passthrough' }] }));
});
afterAll(async () => {
  await p.stop();
  server.close();
  w.cleanup();
});

function tunnel(host: string): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const raw = net.connect(Number(new URL(p.proxyUrl).port), '127.0.0.1', () => raw.write(`CONNECT ${host}:${port} HTTP/1.1\r\n\r\n`));
    raw.once('error', reject);
    raw.once('data', () => {
      const passthrough = host.startsWith('passthrough');
      const s = tls.connect({
        socket: raw,
        servername: host,
        ...(passthrough
          ? { ca: fs.readFileSync(w.pki.root.certPath), checkServerIdentity: () => undefined, cert: fs.readFileSync(w.identity.certPath), key: fs.readFileSync(w.identity.keyPath) }
          : { ca: fs.readFileSync(w.interceptionCA.certPath) }),
      });
      s.once('secureConnect', () => resolve(s));
      s.once('error', reject);
    });
  });
}

function readAll(s: tls.TLSSocket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on('data', (d) => parts.push(d));
    s.on('end', () => resolve(Buffer.concat(parts)));
    s.on('error', reject);
  });
}

for (const host of ['localhost', 'passthrough.localhost']) {
  test(`${host === 'localhost' ? 'intercept' : 'passthrough'}: 48 MiB server→workload, server closes at once: every byte, in order`, async () => {
    const s = await tunnel(host);
    const got = readAll(s);
    s.write('send');
    const body = await got;
    assert.equal(body.length, SIZE);
    assert.equal(crypto.createHash('sha256').update(body).digest('hex'), DATA_SHA);
    s.destroy();
    const d = await p.nextDecision();
    assert.equal(d.outcome, 'allow');
  });

  test(`${host === 'localhost' ? 'intercept' : 'passthrough'}: 48 MiB workload→server, in order`, async () => {
    const s = await tunnel(host);
    const got = readAll(s);
    s.write(Buffer.concat([Buffer.from('echo'), DATA]));
    assert.equal((await got).toString(), DATA_SHA);
    s.destroy();
    assert.equal((await p.nextDecision()).outcome, 'allow');
  });
}

test('after the relayed connections closed, ca_proxy_active_connections is back to 0', async () => {
  let text = '';
  for (let i = 0; i < 40; i++) {
    text = await (await fetch(`${p.adminUrl}/metrics`)).text();
    if (/^ca_proxy_active_connections 0$/m.test(text)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.match(text, /^ca_proxy_active_connections 0$/m);
});
