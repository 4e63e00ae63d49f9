/**
 * What a user of the CONNECT front door relies on (found by a first-use trial): the CONNECT
 * target is what gets dialled, a connection back into the proxy itself is refused as a loop,
 * port 0 is no destination, a silent CONNECT client is closed, and start-up refuses an expired
 * interception CA with a message that names the field.
 */
import { test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { makeWorld, worldConfig, startProxy, type World, type RunningProxy } from '../support/world';
import { startSServer, type SServer } from '../support/s-server';
import { createRuntime } from '../../cmd/ca-proxy/runtime';
import { createLogger } from '../../internal/metrics/report';
import { toPem } from '../../internal/pki/pem';
import { CN, cert, keyPair, name } from '../support/der-writer';

let w: World;
let p: RunningProxy;
let s: SServer;
beforeAll(async () => {
  w = makeWorld();
  const cfg = worldConfig(w);
  cfg.limits.handshakeTimeoutMs = 700;
  cfg.limits.requestTimeoutMs = 400;
  p = await startProxy(cfg);
  s = await startSServer({ cert: w.good.certPath, key: w.good.keyPath, chain: w.chainPath, clientCA: w.pki.cas.get('client-ca')!.certPath, version: 'tls1_3' });
});
afterAll(async () => {
  await s.stop();
  await p.stop();
  w.cleanup();
});

const proxyPort = () => Number(new URL(p.proxyUrl).port);

test('the CONNECT target is dialled; the SNI only names the certificate to check', async () => {
  // CONNECT to the IP with an SNI that resolves nowhere: only dialling the target can succeed.
  const out = await rawConnect(`127.0.0.1:${s.port}`, 'no-such-host.invalid');
  assert.ok(out.includes(Buffer.from('HTTP/1.1 200')));
  const d = await nextMatching((x) => x.destination.host === '127.0.0.1');
  assert.equal(d.destination.sni, 'no-such-host.invalid');
  assert.equal(d.destination.port, s.port);
  // Reached the server (and then failed the host check: the SNI is not in its certificate).
  assert.equal(d.reason, 'hostname_mismatch', JSON.stringify(d));
});

test('a CONNECT to the proxy itself is refused as a forwarding loop', async () => {
  const before = p.rt.connect!.connections();
  await rawConnect(`127.0.0.1:${proxyPort()}`, 'localhost');
  const d = await nextMatching((x) => x.destination.port === proxyPort() && x.outcome === 'deny');
  assert.deepEqual([d.reason, d.action, d.rule], ['forwarding_loop', 'none', null]);
  assert.match(d.detail ?? '', /this proxy's own listener/);
  // Refused before dialling: no connection to itself was ever opened.
  assert.ok(p.rt.connect!.connections() <= before + 1, 'no cascade of connections');
});

test('a CONNECT to the admin port is refused as a loop too', async () => {
  const adminPort = Number(new URL(p.adminUrl).port);
  await rawConnect(`127.0.0.1:${adminPort}`, 'localhost');
  const d = await nextMatching((x) => x.destination.port === adminPort);
  assert.equal(d.reason, 'forwarding_loop');
  assert.match(d.detail ?? '', /this proxy's own listener/);
});

test('CONNECT to port 0 gets 400', async () => {
  const out = await rawBytes(Buffer.from('CONNECT 127.0.0.1:0 HTTP/1.1\r\n\r\n'));
  assert.match(out.toString(), /^HTTP\/1\.1 400/);
});

test('a CONNECT request that never completes: 408 after limits.requestTimeoutMs, and a decision', async () => {
  const out = await rawBytes(Buffer.from('CONNECT 127.0.0.1:443 HTTP/1.1\r\nhost: x\r\n'));
  assert.match(out.toString(), /^HTTP\/1\.1 408/);
  const d = await nextMatching((x) => x.reason === 'request_timeout');
  assert.deepEqual([d.action, d.outcome], ['none', 'deny']);
  assert.match(d.detail ?? '', /within 400 ms/);
});

test('start-up refuses an expired interception CA, naming the field', async () => {
  const dir = fs.mkdtempSync(path.join(w.dir, 'expired-'));
  const key = path.join(dir, 'ca.key');
  const crt = path.join(dir, 'ca.crt');
  // OpenSSL 3.0 cannot back-date a certificate from the command line; the test DER writer can.
  const kp = keyPair();
  const subject = name([CN, 'expired-ca']);
  const der = cert({ issuer: subject, subject, key: kp, signer: kp, ca: true, notBefore: new Date('2020-01-01T00:00:00Z'), notAfter: new Date('2021-01-01T00:00:00Z') });
  fs.writeFileSync(crt, toPem(der, 'CERTIFICATE'));
  fs.writeFileSync(key, kp.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const cfg = { ...worldConfig(w), interceptionCA: { cert: crt, key } };
  await assert.rejects(createRuntime(cfg, { listen: false, logger: createLogger('silent') }), /interceptionCA\.cert: the interception CA expired at 2021-01-01/);
  const future = cert({ issuer: subject, subject, key: kp, signer: kp, ca: true, notBefore: new Date('2040-01-01T00:00:00Z'), notAfter: new Date('2041-01-01T00:00:00Z') });
  fs.writeFileSync(crt, toPem(future, 'CERTIFICATE'));
  await assert.rejects(createRuntime(cfg, { listen: false, logger: createLogger('silent') }), /interceptionCA\.cert: the interception CA is not valid before 2040-01-01/);
  const missing = { ...worldConfig(w), interceptionCA: { cert: path.join(dir, 'nope.crt'), key } };
  await assert.rejects(createRuntime(missing, { listen: false, logger: createLogger('silent') }), /interceptionCA\.cert: .*nope\.crt does not exist/);
});

/** A raw CONNECT, then a ClientHello for `sni` from Node's TLS client; resolves with everything received. */
function rawConnect(target: string, sni: string): Promise<Buffer> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    const sock = net.connect(proxyPort(), '127.0.0.1', () => sock.write(`CONNECT ${target} HTTP/1.1\r\n\r\n`));
    sock.once('data', async (head) => {
      got.push(head);
      const tls = await import('node:tls');
      const t = tls.connect({ socket: sock, servername: sni, rejectUnauthorized: false });
      t.on('error', () => undefined);
      t.on('secureConnect', () => t.end());
      t.on('close', () => resolve(Buffer.concat(got)));
    });
    sock.on('error', () => resolve(Buffer.concat(got)));
    setTimeout(() => {
      sock.destroy();
      resolve(Buffer.concat(got));
    }, 4000).unref();
  });
}

function rawBytes(bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    const sock = net.connect(proxyPort(), '127.0.0.1', () => sock.write(bytes));
    sock.on('data', (d) => got.push(d));
    sock.on('error', () => undefined);
    sock.on('close', () => resolve(Buffer.concat(got)));
  });
}

async function nextMatching(pred: (d: (typeof p.decisions)[number]) => boolean): Promise<(typeof p.decisions)[number]> {
  for (;;) {
    const d = await p.nextDecision();
    if (pred(d)) return d;
  }
}
