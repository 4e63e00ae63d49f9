/**
 * RevocationStore: loading files and folders, refusals that keep the last good CRL, rollback,
 * staleness through the `now` option, file removal, the worker path, and watch().
 */
import { describe, test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import { certInfo, type CertInfo } from '../../../internal/pki/certinfo';
import { RevocationStore, type LoadReport } from '../../../internal/pki/store';
import { closeCrlWorker } from '../../../internal/pki/crl-worker';
import { makePki, type Pki } from '../../support/pki';

const toPem = (der: Buffer): string => `-----BEGIN X509 CRL-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END X509 CRL-----\n`;

describe('RevocationStore', () => {
  let pki: Pki;
  let revoked: CertInfo;
  let held: CertInfo;
  let good: CertInfo;
  let interCa: CertInfo;
  let inter: CertInfo;
  let root: CertInfo;
  let work: string;
  let n = 0;
  const fresh = (): string => {
    const d = path.join(work, `case${++n}`);
    fs.mkdirSync(d);
    return d;
  };
  const newStore = (now?: () => Date, extra: Partial<ConstructorParameters<typeof RevocationStore>[0]> = {}): RevocationStore =>
    new RevocationStore({ trust: [pki.root.x509, pki.intermediate.x509], now, ...extra });

  beforeAll(() => {
    pki = makePki({ keyType: 'ec' });
    work = path.join(pki.dir, 'work');
    fs.mkdirSync(work);
    const r = pki.issueLeaf('revoked', { serial: '80' + '11'.repeat(15) });
    pki.revoke('intermediate', r.certPath, 'keyCompromise');
    const h = pki.issueLeaf('held');
    pki.revoke('intermediate', h.certPath, 'certificateHold');
    revoked = certInfo(r.certDer);
    held = certInfo(h.certDer);
    good = certInfo(pki.issueLeaf('good').certDer);
    pki.revoke('root', pki.intermediate.certPath, 'superseded');
    inter = certInfo(pki.intermediate.x509);
    interCa = inter;
    root = certInfo(pki.root.x509);
  });
  afterAll(async () => {
    pki.cleanup();
    await closeCrlWorker();
  });

  test('DER file and a PEM bundle with several CRLs: revoked (reason, date), good, unknown', async () => {
    const d = fresh();
    const interCrl = fs.readFileSync(pki.crl('intermediate', { crlNumber: 10 }));
    const rootCrl = fs.readFileSync(pki.crl('root', { crlNumber: 3 }));
    fs.writeFileSync(path.join(d, 'both.pem'), toPem(interCrl) + 'comment between blocks\n' + toPem(rootCrl));
    const store = newStore();
    assert.equal(store.ready, false);
    const reports: LoadReport[] = [];
    store.on('reload', (r: LoadReport) => reports.push(r));
    const rep = await store.loadPaths([path.join(d, 'both.pem')]);
    assert.deepEqual(rep.refused, []);
    assert.equal(rep.accepted.length, 2);
    assert.deepEqual(rep.accepted.map((a) => a.source).sort(), [`${d}/both.pem#0`, `${d}/both.pem#1`]);
    assert.equal(reports.length, 1);
    assert.equal(store.ready, true);

    const res = store.check(revoked, interCa);
    assert.equal(res.status, 'revoked');
    assert.ok(res.status === 'revoked' && res.reason === 'keyCompromise' && res.revocationDate instanceof Date);
    const hres = store.check(held, pki.intermediate.x509);
    assert.ok(hres.status === 'revoked' && hres.reason === 'certificateHold');
    const g = store.check(good, interCa);
    assert.ok(g.status === 'good' && g.crl.cRLNumber === '10' && g.crl.entries === 2 && g.crl.issuer === 'CN=intermediate,O=ca-proxy test');
    const i = store.check(inter, root);
    assert.ok(i.status === 'revoked' && i.reason === 'superseded');
    assert.deepEqual(store.check(good, root), { status: 'unknown' }, 'issuer mismatch');

    // The same CRLs as DER files in a folder.
    const d2 = fresh();
    fs.writeFileSync(path.join(d2, 'inter.crl'), interCrl);
    fs.writeFileSync(path.join(d2, 'root.crl'), rootCrl);
    fs.writeFileSync(path.join(d2, '.hidden'), 'ignored');
    const s2 = newStore();
    const rep2 = await s2.loadPaths([d2]);
    assert.equal(rep2.accepted.length, 2);
    assert.equal(s2.snapshot().length, 2);
    assert.equal(s2.check(revoked, interCa).status, 'revoked');
  });

  test('refusals keep the last good CRL: bad signature, truncated, unknown critical extension, rollback', async () => {
    const d = fresh();
    const file = path.join(d, 'inter.crl');
    fs.copyFileSync(pki.crl('intermediate', { crlNumber: 20 }), file);
    const store = newStore();
    assert.equal((await store.loadPaths([d])).accepted.length, 1);
    const before = store.snapshot()[0]!;

    const impostor = pki.cas.get('impostor') ?? pki.addCa('impostor', { subject: pki.intermediate.subject });
    void impostor;
    const cases: [string, () => Buffer][] = [
      ['bad_signature', () => fs.readFileSync(pki.crl('impostor', { aki: false, crlNumber: 99 }))],
      ['malformed', () => fs.readFileSync(pki.crl('intermediate', { crlNumber: 30 })).subarray(0, 100)],
      ['unsupported_critical_extension', () => fs.readFileSync(pki.crl('intermediate', { crlNumber: 31, extraExtensions: ['1.2.3.4=critical,ASN1:NULL'] }))],
      ['rollback', () => fs.readFileSync(pki.crl('intermediate', { crlNumber: 19 }))],
      ['not_yet_valid', () => fs.readFileSync(pki.crl('intermediate', { crlNumber: 32, thisUpdate: new Date(Date.now() + 86400_000) }))],
    ];
    for (const [code, make] of cases) {
      fs.writeFileSync(file, make());
      const rep = await store.loadPaths([d]);
      assert.equal(rep.accepted.length, 0, code);
      assert.equal(rep.refused.length, 1, code);
      assert.equal(rep.refused[0]!.code, code);
      assert.equal(rep.refused[0]!.source, file);
      assert.deepEqual(store.snapshot(), [before], `${code}: last good CRL stays`);
      assert.equal(store.check(revoked, interCa).status, 'revoked', code);
      assert.equal(store.check(good, interCa).status, 'good', code);
    }
    // A higher cRLNumber is accepted.
    fs.copyFileSync(pki.crl('intermediate', { crlNumber: 21 }), file);
    const rep = await store.loadPaths([d]);
    assert.equal(rep.accepted[0]!.cRLNumber, '21');
    // Two CRLs of one scope in one load: the newer wins, the older is reported as superseded.
    fs.copyFileSync(pki.crl('intermediate', { crlNumber: 22 }), path.join(d, 'older.crl'));
    fs.copyFileSync(pki.crl('intermediate', { crlNumber: 23 }), file);
    const rep2 = await store.loadPaths([d]);
    assert.deepEqual(rep2.accepted.map((a) => a.cRLNumber), ['23']);
    assert.ok(rep2.refused.some((r) => r.code === 'rollback' && r.source.endsWith('older.crl')));
  });

  test('stale: past nextUpdate + skew answers stale, revoked still wins; a delta CRL alone is never taken for a complete CRL', async () => {
    const d = fresh();
    fs.copyFileSync(pki.crl('intermediate', { crlNumber: 40, nextUpdateDays: 1 }), path.join(d, 'i.crl'));
    let now = new Date();
    const store = newStore(() => now, { clockSkewMs: 60_000 });
    const rep = await store.loadPaths([d]);
    assert.equal(rep.stale.length, 0);
    assert.equal(store.check(good, interCa).status, 'good');
    now = new Date(Date.now() + 2 * 86400_000);
    const s = store.check(good, interCa);
    assert.ok(s.status === 'stale' && s.crl.cRLNumber === '40');
    assert.equal(store.check(revoked, interCa).status, 'revoked');
    const rep2 = await store.loadPaths([d]);
    assert.equal(rep2.stale.length, 1, 'an expired CRL with nothing current in its scope is kept and reported stale');
    // …and judged as at any other time: refused as `expired` (marked kept), not accepted as current.
    assert.deepEqual(rep2.refused.map((r) => [r.code, r.kept]), [['expired', true]]);
    assert.equal(rep2.accepted.length, 0);
    assert.deepEqual(store.status().stale.map((c) => c.cRLNumber), ['40']);

    const pyDelta = fs.readFileSync(pki.crl('intermediate', { crlNumber: 41, extraExtensions: ['2.5.29.27=critical,ASN1:INTEGER:40'] }));
    fs.writeFileSync(path.join(d, 'i.crl'), pyDelta);
    const rep3 = await store.loadPaths([d]);
    // Delta CRLs are supported (RFC 5280 §5.2.4): accepted beside the complete CRL 40 (kept: its file is
    // still loaded), which is past nextUpdate, so the answer stays stale, never good from the delta.
    assert.equal(rep3.accepted.length, 1);
    const s3 = store.check(good, interCa);
    assert.ok(s3.status === 'stale' && s3.crl.cRLNumber === '40', JSON.stringify(s3));
  });

  test('a deleted CRL file keeps its last good CRL (reported as retained); a missing path is reported', async () => {
    const d = fresh();
    fs.copyFileSync(pki.crl('intermediate', { crlNumber: 50 }), path.join(d, 'i.crl'));
    fs.copyFileSync(pki.crl('root', { crlNumber: 50 }), path.join(d, 'r.crl'));
    const store = newStore();
    await store.loadPaths([d]);
    assert.equal(store.snapshot().length, 2);
    fs.rmSync(path.join(d, 'i.crl'));
    const rep = await store.loadPaths([d]);
    assert.equal(rep.accepted.length, 1);
    assert.deepEqual(rep.retained.map((r) => r.source), [path.join(d, 'i.crl')]);
    assert.equal(store.check(good, interCa).status, 'good', 'the deleted file did not turn its certificates unknown');
    assert.equal(store.check(revoked, interCa).status, 'revoked');
    assert.equal(store.check(inter, root).status, 'revoked');
    const rep2 = await store.loadPaths([path.join(d, 'nope')]);
    assert.equal(rep2.refused[0]?.source, path.join(d, 'nope'));
    assert.equal(store.snapshot().length, 2, 'a folder gone altogether keeps every last good CRL');
    assert.equal(store.ready, true);
  });

  test('an expired CRL never replaces a current one, whatever its cRLNumber', async () => {
    const d = fresh();
    fs.copyFileSync(pki.crl('intermediate', { crlNumber: 70 }), path.join(d, 'i.crl'));
    const store = newStore();
    await store.loadPaths([d]);
    const now = Date.now();
    const expired = pki.crl('intermediate', { crlNumber: 71, thisUpdate: new Date(now - 3 * 86400_000), nextUpdate: new Date(now - 86400_000) });
    fs.copyFileSync(expired, path.join(d, 'i.crl'));
    const rep = await store.loadPaths([d]);
    assert.equal(rep.refused[0]?.code, 'expired');
    assert.equal(store.snapshot()[0]?.cRLNumber, '70');
    assert.equal(store.check(good, interCa).status, 'good');
  });

  test('gate: a held load changes nothing (set, rollback guard, no reload event); a passed one swaps; equal sets give equal digests', async () => {
    const d = fresh();
    fs.copyFileSync(pki.crl('intermediate', { crlNumber: 80 }), path.join(d, 'i.crl'));
    const store = newStore();
    await store.loadPaths([d]);
    const digests: string[] = [];
    let answer = false;
    store.gate(async (digest) => {
      digests.push(digest);
      return answer;
    });
    const events: LoadReport[] = [];
    store.on('reload', (r: LoadReport) => events.push(r));
    fs.copyFileSync(pki.crl('intermediate', { crlNumber: 81 }), path.join(d, 'i.crl'));
    const held = await store.loadPaths([d]);
    assert.equal(held.held, true);
    assert.deepEqual(events, []);
    assert.equal(store.snapshot()[0]?.cRLNumber, '80');
    answer = true;
    const again = await store.loadPaths([d]);
    assert.equal(again.held, undefined);
    assert.equal(store.snapshot()[0]?.cRLNumber, '81');
    assert.equal(events.length, 1);
    assert.equal(digests.length, 2);
    assert.equal(digests[0], digests[1], 'the same files give the same digest');
    assert.match(digests[0]!, /^[0-9a-f]{64}$/);
    // Another store reading the same files computes the same digest (what the workers compare).
    const other = newStore();
    let seen = '';
    other.gate(async (digest) => ((seen = digest), true));
    await other.loadPaths([d]);
    assert.equal(seen, digests[1]);
  });

  test('large files go through the worker with the same results', async () => {
    const d = fresh();
    const der = fs.readFileSync(pki.crl('intermediate', { crlNumber: 60 }));
    fs.writeFileSync(path.join(d, 'i.crl'), der);
    fs.writeFileSync(path.join(d, 'b.pem'), toPem(fs.readFileSync(pki.crl('root', { crlNumber: 60 }))));
    const store = newStore(undefined, { inlineBelowBytes: 0 });
    const rep = await store.loadPaths([d]);
    assert.deepEqual(rep.refused, []);
    assert.equal(rep.accepted.length, 2);
    const r = store.check(revoked, interCa);
    assert.ok(r.status === 'revoked' && r.reason === 'keyCompromise');
    assert.equal(store.check(good, interCa).status, 'good');
    assert.equal(store.check(inter, root).status, 'revoked');
    fs.writeFileSync(path.join(d, 'i.crl'), der.subarray(0, der.length - 3));
    const rep2 = await store.loadPaths([d]);
    assert.equal(rep2.refused[0]?.code, 'malformed');
    assert.equal(store.check(revoked, interCa).status, 'revoked', 'last good stays');
  });

  test('watch: an atomic rename and a ConfigMap-style ..data swap trigger a reload', async () => {
    const d = fresh();
    // ConfigMap volume layout: d/..data -> ..v1, d/crl -> ..data/crl
    const v1 = path.join(d, '..v1');
    fs.mkdirSync(v1);
    fs.copyFileSync(pki.crl('intermediate', { crlNumber: 70 }), path.join(v1, 'crl'));
    fs.symlinkSync('..v1', path.join(d, '..data'));
    fs.symlinkSync('..data/crl', path.join(d, 'crl'));
    const store = newStore();
    await store.loadPaths([d]);
    assert.equal(store.snapshot()[0]?.cRLNumber, '70');
    const stop = store.watch([d], { debounceMs: 20, pollMs: 100 });
    try {
      const v2 = path.join(d, '..v2');
      fs.mkdirSync(v2);
      fs.copyFileSync(pki.crl('intermediate', { crlNumber: 71 }), path.join(v2, 'crl'));
      // The store's timers are unref'd: keep the loop alive while waiting (and give up eventually).
      const guard = setTimeout(() => store.emit('reload', { accepted: [], refused: [{ source: 'test', code: 'malformed', message: 'no reload within 20 s' }], stale: [] }), 20_000);
      const reloaded = once(store, 'reload').finally(() => clearTimeout(guard));
      fs.symlinkSync('..v2', path.join(d, '..data_tmp'));
      fs.renameSync(path.join(d, '..data_tmp'), path.join(d, '..data'));
      const [rep] = (await reloaded) as [LoadReport];
      assert.equal(rep.accepted[0]?.cRLNumber, '71');
      assert.equal(store.snapshot()[0]?.cRLNumber, '71');
    } finally {
      stop();
    }
  });
});
