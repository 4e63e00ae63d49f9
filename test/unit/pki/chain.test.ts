import { describe, test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import { chainReason } from '../../../internal/engine/pki-reasons';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Reason } from '../../../internal/engine/reasons';
import { verifyServerChain, MAX_PATH_LENGTH, type RevocationChecker } from '../../../internal/pki/chain';
import { certInfo, type CertInfo } from '../../../internal/pki/certinfo';
import type { CrlInfo, RevocationResult } from '../../../internal/pki/types';
import { RevocationStore } from '../../../internal/pki/store';
import { makePki, type LeafHandle, type Pki } from '../../support/pki';

const CRL: CrlInfo = { issuer: 'test', cRLNumber: '1', thisUpdate: new Date(0), nextUpdate: null, entries: 0, sha256: '', source: 'fake' };

/** A revocation source answering by serial (hex); records what it was asked. */
function fakeRevocation(answers: Record<string, RevocationResult['status']>, fallback: RevocationResult['status'] = 'good') {
  const calls: { serial: string; issuerSubject: string }[] = [];
  const checker: RevocationChecker = {
    check(cert: CertInfo, issuer: CertInfo | X509Certificate): RevocationResult {
      const serial = cert.serial.toString('hex');
      calls.push({ serial, issuerSubject: issuer instanceof X509Certificate ? issuer.subject : issuer.x509.subject });
      const status = answers[serial] ?? fallback;
      switch (status) {
        case 'good':
          return { status, crl: CRL };
        case 'stale':
          return { status, crl: CRL };
        case 'unknown':
          return { status };
        case 'revoked':
          return { status, crl: CRL, reason: 'keyCompromise', revocationDate: new Date(1000) };
      }
    },
  };
  return { checker, calls };
}

/** Strip leading zeros the way certinfo normalises serials. */
const normSerial = (hex: string) => hex.replace(/^(00)+/, '');

describe('verifyServerChain', () => {
  let pki: Pki;
  let leaf: LeafHandle;
  let ipLeaf: LeafHandle;
  let anchors: X509Certificate[];
  let chain: Buffer[];
  const opts = () => ({ anchors, hostname: 'srv.test', now: new Date(), revocation: null, leafOnly: false });

  beforeAll(() => {
    pki = makePki({ keyType: 'ec' });
    leaf = pki.issueLeaf('srv', { san: ['DNS:srv.test', 'DNS:*.wild.test'] });
    ipLeaf = pki.issueLeaf('ip', { san: ['IP:127.0.0.1'] });
    anchors = [pki.root.x509];
    chain = [leaf.certDer, pki.intermediate.certDer];
  });
  afterAll(() => pki.cleanup());

  test('a good chain: leaf → intermediate → anchor', () => {
    const r = verifyServerChain(chain, opts());
    assert.equal(chainReason(r), Reason.ok, r.detail);
    assert.equal(r.ok, true);
    assert.deepEqual(r.path.map((c) => c.sha256), [certInfo(leaf.certDer).sha256, certInfo(pki.intermediate.certDer).sha256]);
    assert.equal(r.anchor, pki.root.x509);
    assert.equal(r.revocation.status, 'not_checked');
  });

  test('the server may send the anchor too, and in any order', () => {
    for (const c of [[leaf.certDer, pki.intermediate.certDer, pki.root.certDer], [leaf.certDer, pki.root.certDer, pki.intermediate.certDer]]) {
      const r = verifyServerChain(c, opts());
      assert.equal(chainReason(r), Reason.ok, r.detail);
      assert.equal(r.path.length, 2, 'the path stops below the anchor');
      assert.equal(r.anchor?.fingerprint256, pki.root.x509.fingerprint256);
    }
  });

  test('an intermediate configured as anchor ends the path there', () => {
    const r = verifyServerChain([leaf.certDer], { ...opts(), anchors: [pki.intermediate.x509] });
    assert.equal(chainReason(r), Reason.ok, r.detail);
    assert.equal(r.path.length, 1);
  });

  test('a server certificate that is itself a trust anchor (pinned) is trusted with an empty path', () => {
    const r = verifyServerChain([leaf.certDer], { ...opts(), anchors: [pki.root.x509, leaf.x509], revocation: fakeRevocation({}).checker });
    assert.equal(chainReason(r), Reason.ok, r.detail);
    assert.deepEqual(r.path, []);
    assert.equal(r.anchor, leaf.x509);
    assert.equal(r.revocation.status, 'not_checked');
    assert.equal(chainReason(verifyServerChain([leaf.certDer], { ...opts(), anchors: [leaf.x509], hostname: 'x\u0000.srv.test' })), Reason.hostnameMismatch);
  });

  test('a missing intermediate is untrusted (no AIA fetching)', () => {
    const r = verifyServerChain([leaf.certDer], opts());
    assert.equal(chainReason(r), Reason.untrustedServer);
    assert.equal(r.ok, false);
    assert.match(r.detail ?? '', /CN=intermediate/);
    assert.equal(r.path.length, 1, 'the partial path still names the leaf');
  });

  test('an untrusted root, and an impostor root with the same name but another key', () => {
    const other = pki.addCa('other-root');
    assert.equal(chainReason(verifyServerChain(chain, { ...opts(), anchors: [other.x509] })), Reason.untrustedServer);
    const impostor = pki.addCa('impostor', { subject: pki.root.subject });
    const r = verifyServerChain(chain, { ...opts(), anchors: [impostor.x509] });
    assert.equal(chainReason(r), Reason.untrustedServer);
    // A self-signed root sent by the server does not make itself trusted.
    assert.equal(chainReason(verifyServerChain([...chain, pki.root.certDer], { ...opts(), anchors: [other.x509] })), Reason.untrustedServer);
  });

  test('expired and not-yet-valid certificates', () => {
    const future = new Date(new Date(leaf.x509.validTo).getTime() + 86400_000);
    const r = verifyServerChain(chain, { ...opts(), now: future });
    assert.equal(chainReason(r), Reason.certificateExpired);
    assert.match(r.detail ?? '', /leaf .*CN=srv/);
    const past = new Date(new Date(leaf.x509.validFrom).getTime() - 86400_000);
    assert.equal(chainReason(verifyServerChain(chain, { ...opts(), now: past })), Reason.certificateExpired);
  });

  test('an expired intermediate is reported even when the leaf is valid', () => {
    const shortCa = pki.addCa('short-ca', { issuer: 'root' });
    const l = pki.issueLeaf('under-short', { issuer: 'short-ca', san: ['DNS:srv.test'], days: 3650 * 2 });
    const farFuture = new Date(new Date(shortCa.x509.validTo).getTime() + 1000);
    const r = verifyServerChain([l.certDer, shortCa.certDer], { ...opts(), now: farFuture });
    assert.equal(chainReason(r), Reason.certificateExpired);
  });

  test('host name check: exact, case-insensitive, wildcard, mismatch, IP literal', () => {
    assert.equal(chainReason(verifyServerChain(chain, { ...opts(), hostname: 'SRV.test.' })), Reason.ok);
    assert.equal(chainReason(verifyServerChain(chain, { ...opts(), hostname: 'a.wild.test' })), Reason.ok);
    assert.equal(chainReason(verifyServerChain(chain, { ...opts(), hostname: 'a.b.wild.test' })), Reason.hostnameMismatch);
    const r = verifyServerChain(chain, { ...opts(), hostname: 'other.test' });
    assert.equal(chainReason(r), Reason.hostnameMismatch);
    assert.match(r.detail ?? '', /other\.test/);
    assert.equal(chainReason(verifyServerChain(chain, { ...opts(), hostname: null })), Reason.ok, 'no name, no host check');
    const ipChain = [ipLeaf.certDer, pki.intermediate.certDer];
    assert.equal(chainReason(verifyServerChain(ipChain, { ...opts(), hostname: '127.0.0.1' })), Reason.ok);
    assert.equal(chainReason(verifyServerChain(ipChain, { ...opts(), hostname: '127.0.0.2' })), Reason.hostnameMismatch);
    assert.equal(chainReason(verifyServerChain(ipChain, { ...opts(), hostname: 'ip.test' })), Reason.hostnameMismatch);
  });

  test('malformed input: empty chain, garbage, truncated certificate', () => {
    assert.equal(chainReason(verifyServerChain([], opts())), Reason.badServerCertificate);
    assert.equal(chainReason(verifyServerChain([Buffer.from('not a certificate')], opts())), Reason.badServerCertificate);
    const truncated = leaf.certDer.subarray(0, leaf.certDer.length - 10);
    const r = verifyServerChain([leaf.certDer, truncated], opts());
    assert.equal(chainReason(r), Reason.badServerCertificate);
    assert.match(r.detail ?? '', /certificate 1/);
  });

  test('an issuer that is not a CA is refused (OpenSSL agrees: invalid CA certificate)', () => {
    const notCa = pki.issueLeaf('not-a-ca', { san: ['DNS:not-a-ca.test'] });
    const dir = path.join(pki.dir, 'nonca');
    fs.mkdirSync(dir, { recursive: true });
    const key = path.join(dir, 'child.key');
    const csr = path.join(dir, 'child.csr');
    const ext = path.join(dir, 'ext.cnf');
    const out = path.join(dir, 'child.pem');
    fs.writeFileSync(ext, 'subjectAltName=DNS:srv.test\nextendedKeyUsage=serverAuth\n');
    execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-subj', '/CN=child', '-out', csr], { stdio: 'ignore' });
    execFileSync('openssl', ['x509', '-req', '-in', csr, '-CA', notCa.certPath, '-CAkey', notCa.keyPath, '-days', '2', '-extfile', ext, '-out', out], { stdio: 'ignore' });
    const child = new X509Certificate(fs.readFileSync(out));
    const r = verifyServerChain([child.raw, notCa.certDer, pki.intermediate.certDer], opts());
    assert.equal(chainReason(r), Reason.untrustedServer);
    assert.match(r.detail ?? '', /not a CA/);
  });

  test('a leaf whose extendedKeyUsage lacks serverAuth is a bad server certificate', () => {
    const dir = path.join(pki.dir, 'eku');
    fs.mkdirSync(dir, { recursive: true });
    const key = path.join(dir, 'c.key');
    const csr = path.join(dir, 'c.csr');
    const ext = path.join(dir, 'ext.cnf');
    const out = path.join(dir, 'c.pem');
    fs.writeFileSync(ext, 'subjectAltName=DNS:srv.test\nextendedKeyUsage=clientAuth\n');
    execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-subj', '/CN=client-only', '-out', csr], { stdio: 'ignore' });
    execFileSync('openssl', ['x509', '-req', '-in', csr, '-CA', pki.intermediate.certPath, '-CAkey', pki.intermediate.keyPath, '-days', '2', '-extfile', ext, '-out', out], { stdio: 'ignore' });
    const r = verifyServerChain([new X509Certificate(fs.readFileSync(out)).raw, pki.intermediate.certDer], opts());
    assert.equal(chainReason(r), Reason.badServerCertificate);
    assert.match(r.detail ?? '', /serverAuth/);
  });

  test('an intermediate whose keyUsage lacks keyCertSign is refused', () => {
    const noSign = pki.addCa('no-certsign', { issuer: 'root', keyUsage: 'critical,digitalSignature,cRLSign' });
    const l = pki.issueLeaf('under-no-certsign', { issuer: 'no-certsign', san: ['DNS:srv.test'] });
    const r = verifyServerChain([l.certDer, noSign.certDer], opts());
    assert.equal(chainReason(r), Reason.untrustedServer);
    assert.match(r.detail ?? '', /keyCertSign/);
  });

  test('trusted or not, as openssl verify decides (independent oracle)', () => {
    const write = (name: string, ders: Buffer[]) => {
      const file = path.join(pki.dir, `${name}.pem`);
      fs.writeFileSync(file, ders.map((d) => new X509Certificate(d).toString()).join(''));
      return file;
    };
    const opensslOk = (leafDer: Buffer, untrusted: Buffer[], anchor: X509Certificate) => {
      // -partial_chain: any configured anchor ends the path, self-signed or not (our semantics).
      const args = ['verify', '-partial_chain', '-CAfile', write('anchor', [anchor.raw]), '-purpose', 'sslserver'];
      if (untrusted.length) args.push('-untrusted', write('untrusted', untrusted));
      args.push(write('leaf', [leafDer]));
      try {
        execFileSync('openssl', args, { stdio: 'ignore' });
        return true;
      } catch {
        return false;
      }
    };
    const other = pki.cas.get('other-root') ?? pki.addCa('other-root');
    const scenarios: [string, Buffer[], X509Certificate][] = [
      ['good', chain, pki.root.x509],
      ['missing intermediate', [leaf.certDer], pki.root.x509],
      ['other root', chain, other.x509],
      ['intermediate anchor', [leaf.certDer], pki.intermediate.x509],
    ];
    for (const [name, c, anchor] of scenarios) {
      const ours = verifyServerChain(c, { ...opts(), anchors: [anchor], hostname: null }).ok;
      assert.equal(ours, opensslOk(c[0]!, c.slice(1), anchor), name);
    }
  });

  test(`a path longer than MAX_PATH_LENGTH (${MAX_PATH_LENGTH}) is refused`, () => {
    let issuer = 'root';
    const sent: Buffer[] = [];
    for (let i = 0; i < MAX_PATH_LENGTH; i++) {
      const ca = pki.addCa(`deep-${i}`, { issuer });
      sent.unshift(ca.certDer);
      issuer = ca.name;
    }
    const deepLeaf = pki.issueLeaf('deep-leaf', { issuer, san: ['DNS:srv.test'] });
    const r = verifyServerChain([deepLeaf.certDer, ...sent], opts());
    assert.equal(chainReason(r), Reason.untrustedServer);
    // One fewer intermediate fits: leaf + 8 intermediates + anchor = 10.
    const okLeaf = pki.issueLeaf('deep-ok', { issuer: 'deep-7', san: ['DNS:srv.test'] });
    const r2 = verifyServerChain([okLeaf.certDer, ...sent.slice(2)], opts());
    assert.equal(chainReason(r2), Reason.ok, r2.detail);
    assert.equal(r2.path.length, 9);
  });

  describe('revocation (fake source)', () => {
    const leafSerial = () => normSerial(leaf.serialHex);
    const interSerial = () => certInfo(pki.intermediate.certDer).serial.toString('hex');

    test('every certificate below the anchor is checked against the next one up', () => {
      const { checker, calls } = fakeRevocation({});
      const r = verifyServerChain(chain, { ...opts(), revocation: checker });
      assert.equal(chainReason(r), Reason.ok);
      assert.equal(r.revocation.status, 'good');
      assert.deepEqual(calls, [
        { serial: leafSerial(), issuerSubject: pki.intermediate.x509.subject },
        { serial: interSerial(), issuerSubject: pki.root.x509.subject },
      ]);
    });

    test('a revoked leaf', () => {
      const { checker } = fakeRevocation({ [leafSerial()]: 'revoked' });
      const r = verifyServerChain(chain, { ...opts(), revocation: checker });
      assert.equal(chainReason(r), Reason.certificateRevoked);
      assert.equal(r.ok, false);
      assert.equal(r.revocation.status, 'revoked');
      assert.equal(r.revocation.serial, leafSerial());
      assert.equal(r.revocation.result?.status === 'revoked' && r.revocation.result.reason, 'keyCompromise');
    });

    test('a revoked intermediate is found, unless leafOnly', () => {
      const { checker } = fakeRevocation({ [interSerial()]: 'revoked' });
      const r = verifyServerChain(chain, { ...opts(), revocation: checker });
      assert.equal(chainReason(r), Reason.certificateRevoked);
      assert.equal(r.revocation.serial, interSerial());
      const { checker: c2, calls } = fakeRevocation({ [interSerial()]: 'revoked' });
      const leafOnly = verifyServerChain(chain, { ...opts(), revocation: c2, leafOnly: true });
      assert.equal(chainReason(leafOnly), Reason.ok);
      assert.equal(calls.length, 1, 'leafOnly checks the leaf alone');
    });

    test('the worst status wins: revoked > stale > unknown > good', () => {
      const cases: [Record<string, RevocationResult['status']>, RevocationResult['status'], string][] = [
        [{ [leafSerial()]: 'unknown', [interSerial()]: 'stale' }, 'stale', interSerial()],
        [{ [leafSerial()]: 'stale', [interSerial()]: 'unknown' }, 'stale', leafSerial()],
        [{ [leafSerial()]: 'good', [interSerial()]: 'unknown' }, 'unknown', interSerial()],
        [{ [leafSerial()]: 'stale', [interSerial()]: 'revoked' }, 'revoked', interSerial()],
      ];
      const reasons = { stale: Reason.revocationStale, unknown: Reason.revocationUnknown, revoked: Reason.certificateRevoked, good: Reason.ok };
      for (const [answers, status, serial] of cases) {
        const r = verifyServerChain(chain, { ...opts(), revocation: fakeRevocation(answers).checker });
        assert.equal(r.revocation.status, status, JSON.stringify(answers));
        assert.equal(r.revocation.serial, serial);
        assert.equal(chainReason(r), reasons[status]);
      }
    });

    test('revocation is not consulted for a chain that already failed', () => {
      const { checker, calls } = fakeRevocation({});
      const r = verifyServerChain([leaf.certDer], { ...opts(), revocation: checker });
      assert.equal(chainReason(r), Reason.untrustedServer);
      assert.equal(calls.length, 0);
      assert.equal(r.revocation.status, 'not_checked');
    });
  });
});

describe('verifyServerChain with the real RevocationStore and CRLs made by openssl ca', () => {
  let pki: Pki;
  let good: LeafHandle;
  let revokedLeaf: LeafHandle;
  let underRevokedCa: LeafHandle;
  let inter2Der: Buffer;
  let crlRoot: string;
  let crlInter: string;
  let crlInter2: string;
  const base = () => ({ anchors: [pki.root.x509], hostname: null, now: new Date(), leafOnly: false });

  beforeAll(() => {
    pki = makePki({ keyType: 'ec' });
    good = pki.issueLeaf('good', { san: ['DNS:good.test'] });
    revokedLeaf = pki.issueLeaf('revoked', { san: ['DNS:revoked.test'] });
    const inter2 = pki.addCa('inter2', { issuer: 'root' });
    inter2Der = inter2.certDer;
    underRevokedCa = pki.issueLeaf('under-revoked-ca', { issuer: 'inter2', san: ['DNS:x.test'] });
    pki.revoke('intermediate', revokedLeaf.certPath, 'keyCompromise');
    pki.revoke('root', inter2.certPath, 'cACompromise');
    crlInter = pki.crl('intermediate');
    crlRoot = pki.crl('root');
    crlInter2 = pki.crl('inter2');
  });
  afterAll(() => pki.cleanup());

  async function store(paths: string[]): Promise<RevocationStore> {
    const s = new RevocationStore({ trust: [pki.root.x509, pki.intermediate.x509, pki.cas.get('inter2')!.x509] });
    const report = await s.loadPaths(paths);
    // An expired CRL is refused as `expired` but kept as its scope's last resort (store.ts): not a refusal here.
    assert.deepEqual(report.refused.filter((r) => !r.kept), [], JSON.stringify(report.refused));
    return s;
  }

  test('good leaf, revoked leaf (keyCompromise)', async () => {
    const s = await store([crlRoot, crlInter, crlInter2]);
    const ok = verifyServerChain([good.certDer, pki.intermediate.certDer], { ...base(), revocation: s });
    assert.equal(chainReason(ok), Reason.ok, ok.detail);
    assert.equal(ok.revocation.status, 'good');
    const r = verifyServerChain([revokedLeaf.certDer, pki.intermediate.certDer], { ...base(), revocation: s });
    assert.equal(chainReason(r), Reason.certificateRevoked);
    assert.equal(r.revocation.serial, normSerial(revokedLeaf.serialHex));
    assert.ok(r.revocation.result?.status === 'revoked');
    assert.equal(r.revocation.result.reason, 'keyCompromise');
  });

  test('revoked intermediate (cACompromise on the root CRL), ignored when leafOnly', async () => {
    const s = await store([crlRoot, crlInter, crlInter2]);
    const chain = [underRevokedCa.certDer, inter2Der];
    const r = verifyServerChain(chain, { ...base(), revocation: s });
    assert.equal(chainReason(r), Reason.certificateRevoked);
    assert.equal(r.revocation.serial, certInfo(inter2Der).serial.toString('hex'));
    assert.ok(r.revocation.result?.status === 'revoked' && r.revocation.result.reason === 'cACompromise');
    assert.equal(chainReason(verifyServerChain(chain, { ...base(), revocation: s, leafOnly: true })), Reason.ok);
  });

  test('no CRL for the root: the intermediate is unknown; leafOnly does not look', async () => {
    const s = await store([crlInter]);
    const r = verifyServerChain([good.certDer, pki.intermediate.certDer], { ...base(), revocation: s });
    assert.equal(chainReason(r), Reason.revocationUnknown);
    assert.equal(r.revocation.serial, certInfo(pki.intermediate.certDer).serial.toString('hex'));
    assert.equal(chainReason(verifyServerChain([good.certDer, pki.intermediate.certDer], { ...base(), revocation: s, leafOnly: true })), Reason.ok);
  });

  test('a CRL past nextUpdate answers stale; a revoked entry on it still wins', async () => {
    const old = pki.crl('intermediate', { thisUpdate: new Date(Date.now() - 3 * 86400_000), nextUpdate: new Date(Date.now() - 86400_000), crlNumber: 50 });
    const s = await store([crlRoot, old]);
    const r = verifyServerChain([good.certDer, pki.intermediate.certDer], { ...base(), revocation: s });
    assert.equal(chainReason(r), Reason.revocationStale);
    assert.equal(r.revocation.serial, normSerial(good.serialHex));
    assert.equal(chainReason(verifyServerChain([revokedLeaf.certDer, pki.intermediate.certDer], { ...base(), revocation: s })), Reason.certificateRevoked);
  });
});
