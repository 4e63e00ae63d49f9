/**
 * CRL parsing and signature verification against CRLs made by `openssl ca -gencrl`, with
 * `openssl crl -text` as the oracle, plus hand-built DER for encodings OpenSSL will not produce,
 * and the shared CRL corpus manifest.
 */
import { describe, test, beforeAll, afterAll } from '@jest/globals';
import { testdataSuite } from '../../support/testdata';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { BoundedReader, ParseError } from '../../../internal/bytes/reader';
import { expectTag, readBoolean, readBitString, readOid, readTime, oidBytes, oidToString } from '../../../internal/pki/der';
import { certInfo } from '../../../internal/pki/certinfo';
import { parseCrl } from '../../../internal/pki/crl';
import { verifyCrlSignature, verifyCrlSignatureSync, crlTimeStatus } from '../../../internal/pki/crl-verify';
import { CrlError } from '../../../internal/pki/errors';
import { decodeCrlFile } from '../../../internal/pki/crl-worker';
import { CRL_REASONS } from '../../../internal/pki/types';
import { makePki, type Pki, type KeyType } from '../../support/pki';
import { sharedTestdata } from '../../support/root';

// ---- a tiny DER writer for hand-built inputs -------------------------------------------------
function len(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const b: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) b.unshift(v & 0xff);
  return Buffer.from([0x80 | b.length, ...b]);
}
const tlv = (tag: number, ...parts: Buffer[]): Buffer => {
  const c = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([tag]), len(c.length), c]);
};
const seq = (...p: Buffer[]): Buffer => tlv(0x30, ...p);
const oid = (s: string): Buffer => tlv(0x06, oidBytes(s));
const utc = (s: string): Buffer => tlv(0x17, Buffer.from(s, 'latin1'));
const int = (b: Buffer): Buffer => tlv(0x02, b);
const NAME = seq(tlv(0x31, seq(oid('2.5.4.3'), tlv(0x0c, Buffer.from('hand-built')))));
const ALG = seq(oid('1.2.840.113549.1.1.11'), Buffer.from([0x05, 0x00]));

/** A v2 CRL whose entries are the given raw serial INTEGER contents, with a dummy signature. */
function handCrl(serials: Buffer[], opts: { entryExtra?: Buffer; crlExts?: Buffer } = {}): Buffer {
  const entries = serials.map((s, i) =>
    seq(int(s), utc(`2401${String((i % 28) + 1).padStart(2, '0')}000000Z`), ...(opts.entryExtra ? [opts.entryExtra] : [])),
  );
  const tbs = seq(
    int(Buffer.from([1])),
    ALG,
    NAME,
    utc('240101000000Z'),
    utc('240201000000Z'),
    ...(entries.length ? [seq(...entries)] : []),
    ...(opts.crlExts ? [tlv(0xa0, seq(opts.crlExts))] : []),
  );
  return seq(tbs, ALG, tlv(0x03, Buffer.from([0]), Buffer.alloc(32, 1)));
}

function ext(id: string, critical: boolean, value: Buffer): Buffer {
  return seq(oid(id), ...(critical ? [Buffer.from([0x01, 0x01, 0xff])] : []), tlv(0x04, value));
}

// ---- the DER walker ------------------------------------------------------------------------------
describe('der', () => {
  const r = (hex: string): BoundedReader => new BoundedReader(Buffer.from(hex.replace(/ /g, ''), 'hex'));
  const parseErr = (code: string) => (e: unknown) => e instanceof ParseError && e.code === code;

  test('lengths: short, long, and the forms DER forbids', () => {
    assert.equal(expectTag(r('04 03 010203'), 0x04, 'x'), 3);
    assert.equal(expectTag(r('04 81 80' + '00'.repeat(128)), 0x04, 'x'), 128);
    assert.throws(() => expectTag(r('30 80 0000'), 0x30, 'x'), parseErr('malformed')); // indefinite
    assert.throws(() => expectTag(r('04 81 05 0102030405'), 0x04, 'x'), parseErr('malformed')); // long form for < 128
    assert.throws(() => expectTag(r('04 82 0080' + '00'.repeat(128)), 0x04, 'x'), parseErr('malformed')); // leading zero
    assert.throws(() => expectTag(r('04 05 0102'), 0x04, 'x'), parseErr('truncated')); // past the window
    assert.throws(() => expectTag(r('04 85 0100000000'), 0x04, 'x'), parseErr('too_large'));
    assert.throws(() => expectTag(r('1f 01 00'), 0x1f, 'x'), parseErr('unsupported')); // high tag number
    assert.throws(() => expectTag(r('02 01 00'), 0x04, 'x'), parseErr('malformed')); // wrong tag
  });

  test('times: RFC 5280 §4.1.2.5 two-digit years, Z required, ranges checked', () => {
    const t = (hex: string): Date => readTime(r(hex));
    const u = (s: string): string => '17' + s.length.toString(16).padStart(2, '0') + Buffer.from(s).toString('hex');
    const g = (s: string): string => '18' + s.length.toString(16).padStart(2, '0') + Buffer.from(s).toString('hex');
    assert.equal(t(u('491231235959Z')).toISOString(), '2049-12-31T23:59:59.000Z');
    assert.equal(t(u('500101000000Z')).toISOString(), '1950-01-01T00:00:00.000Z');
    assert.equal(t(g('20500706120000Z')).toISOString(), '2050-07-06T12:00:00.000Z');
    assert.equal(t(g('00500101000000Z')).getUTCFullYear(), 50);
    assert.equal(t(u('240229000000Z')).toISOString(), '2024-02-29T00:00:00.000Z');
    for (const bad of [u('4912312359Z'), u('491231235959'), u('491231235959+0000'), u('231301000000Z'), u('230229000000Z'), g('20500706120000.5Z'), '0403414243']) {
      assert.throws(() => t(bad), parseErr('malformed'), bad);
    }
  });

  test('OID, BOOLEAN, BIT STRING', () => {
    assert.equal(readOid(r('06 03 551d14')), '2.5.29.20');
    assert.equal(readOid(r('06 09 2a864886f70d01010b')), '1.2.840.113549.1.1.11');
    assert.equal(oidToString(oidBytes('2.999.3')), '2.999.3');
    assert.throws(() => readOid(r('06 02 8001')), parseErr('malformed'));
    assert.equal(readBoolean(r('01 01 ff')), true);
    assert.equal(readBoolean(r('01 01 00')), false);
    assert.throws(() => readBoolean(r('01 01 01')), parseErr('malformed'));
    assert.deepEqual(readBitString(r('03 02 0680')).unusedBits, 6);
    assert.throws(() => readBitString(r('03 02 0880')), parseErr('malformed'));
  });
});

// ---- OpenSSL-made CRLs ---------------------------------------------------------------------------
interface OracleEntry {
  serial: string;
  date: Date;
  reason: string | null;
}
/** Parse `openssl crl -text` output: the independent view of the same CRL. */
function oracle(text: string): { crlNumber: string | null; thisUpdate: Date; nextUpdate: Date | null; entries: OracleEntry[] } {
  const m = (re: RegExp): string | null => re.exec(text)?.[1] ?? null;
  const entries: OracleEntry[] = [];
  const blocks = text.split(/\n\s+Serial Number: /).slice(1);
  for (const b of blocks) {
    const serial = b.split('\n')[0]!.trim().toLowerCase();
    const date = new Date(/Revocation Date: (.*)/.exec(b)![1]!);
    const rc = /CRL Reason Code: *\n\s*(.*)/.exec(b)?.[1]?.trim() ?? null;
    entries.push({ serial, date, reason: rc });
  }
  const crlNumber = m(/CRL Number: *\n\s*(\S+)/);
  return {
    crlNumber,
    thisUpdate: new Date(m(/Last Update: (.*)/)!),
    nextUpdate: m(/Next Update: (.*)/) ? new Date(m(/Next Update: (.*)/)!) : null,
    entries,
  };
}
const reasonFromText = (s: string): string => CRL_REASONS.find((r) => r.toLowerCase() === s.replace(/ /g, '').toLowerCase()) ?? `?${s}`;

for (const keyType of ['rsa', 'ec'] as KeyType[]) {
  describe(`openssl ca -gencrl (${keyType})`, () => {
    let pki: Pki;
    let crlPath: string;
    const leaves: { serial: Buffer; reason: string }[] = [];
    let goodSerial: Buffer;

    beforeAll(() => {
      pki = makePki({ keyType });
      const reasons = ['keyCompromise', 'cACompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation', 'certificateHold', 'unspecified'] as const;
      reasons.forEach((reason, i) => {
        // Every other serial has its top bit set, so its DER INTEGER carries a leading 00.
        const serial = (i % 2 ? '8' : '1') + i.toString(16) + '0f'.repeat(7);
        const leaf = pki.issueLeaf(`leaf${i}`, { serial });
        pki.revoke('intermediate', leaf.certPath, reason);
        leaves.push({ serial: certInfo(leaf.certDer).serial, reason });
      });
      goodSerial = certInfo(pki.issueLeaf('good', { serial: 'ff'.repeat(16) }).certDer).serial;
      crlPath = pki.crl('intermediate', { crlNumber: 0x1234, nextUpdateDays: 3 });
    });
    afterAll(() => pki.cleanup());

    test('entries, cRLNumber, dates and reasons agree with `openssl crl -text`', () => {
      const crl = parseCrl(fs.readFileSync(crlPath));
      const o = oracle(pki.crlText(crlPath));
      assert.equal(crl.version, 2);
      assert.equal(crl.entryCount, o.entries.length);
      assert.equal(crl.entryCount, leaves.length);
      assert.equal(crl.crlNumber?.toString(), BigInt('0x' + '1234').toString());
      assert.equal(o.crlNumber, '4660');
      assert.equal(crl.thisUpdate.getTime(), o.thisUpdate.getTime());
      assert.equal(crl.nextUpdate?.getTime(), o.nextUpdate?.getTime());
      assert.ok(crl.authorityKeyId?.equals(certInfo(pki.intermediate.x509).subjectKeyId!));
      for (const e of o.entries) {
        const hit = crl.lookup(Buffer.from(e.serial.padStart(e.serial.length + (e.serial.length % 2), '0'), 'hex'));
        assert.ok(hit, `serial ${e.serial} found`);
        assert.equal(hit.revocationDate.getTime(), e.date.getTime());
        assert.equal(hit.reason, reasonFromText(e.reason!));
      }
    });

    test('lookup by certificate serial, whatever the padding; misses are null', () => {
      const crl = parseCrl(fs.readFileSync(crlPath));
      for (const l of leaves) {
        assert.equal(crl.lookup(l.serial)?.reason, l.reason);
        assert.equal(crl.lookup(Buffer.concat([Buffer.from([0, 0]), l.serial]))?.reason, l.reason);
      }
      assert.equal(leaves[1]!.serial[0]! & 0x80, 0x80, 'top bit set');
      assert.equal(crl.lookup(goodSerial), null);
      assert.equal(crl.lookup(Buffer.alloc(0)), null);
      assert.equal(crl.lookup(Buffer.from([1, 2, 3])), null);
    });

    test('signature verifies with the issuing CA, async and sync', async () => {
      const crl = parseCrl(fs.readFileSync(crlPath));
      const trust = [pki.root.x509, pki.intermediate.x509];
      assert.equal(await verifyCrlSignature(crl, trust), pki.intermediate.x509);
      assert.equal(verifyCrlSignatureSync(crl, trust), pki.intermediate.x509);
    });
  });
}

describe('signature algorithms and issuer selection', () => {
  for (const keyType of ['rsa-pss', 'ed25519', 'ec384'] as KeyType[]) {
    test(`${keyType} CRL verifies`, async () => {
      const pki = makePki({ keyType });
      try {
        const crl = parseCrl(fs.readFileSync(pki.crl('root')));
        assert.equal(await verifyCrlSignature(crl, [pki.root.x509]), pki.root.x509);
      } finally {
        pki.cleanup();
      }
    });
  }

  test('bad_signature: same issuer Name, another key; unknown_issuer: no matching CA; cRLSign required', async () => {
    const pki = makePki({ keyType: 'ec' });
    try {
      const impostor = pki.addCa('impostor', { subject: pki.root.subject });
      const forged = parseCrl(fs.readFileSync(pki.crl('impostor', { aki: false })));
      await assert.rejects(verifyCrlSignature(forged, [pki.root.x509]), (e: unknown) => e instanceof CrlError && e.code === 'bad_signature');
      assert.throws(() => verifyCrlSignatureSync(forged, [pki.root.x509]), (e: unknown) => e instanceof CrlError && e.code === 'bad_signature');
      // With AKI, the key identifier already rules the root out.
      const withAki = parseCrl(fs.readFileSync(pki.crl('impostor')));
      await assert.rejects(verifyCrlSignature(withAki, [pki.root.x509]), (e: unknown) => e instanceof CrlError && e.code === 'unknown_issuer');
      assert.equal(await verifyCrlSignature(withAki, [pki.root.x509, impostor.x509]), impostor.x509);
      await assert.rejects(verifyCrlSignature(withAki, [pki.intermediate.x509]), (e: unknown) => e instanceof CrlError && e.code === 'unknown_issuer');
      const noCrlSign = pki.addCa('nocrlsign', { keyUsage: 'critical,keyCertSign' });
      const c = parseCrl(fs.readFileSync(pki.crl('nocrlsign')));
      await assert.rejects(verifyCrlSignature(c, [noCrlSign.x509]), (e: unknown) => e instanceof CrlError && e.code === 'unknown_issuer' && /cRLSign/.test(e.message));
    } finally {
      pki.cleanup();
    }
  });

  test('unknown critical CRL extension is refused; collected on request; non-critical is ignored', () => {
    const pki = makePki({ keyType: 'ec' });
    try {
      const der = fs.readFileSync(pki.crl('root', { extraExtensions: ['1.2.3.4=critical,ASN1:NULL'] }));
      assert.throws(() => parseCrl(der), (e: unknown) => e instanceof CrlError && e.code === 'unsupported_critical_extension' && /1\.2\.3\.4/.test(e.message));
      assert.deepEqual(parseCrl(der, { collectUnsupportedCritical: true }).unsupportedCritical, ['1.2.3.4']);
      const ok = fs.readFileSync(pki.crl('root', { extraExtensions: ['1.2.3.4=ASN1:NULL'] }));
      assert.equal(parseCrl(ok).unsupportedCritical.length, 0);
    } finally {
      pki.cleanup();
    }
  });

  test('every truncation of a CRL is a CrlError, never a crash', () => {
    const pki = makePki({ keyType: 'ec' });
    try {
      const leaf = pki.issueLeaf('t');
      pki.revoke('intermediate', leaf.certPath, 'keyCompromise');
      const der = fs.readFileSync(pki.crl('intermediate'));
      for (let n = 0; n < der.length; n++) {
        assert.throws(() => parseCrl(der.subarray(0, n)), (e: unknown) => e instanceof CrlError && e.code === 'malformed', `cut at ${n}`);
      }
      assert.throws(() => parseCrl(der, { maxBytes: der.length - 1 }), (e: unknown) => e instanceof CrlError && e.code === 'too_large');
    } finally {
      pki.cleanup();
    }
  });
});

describe('hand-built DER', () => {
  test('negative, zero and padded serials in entries parse and match consistently', () => {
    const crl = parseCrl(handCrl([Buffer.from([0x80]), Buffer.from([0x00]), Buffer.from([0xff, 0xff]), Buffer.from([0x00, 0x00, 0x7f])]));
    assert.equal(crl.entryCount, 4);
    assert.ok(crl.lookup(Buffer.from([0x80])));
    assert.ok(crl.lookup(Buffer.from([0x00])), 'zero serial');
    assert.ok(crl.lookup(Buffer.alloc(0)), 'zero serial, normalised to no bytes');
    assert.ok(crl.lookup(Buffer.from([0xff, 0xff])));
    assert.ok(crl.lookup(Buffer.from([0x7f])));
    assert.equal(crl.lookup(Buffer.from([0xff])), null);
  });

  test('structural errors are malformed: empty INTEGER, bad reasonCode, v1 with entry extensions, algorithm mismatch, trailing bytes', () => {
    const bad = (der: Buffer, re?: RegExp) => assert.throws(() => parseCrl(der), (e: unknown) => e instanceof CrlError && e.code === 'malformed' && (!re || re.test(e.message)));
    bad(handCrl([Buffer.alloc(0)]), /empty/);
    bad(handCrl([Buffer.from([1])], { entryExtra: seq(ext('2.5.29.21', false, tlv(0x0a, Buffer.from([7])))) }), /reasonCode/);
    bad(handCrl([Buffer.from([1])], { entryExtra: seq(ext('2.5.29.21', false, tlv(0x0a, Buffer.from([1]))), ext('2.5.29.21', false, tlv(0x0a, Buffer.from([1])))) }), /twice/);
    const good = handCrl([Buffer.from([1])]);
    bad(Buffer.concat([good, Buffer.from([0])]), /trailing/);
    const v1 = seq(seq(ALG, NAME, utc('240101000000Z'), seq(seq(int(Buffer.from([1])), utc('240101000000Z'), seq(ext('2.5.29.21', false, tlv(0x0a, Buffer.from([1]))))))), ALG, tlv(0x03, Buffer.from([0, 1])));
    bad(v1, /v1/);
    const mismatch = seq(seq(int(Buffer.from([1])), ALG, NAME, utc('240101000000Z')), seq(oid('1.2.840.10045.4.3.2')), tlv(0x03, Buffer.from([0, 1])));
    bad(mismatch, /differs/);
  });

  test('entry with an unknown critical extension; cRLNumber and deltaCRLIndicator decode', () => {
    const crit = handCrl([Buffer.from([1])], { entryExtra: seq(ext('1.2.3.4', true, Buffer.from([5, 0]))) });
    assert.throws(() => parseCrl(crit), (e: unknown) => e instanceof CrlError && e.code === 'unsupported_critical_extension');
    const big = Buffer.from('0102030405060708090a0b0c0d0e0f101112131415', 'hex');
    const c = parseCrl(handCrl([], { crlExts: Buffer.concat([ext('2.5.29.20', false, int(big)), ext('2.5.29.27', true, int(Buffer.from([9])))]) }));
    assert.equal(c.crlNumber, BigInt('0x' + big.toString('hex')));
    assert.equal(c.deltaCrlIndicator, 9n);
    assert.equal(c.entryCount, 0);
    assert.equal(c.lookup(Buffer.from([1])), null);
  });

  test('property: every listed serial is found with its date, others are not', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.uint8Array({ minLength: 1, maxLength: 20 }), { maxLength: 300, selector: (u) => Buffer.from(u).toString('hex').replace(/^(00)+/, '') }), fc.uint8Array({ minLength: 1, maxLength: 20 }), (serials, probe) => {
        const bufs = serials.map((s) => Buffer.from(s));
        const crl = parseCrl(handCrl(bufs));
        bufs.forEach((b, i) => {
          const hit = crl.lookup(b);
          assert.ok(hit);
          assert.equal(hit.revocationDate.getUTCDate(), (i % 28) + 1);
        });
        const norm = (b: Buffer): string => b.toString('hex').replace(/^(00)+/, '');
        const listed = new Set(bufs.map(norm));
        assert.equal(crl.lookup(Buffer.from(probe)) !== null, listed.has(norm(Buffer.from(probe))));
      }),
      { numRuns: 200 },
    );
  });

  test('crlTimeStatus applies the skew on both ends', () => {
    const c = { thisUpdate: new Date('2024-01-01T00:00:00Z'), nextUpdate: new Date('2024-01-08T00:00:00Z') };
    assert.equal(crlTimeStatus(c, new Date('2023-12-31T23:58:00Z'), 300_000), 'current');
    assert.equal(crlTimeStatus(c, new Date('2023-12-31T23:50:00Z'), 300_000), 'not_yet_valid');
    assert.equal(crlTimeStatus(c, new Date('2024-01-08T00:04:00Z'), 300_000), 'current');
    assert.equal(crlTimeStatus(c, new Date('2024-01-08T00:06:00Z'), 300_000), 'expired');
    assert.equal(crlTimeStatus({ ...c, nextUpdate: null }, new Date('2099-01-01T00:00:00Z'), 0), 'current');
  });
});

// ---- the shared corpus ---------------------------------------------------------------------------
describe('shared testdata/crls manifest', () => {
  const dir = sharedTestdata('crls');
  const manifestPath = path.join(dir, 'manifest.json');
  const corpus = testdataSuite('the CRL corpus (testdata/crls)', manifestPath);
  corpus.test('each plain CRL parses (or not) as the manifest expects', () => {
    const m = JSON.parse(fs.readFileSync(manifestPath, 'utf8')) as { files: { file: string; expected: string; entries: number | null }[] };
    let checked = 0;
    for (const f of m.files) {
      if (f.expected !== 'parse ok' && f.expected !== 'parse error') continue;
      const buf = fs.readFileSync(path.join(dir, f.file));
      let got: string;
      let entries: number | null = null;
      try {
        // Policy refusals (unknown critical extensions) are not structure errors: collect them.
        const crl = parseCrl(decodeCrlFile(buf, f.file)[0]!, { collectUnsupportedCritical: true });
        got = 'parse ok';
        entries = crl.entryCount;
      } catch (e) {
        assert.ok(e instanceof CrlError, `${f.file}: ${String(e)}`);
        got = 'parse error';
      }
      assert.equal(got, f.expected, f.file);
      if (got === 'parse ok') assert.equal(entries, f.entries, `${f.file} entries`);
      checked++;
    }
    assert.ok(checked >= 30, `checked ${checked}`);
  });

  corpus.test('pyca signature pair: valid verifies, invalid is bad_signature', () => {
    const issuer = new X509Certificate(fs.readFileSync(path.join(dir, 'pyca_valid_signature_cert.pem')));
    const load = (f: string) => parseCrl(decodeCrlFile(fs.readFileSync(path.join(dir, f)), f)[0]!);
    assert.equal(verifyCrlSignatureSync(load('pyca_valid_signature_crl.pem'), [issuer]), issuer);
    assert.throws(() => verifyCrlSignatureSync(load('pyca_invalid_signature_crl.pem'), [issuer]), (e: unknown) => e instanceof CrlError && e.code === 'bad_signature');
  });

  corpus.test('all reasons and the real CRLs decode every entry', () => {
    const crl = parseCrl(decodeCrlFile(fs.readFileSync(path.join(dir, 'pyca_crl_all_reasons.pem')))[0]!);
    const reasons = new Set<string>();
    for (let s = 0; s < 12; s++) reasons.add(crl.lookup(s === 0 ? Buffer.alloc(0) : Buffer.from([s]))!.reason);
    for (const r of ['keyCompromise', 'cACompromise', 'certificateHold', 'removeFromCRL', 'privilegeWithdrawn', 'aACompromise']) assert.ok(reasons.has(r), r);
  });
});
