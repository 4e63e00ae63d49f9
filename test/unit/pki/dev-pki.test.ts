import { describe, test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import { chainReason } from '../../../internal/engine/pki-reasons';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Reason } from '../../../internal/engine/reasons';
import { verifyServerChain } from '../../../internal/pki/chain';
import { loadIdentities } from '../../../internal/pki/identity';
import { LeafMinter } from '../../../internal/pki/mint';
import { RevocationStore } from '../../../internal/pki/store';
import { ensureDevPki } from '../../../scripts/dev-pki';

function openssl(args: string[]): { ok: boolean; out: string } {
  try {
    return { ok: true, out: execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string };
    return { ok: false, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

const FILES = [
  'interception-ca.crt', 'interception-ca.key', 'client-ca.crt', 'client-ca.key', 'proxy-identity.crt', 'proxy-identity.key',
  'demo-ca.crt', 'demo-ca.key', 'demo-good.crt', 'demo-good.key', 'demo-revoked.crt', 'demo-revoked.key', 'demo-crl.pem',
  'workload-ca.crt', 'workload-ca.key', 'workload.crt', 'workload.key',
];

describe('scripts/dev-pki', () => {
  let dir: string;
  const f = (name: string) => path.join(dir, name);
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-devpki-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('first run creates every file; keys are mode 0600', async () => {
    const lines: string[] = [];
    const r = await ensureDevPki(dir, { log: (l) => lines.push(l) });
    assert.deepEqual([...r.created].sort(), [...FILES].sort());
    assert.deepEqual(r.reused, []);
    assert.equal(lines.length, FILES.length);
    for (const name of FILES) {
      const st = fs.statSync(f(name));
      if (name.endsWith('.key')) assert.equal(st.mode & 0o777, 0o600, name);
    }
    assert.equal(fs.readdirSync(dir).length, FILES.length, 'no temporary files left behind');
  });

  test('second run reuses everything, byte for byte', async () => {
    const before = new Map(FILES.map((n) => [n, fs.readFileSync(f(n), 'utf8')]));
    const r = await ensureDevPki(dir);
    assert.deepEqual(r.created, []);
    assert.deepEqual([...r.reused].sort(), [...FILES].sort());
    for (const n of FILES) assert.equal(fs.readFileSync(f(n), 'utf8'), before.get(n), n);
  });

  test('openssl verify: demo-good is OK, demo-revoked is revoked by demo-crl.pem', () => {
    const good = openssl(['verify', '-crl_check', '-CAfile', f('demo-ca.crt'), '-CRLfile', f('demo-crl.pem'), '-purpose', 'sslserver', f('demo-good.crt')]);
    assert.ok(good.ok, good.out);
    const revoked = openssl(['verify', '-crl_check', '-CAfile', f('demo-ca.crt'), '-CRLfile', f('demo-crl.pem'), f('demo-revoked.crt')]);
    assert.equal(revoked.ok, false);
    assert.match(revoked.out, /certificate revoked/);
    const text = openssl(['crl', '-in', f('demo-crl.pem'), '-noout', '-text']).out;
    assert.match(text, /CRL Number: \n\s+1\n/);
    assert.match(text, /Key Compromise/);
    const next = /Next Update: (.*)/.exec(text)![1]!;
    const last = /Last Update: (.*)/.exec(text)![1]!;
    assert.equal(new Date(next).getTime() - new Date(last).getTime(), 7 * 86400_000);
  });

  test('certificate profiles: SANs, EKUs, CA names', () => {
    const good = new X509Certificate(fs.readFileSync(f('demo-good.crt')));
    assert.equal(good.subjectAltName, 'DNS:good.demo.localhost, DNS:localhost, IP Address:127.0.0.1');
    assert.equal(new X509Certificate(fs.readFileSync(f('demo-revoked.crt'))).subjectAltName, 'DNS:revoked.demo.localhost');
    const ica = new X509Certificate(fs.readFileSync(f('interception-ca.crt')));
    assert.match(ica.subject, /CN=ca-proxy development interception CA/);
    assert.equal(ica.ca, true);
    assert.equal(ica.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    for (const [leaf, ca] of [['proxy-identity', 'client-ca'], ['workload', 'workload-ca']]) {
      const v = openssl(['verify', '-CAfile', f(`${ca}.crt`), '-purpose', 'sslclient', f(`${leaf}.crt`)]);
      assert.ok(v.ok, v.out);
      assert.deepEqual([...new X509Certificate(fs.readFileSync(f(`${leaf}.crt`))).keyUsage], ['1.3.6.1.5.5.7.3.2']);
    }
  });

  test('the files work with the rest of internal/pki', async () => {
    const anchors = [new X509Certificate(fs.readFileSync(f('demo-ca.crt')))];
    const der = (n: string) => new X509Certificate(fs.readFileSync(f(n))).raw;
    const ok = verifyServerChain([der('demo-good.crt')], { anchors, hostname: 'good.demo.localhost', now: new Date(), revocation: null, leafOnly: false });
    assert.equal(chainReason(ok), Reason.ok, ok.detail);
    const clientOnly = verifyServerChain([der('workload.crt')], { anchors: [new X509Certificate(fs.readFileSync(f('workload-ca.crt')))], hostname: null, now: new Date(), revocation: null, leafOnly: false });
    assert.equal(chainReason(clientOnly), Reason.badServerCertificate, 'a clientAuth-only certificate is no server certificate');
    const store = new RevocationStore({ trust: anchors });
    const report = await store.loadPaths([f('demo-crl.pem')]);
    assert.equal(report.accepted.length, 1, JSON.stringify(report.refused));
    const revoked = verifyServerChain([der('demo-revoked.crt')], { anchors, hostname: 'revoked.demo.localhost', now: new Date(), revocation: store, leafOnly: false });
    assert.equal(chainReason(revoked), Reason.certificateRevoked);
    assert.ok(revoked.revocation.result?.status === 'revoked' && revoked.revocation.result.reason === 'keyCompromise');
    const checked = verifyServerChain([der('demo-good.crt')], { anchors, hostname: '127.0.0.1', now: new Date(), revocation: store, leafOnly: false });
    assert.equal(chainReason(checked), Reason.ok, checked.detail);
    assert.equal(checked.revocation.status, 'good');
    const ids = loadIdentities([{ name: 'dev', cert: 'proxy-identity.crt', key: 'proxy-identity.key' }], dir);
    assert.ok(ids.get('dev'));
    const minter = new LeafMinter({ caCertPem: fs.readFileSync(f('interception-ca.crt'), 'utf8'), caKeyPem: fs.readFileSync(f('interception-ca.key'), 'utf8') });
    const leaf = await minter.mint('example.com');
    fs.writeFileSync(path.join(dir, '..', `${path.basename(dir)}-minted.pem`), leaf.certPem);
    const v = openssl(['verify', '-CAfile', f('interception-ca.crt'), path.join(dir, '..', `${path.basename(dir)}-minted.pem`)]);
    fs.rmSync(path.join(dir, '..', `${path.basename(dir)}-minted.pem`));
    assert.ok(v.ok, v.out);
  });

  test('a CRL older than a day is re-issued with the next cRLNumber; certificates are kept', async () => {
    const crlBefore = fs.readFileSync(f('demo-crl.pem'), 'utf8');
    const goodBefore = fs.readFileSync(f('demo-good.crt'), 'utf8');
    const r = await ensureDevPki(dir, { now: new Date(Date.now() + 2 * 86400_000) });
    assert.deepEqual(r.created, ['demo-crl.pem']);
    assert.notEqual(fs.readFileSync(f('demo-crl.pem'), 'utf8'), crlBefore);
    assert.equal(fs.readFileSync(f('demo-good.crt'), 'utf8'), goodBefore);
    const text = openssl(['crl', '-in', f('demo-crl.pem'), '-noout', '-text']).out;
    assert.match(text, /CRL Number: \n\s+2\n/);
  });

  test('a damaged or missing file is re-made, with everything that depends on it', async () => {
    fs.writeFileSync(f('demo-ca.key'), 'garbage');
    const r = await ensureDevPki(dir);
    for (const n of ['demo-ca.crt', 'demo-ca.key', 'demo-good.crt', 'demo-revoked.crt', 'demo-crl.pem']) assert.ok(r.created.includes(n), n);
    assert.ok(r.reused.includes('interception-ca.crt') && r.reused.includes('workload.crt'));
    const revoked = openssl(['verify', '-crl_check', '-CAfile', f('demo-ca.crt'), '-CRLfile', f('demo-crl.pem'), f('demo-revoked.crt')]);
    assert.match(revoked.out, /certificate revoked/);
    fs.rmSync(f('workload.crt'));
    const r2 = await ensureDevPki(dir);
    assert.deepEqual([...r2.created].sort(), ['workload.crt', 'workload.key']);
  });

  test('the CLI prints what it did', () => {
    const script = path.resolve(__dirname, '../../../scripts/dev-pki.js');
    const out = execFileSync(process.execPath, [script, dir], { encoding: 'utf8' });
    assert.equal(out.trim().split('\n').length, FILES.length);
    assert.ok(out.split('\n').filter(Boolean).every((l) => l.startsWith('reused ')), out);
    assert.throws(() => execFileSync(process.execPath, [script], { stdio: 'pipe' }), /usage/);
  });
});
