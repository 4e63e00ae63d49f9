/**
 * The revocation store in a running proxy: stale CRLs under hardFail and softFail (case f),
 * a CRL replaced on disk while a connection is open (case g), and bad CRLs refused while the
 * last good one stays in force (case h, first half).
 */
import { describe, test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import { makeWorld, worldConfig, startProxy, curlVia, type World, type RunningProxy } from '../support/world';
import { startSServer, type SServer } from '../support/s-server';

let w: World;
let good: SServer;
let revoked: SServer;
beforeAll(async () => {
  w = makeWorld();
  const clientCA = w.pki.cas.get('client-ca')!.certPath;
  good = await startSServer({ cert: w.good.certPath, key: w.good.keyPath, chain: w.chainPath, clientCA, version: 'tls1_2' });
  revoked = await startSServer({ cert: w.revoked.certPath, key: w.revoked.keyPath, chain: w.chainPath, clientCA, version: 'tls1_2' });
});
afterAll(async () => {
  await good.stop();
  await revoked.stop();
  w.cleanup();
});

/** A CRL folder of its own for one test, holding the root CRL and `intermediate`. */
function crlDir(name: string, intermediateCrl: string): string {
  const dir = path.join(w.dir, `crls-${name}`);
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(w.crlDir, 'root.crl'), path.join(dir, 'root.crl'));
  fs.copyFileSync(intermediateCrl, path.join(dir, 'intermediate.crl'));
  return dir;
}

/** Atomically replaces `dir/intermediate.crl` (write + rename, as kubelet and editors do). */
function replaceCrl(dir: string, bytes: Buffer): void {
  const tmp = path.join(dir, '.intermediate.crl.tmp');
  fs.writeFileSync(tmp, bytes);
  fs.renameSync(tmp, path.join(dir, 'intermediate.crl'));
}

async function metricValue(p: RunningProxy, line: RegExp): Promise<number> {
  const text = await (await fetch(`${p.adminUrl}/metrics`)).text();
  const m = text.split('\n').find((l) => line.test(l));
  return m ? Number(m.slice(m.lastIndexOf(' ') + 1)) : 0;
}

describe('f. stale CRL', () => {
  let dir: string;
  beforeAll(() => {
    const now = Date.now();
    const stale = w.pki.crl('intermediate', { thisUpdate: new Date(now - 10 * 86400_000), nextUpdate: new Date(now - 3 * 86400_000) });
    dir = crlDir('stale', stale);
  });

  test('hardFail denies with revocation_stale', async () => {
    const cfg = worldConfig(w);
    cfg.revocation.crlPaths = [dir];
    const p = await startProxy(cfg);
    try {
      const res = await curlVia(p, w, good.port);
      assert.notEqual(res.code, 0);
      const d = await p.nextDecision();
      assert.equal(d.outcome, 'deny');
      assert.equal(d.reason, 'revocation_stale');
      assert.equal(d.revocation?.status, 'stale');
    } finally {
      await p.stop();
    }
  });

  test('softFail allows, marked stale; a revoked certificate on the stale CRL is still denied', async () => {
    const cfg = worldConfig(w, { defaults: { revocation: 'softFail' } });
    cfg.revocation.crlPaths = [dir];
    const p = await startProxy(cfg);
    try {
      const res = await curlVia(p, w, good.port);
      assert.equal(res.code, 0, res.stderr);
      const d = await p.nextDecision();
      assert.equal(d.outcome, 'allow');
      assert.equal(d.revocation?.status, 'stale');
      await curlVia(p, w, revoked.port);
      const d2 = await p.nextDecision();
      assert.equal(d2.reason, 'certificate_revoked', 'revoked wins over stale');
    } finally {
      await p.stop();
    }
  });
});

describe('g. CRL replaced on disk during a long connection', () => {
  test('new connections see the new CRL within 2 s; the open connection stays up', async () => {
    const clientCA = w.pki.cas.get('client-ca')!.certPath;
    const leaf = w.pki.issueLeaf('echo', { san: ['DNS:localhost', 'IP:127.0.0.1'] });
    const echo = tls.createServer(
      {
        cert: fs.readFileSync(leaf.certPath, 'utf8') + fs.readFileSync(w.chainPath, 'utf8'),
        key: fs.readFileSync(leaf.keyPath),
        ca: fs.readFileSync(clientCA),
        requestCert: true,
        rejectUnauthorized: true,
      },
      (s) => s.pipe(s),
    );
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    const port = (echo.address() as net.AddressInfo).port;
    const dir = crlDir('reload', path.join(w.crlDir, 'intermediate.crl'));
    const cfg = worldConfig(w);
    cfg.revocation.crlPaths = [dir];
    const p = await startProxy(cfg);
    try {
      const conn = await openThroughProxy(p, w, port);
      assert.equal(await roundTrip(conn, 'ping-1'), 'ping-1');
      assert.equal((await p.nextDecision()).outcome, 'allow');

      w.pki.revoke('intermediate', leaf.certPath, 'superseded');
      const newer = fs.readFileSync(w.pki.crl('intermediate', { nextUpdateDays: 7 }));
      const replacedAt = Date.now();
      replaceCrl(dir, newer);

      let denied = false;
      while (Date.now() - replacedAt < 2000 && !denied) {
        await new Promise((r) => setTimeout(r, 100));
        // a full round trip, so the proxy has seen the workload's Finished before the probe hangs up
        const probe = await openThroughProxy(p, w, port).then(
          async (s) => {
            await roundTrip(s, 'probe');
            s.destroy();
            return 'allow';
          },
          () => 'deny',
        );
        const d = await p.nextDecision();
        assert.equal(d.outcome, probe, JSON.stringify(d));
        denied = d.reason === 'certificate_revoked' && d.revocation?.reason === 'superseded';
      }
      assert.ok(denied, 'a new connection was denied with the new CRL within 2 s');
      assert.equal(await roundTrip(conn, 'ping-2'), 'ping-2', 'the open connection was not dropped');
      conn.destroy();
    } finally {
      await p.stop();
      echo.close();
    }
  });
});

describe('h. bad CRLs are refused; the last good CRL stays in force', () => {
  test('bad signature, truncated, unknown critical extension, lower cRLNumber', async () => {
    const first = w.pki.crl('intermediate', { nextUpdateDays: 7, crlNumber: 100 });
    const dir = crlDir('bad', first);
    const cfg = worldConfig(w);
    cfg.revocation.crlPaths = [dir];
    const p = await startProxy(cfg);
    try {
      const impostor = w.pki.addCa('impostor', { subject: w.pki.intermediate.subject });
      const badSig = w.pki.crl('impostor', { nextUpdateDays: 7, crlNumber: 200, aki: false });
      const good = fs.readFileSync(w.pki.crl('intermediate', { nextUpdateDays: 7, crlNumber: 300 }));
      const truncated = good.subarray(0, good.length - 20);
      const critical = w.pki.crl('intermediate', { nextUpdateDays: 7, crlNumber: 400, extraExtensions: ['1.2.3.4=critical,ASN1:NULL'] });
      const lower = w.pki.crl('intermediate', { nextUpdateDays: 7, crlNumber: 50 });
      assert.ok(impostor);
      const cases: [string, Buffer, RegExp][] = [
        ['bad signature', fs.readFileSync(badSig), /bad_signature|unknown_issuer/],
        ['truncated', truncated, /malformed/],
        ['unknown critical extension', fs.readFileSync(critical), /unsupported_critical_extension/],
        ['lower cRLNumber', fs.readFileSync(lower), /rollback/],
      ];
      for (const [name, bytes, code] of cases) {
        const refusedBefore = await metricValue(p, /^ca_proxy_crl_reloads_total\{result="refused"\}/);
        const logsBefore = p.logs.length;
        replaceCrl(dir, bytes);
        const t0 = Date.now();
        while (Date.now() - t0 < 3000 && (await metricValue(p, /^ca_proxy_crl_reloads_total\{result="refused"\}/)) === refusedBefore) {
          await new Promise((r) => setTimeout(r, 50));
        }
        assert.ok((await metricValue(p, /^ca_proxy_crl_reloads_total\{result="refused"\}/)) > refusedBefore, `${name}: refusal counted`);
        const logged = p.logs.slice(logsBefore).join('\n');
        assert.match(logged, code, `${name}: refusal logged with its code`);
        // the last good CRL (number 100, which revokes `revoked`) still answers
        await curlVia(p, w, revoked.port);
        const d = await p.nextDecision();
        assert.equal(d.reason, 'certificate_revoked', `${name}: last good CRL still in force`);
        assert.equal(d.revocation?.cRLNumber, '100');
      }
    } finally {
      await p.stop();
    }
  });
});

/** CONNECT through the proxy and a TLS session (trusting the interception CA). */
function openThroughProxy(p: RunningProxy, w: World, port: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const raw = net.connect(Number(new URL(p.proxyUrl).port), '127.0.0.1', () => {
      raw.write(`CONNECT localhost:${port} HTTP/1.1\r\nhost: localhost:${port}\r\n\r\n`);
    });
    raw.once('error', reject);
    raw.once('data', (head) => {
      if (!/^HTTP\/1\.1 200/.test(head.toString())) return reject(new Error(head.toString()));
      const s = tls.connect({ socket: raw, servername: 'localhost', ca: fs.readFileSync(w.interceptionCA.certPath) });
      s.once('secureConnect', () => resolve(s));
      s.once('error', reject);
    });
  });
}

function roundTrip(s: tls.TLSSocket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    s.once('data', (d) => resolve(d.toString()));
    s.once('error', reject);
    s.write(text);
  });
}
