/**
 * Inspect mode end to end with independent peers: `openssl s_server` as the external server,
 * `openssl s_client`, curl and a Node TLS client as the workload, ca-proxy's CONNECT listener
 * in between with every rule set to `inspect`. The workload trusts the real server chain
 * (the test root): inspect relays the server's own certificate.
 */
import { describe, test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { makeWorld, worldConfig, startProxy, runCmd, type World, type RunningProxy } from '../support/world';
import { startSServer, type SServer, type SServerOptions } from '../support/s-server';
import type { Tls13Policy } from '../../internal/config/types';
import type { LeafHandle } from '../support/pki';

let w: World;
beforeAll(() => {
  w = makeWorld();
});
afterAll(() => w.cleanup());

function server(version: SServerOptions['version'], leaf: LeafHandle = w.good, extra: Partial<SServerOptions> = {}): Promise<SServer> {
  return startSServer({
    cert: leaf.certPath,
    key: leaf.keyPath,
    chain: leaf === w.underRevokedCa ? w.chainBPath : w.chainPath,
    clientCA: w.pki.cas.get('client-ca')!.certPath,
    version,
    requireClientCert: false,
    ...extra,
  });
}

function inspectProxy(tls13: Tls13Policy = 'deny'): Promise<RunningProxy> {
  return startProxy(worldConfig(w, { defaults: { action: 'inspect', tls13 } }));
}

/** `openssl s_client` through the proxy's CONNECT listener; `-msg` prints every message it receives (`<<<`). */
function sClient(p: RunningProxy, port: number, args: string[] = [], input = 'GET / HTTP/1.0\r\n\r\n') {
  return runCmd('openssl', ['s_client', '-proxy', new URL(p.proxyUrl).host, '-connect', `localhost:${port}`, '-servername', 'localhost', '-CAfile', w.pki.root.certPath, '-msg', '-ign_eof', ...args], { input });
}

function curl(p: RunningProxy, port: number, cacert = w.pki.root.certPath) {
  return runCmd('curl', ['-sS', '--max-time', '10', '--proxy', p.proxyUrl, '--cacert', cacert, `https://localhost:${port}/`]);
}


describe('inspect, TLS 1.2', () => {
  let p: RunningProxy;
  beforeAll(async () => {
    p = await inspectProxy();
  });
  afterAll(() => p.stop());

  test('good server: curl gets the page; decision allow with version, cipher, certificate, revocation good', async () => {
    const s = await server('tls1_2');
    try {
      const res = await curl(p, s.port);
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, /s_server/);
      const d = await p.nextDecision();
      assert.equal(d.action, 'inspect');
      assert.equal(d.outcome, 'allow');
      assert.equal(d.reason, 'ok');
      assert.equal(d.tls?.version, 'TLSv1.2');
      assert.match(d.tls?.cipher ?? '', /^TLS_ECDHE_ECDSA_WITH_/);
      assert.equal(d.revocation?.status, 'good');
      assert.equal(d.serverCertificate?.sha256, w.good.x509.fingerprint256.replace(/:/g, '').toLowerCase());
      assert.deepEqual(d.substitution, { requested: false, identity: null, workloadCertificate: false });
      assert.equal(d.destination.sni, 'localhost');
    } finally {
      await s.stop();
    }
  });

  test('payload intact byte for byte in both directions (1 MiB each way, Node TLS echo server)', async () => {
    const echo = tls.createServer(
      { cert: w.good.certPem + fs.readFileSync(w.chainPath, 'utf8'), key: fs.readFileSync(w.good.keyPath), maxVersion: 'TLSv1.2', ALPNProtocols: ['echo/1'] },
      (s) => s.pipe(s),
    );
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    try {
      const port = (echo.address() as net.AddressInfo).port;
      const sock = await tunnelTls(p, port, { ALPNProtocols: ['echo/1'] });
      const payload = crypto.randomBytes(1024 * 1024);
      const back = await new Promise<Buffer>((resolve, reject) => {
        const parts: Buffer[] = [];
        let n = 0;
        sock.on('data', (d: Buffer) => {
          parts.push(d);
          n += d.length;
          if (n >= payload.length) resolve(Buffer.concat(parts));
        });
        sock.once('error', reject);
        sock.write(payload);
      });
      sock.destroy();
      assert.equal(back.length, payload.length);
      assert.ok(back.equals(payload), 'the echoed bytes are the bytes sent');
      const d = await p.nextDecision();
      assert.equal(d.outcome, 'allow');
      assert.equal(d.tls?.alpn, 'echo/1', 'ALPN read from the ServerHello');
    } finally {
      echo.close();
    }
  });

  for (const [name, leaf, crlReason] of [
    ['revoked leaf', () => w.revoked, 'keyCompromise'],
    ['revoked intermediate', () => w.underRevokedCa, 'cACompromise'],
  ] as const) {
    test(`${name}: the workload never receives the Certificate; both peers get certificate_revoked`, async () => {
      const s = await server('tls1_2', leaf());
      try {
        const res = await sClient(p, s.port, ['-tls1_2']);
        assert.notEqual(res.code, 0);
        const out = res.stdout + res.stderr;
        assert.match(out, /<<< [^\n]*Alert[^\n]*\n[^\n]*02 2c/, `s_client received a fatal alert 44 (certificate_revoked):\n${out}`);
        assert.match(out, /alert certificate revoked/i);
        assert.doesNotMatch(out, /<<< [^\n]*Handshake/, 'no handshake message (ServerHello, Certificate) reached the workload');
        assert.doesNotMatch(out, /BEGIN CERTIFICATE|depth=/);
        const srv = await s.waitFor(/certificate[_ ]revoked/i);
        assert.match(srv, /<<< [^\n]*Alert[^\n]*\n[^\n]*02 2c/, 's_server received a fatal certificate_revoked alert');
        const d = await p.nextDecision();
        assert.equal(d.action, 'inspect');
        assert.equal(d.outcome, 'deny');
        assert.equal(d.reason, 'certificate_revoked');
        assert.equal(d.revocation?.status, 'revoked');
        assert.equal(d.revocation?.reason, crlReason);
      } finally {
        await s.stop();
      }
    });
  }

  test('CertificateRequest reported; the workload answers with an empty Certificate (s_client without a certificate)', async () => {
    const s = await server('tls1_2', w.good, { requireClientCert: true, optionalClientCert: true });
    try {
      const res = await sClient(p, s.port, ['-tls1_2']);
      assert.match(res.stdout, /HTTP\/1\.0 200 ok/i, res.stderr);
      const d = await p.nextDecision();
      assert.equal(d.outcome, 'allow');
      assert.deepEqual(d.substitution, { requested: true, identity: null, workloadCertificate: false });
      // What the server read: the workload's own empty Certificate (4-byte header + empty 3-byte list).
      assert.match(await s.waitFor(/<<< [^\n]*Handshake \[length 0007\], Certificate/), /<<< [^\n]*Handshake \[length 0007\], Certificate\n\s+0b 00 00 03 00 00 00/);
    } finally {
      await s.stop();
    }
  });

  test('CertificateRequest answered with a certificate: reported as workloadCertificate, the workload\'s own (no substitution)', async () => {
    const s = await server('tls1_2', w.good, { requireClientCert: true, optionalClientCert: true });
    try {
      const res = await sClient(p, s.port, ['-tls1_2', '-cert', w.identity.certPath, '-key', w.identity.keyPath]);
      assert.match(res.stdout, /HTTP\/1\.0 200 ok/i, res.stderr);
      const d = await p.nextDecision();
      assert.deepEqual(d.substitution, { requested: true, identity: null, workloadCertificate: true });
      assert.match(await s.waitFor(/depth=0/), /CN = proxy-identity/);
    } finally {
      await s.stop();
    }
  });
});

describe('inspect, TLS 1.3 per tls13', () => {
  test('deny: protocol_version alert to both peers, nothing of the server flight forwarded', async () => {
    const p = await inspectProxy('deny');
    const s = await server('tls1_3');
    try {
      const res = await sClient(p, s.port);
      const out = res.stdout + res.stderr;
      assert.match(out, /alert protocol version/i, out);
      assert.doesNotMatch(out, /<<< [^\n]*Handshake/);
      await s.waitFor(/protocol[_ ]version/i);
      const d = await p.nextDecision();
      assert.equal(d.outcome, 'deny');
      assert.equal(d.reason, 'tls13_not_inspectable');
      assert.equal(d.tls?.version, 'TLSv1.3');
    } finally {
      await s.stop();
      await p.stop();
    }
  });

  test('deny on a HelloRetryRequest (server insists on P-384)', async () => {
    const p = await inspectProxy('deny');
    const s = await server('tls1_3', w.good, { args: ['-groups', 'P-384'] });
    try {
      const res = await sClient(p, s.port, ['-groups', 'X25519:P-384']);
      assert.match(res.stdout + res.stderr, /alert protocol version/i);
      const d = await p.nextDecision();
      assert.equal(d.reason, 'tls13_not_inspectable');
      assert.match(d.detail ?? '', /HelloRetryRequest/);
    } finally {
      await s.stop();
      await p.stop();
    }
  });

  test('allowUnchecked: relayed, decision marked not_checked', async () => {
    const p = await inspectProxy('allowUnchecked');
    const s = await server('tls1_3', w.revoked);
    try {
      const res = await curl(p, s.port);
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, /s_server/);
      const d = await p.nextDecision();
      assert.equal(d.outcome, 'allow');
      assert.equal(d.reason, 'tls13_unchecked');
      assert.equal(d.revocation?.status, 'not_checked');
      assert.equal(d.tls?.version, 'TLSv1.3');
      assert.equal(d.tls?.cipher, 'TLS_AES_256_GCM_SHA384');
    } finally {
      await s.stop();
      await p.stop();
    }
  });

  test('intercept: the held ClientHello goes to intercept mode (minted leaf, proxy identity, CRL checked)', async () => {
    const p = await inspectProxy('intercept');
    const bundle = path.join(w.dir, 'root+interception.pem');
    fs.writeFileSync(bundle, fs.readFileSync(w.pki.root.certPath, 'utf8') + fs.readFileSync(w.interceptionCA.certPath, 'utf8'));
    const s = await server('tls1_3', w.good, { requireClientCert: true });
    const r = await server('tls1_3', w.revoked, { args: ['-groups', 'P-384'] });
    try {
      const res = await curl(p, s.port, bundle);
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, /s_server/);
      const d = await p.nextDecision();
      assert.equal(d.action, 'intercept');
      assert.equal(d.outcome, 'allow');
      assert.equal(d.tls?.version, 'TLSv1.3');
      assert.deepEqual(d.substitution, { requested: true, identity: 'upstream', workloadCertificate: false });
      assert.match(await s.waitFor(/depth=0/), /CN = proxy-identity/);

      // After a HelloRetryRequest, towards a revoked server: denied by intercept's own check.
      const bad = await curl(p, r.port, bundle);
      assert.notEqual(bad.code, 0);
      const d2 = await p.nextDecision();
      assert.equal(d2.action, 'intercept');
      assert.equal(d2.reason, 'certificate_revoked');
    } finally {
      await s.stop();
      await r.stop();
      await p.stop();
    }
  });
});

/** CONNECT through the proxy, then TLS trusting the test root (inspect relays the real chain). */
function tunnelTls(p: RunningProxy, port: number, extra: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const raw = net.connect(Number(new URL(p.proxyUrl).port), '127.0.0.1', () => {
      raw.write(`CONNECT localhost:${port} HTTP/1.1\r\nhost: localhost:${port}\r\n\r\n`);
    });
    raw.once('error', reject);
    raw.once('data', (head) => {
      if (!/^HTTP\/1\.1 200/.test(head.toString())) return reject(new Error(head.toString()));
      const s = tls.connect({ socket: raw, servername: 'localhost', ca: w.pki.root.certPem, ...extra });
      s.once('secureConnect', () => resolve(s));
      s.once('error', reject);
    });
  });
}

