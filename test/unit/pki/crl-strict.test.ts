/**
 * CRL strictness (issue 10, item 9): every CRL entry extension RFC 5280 §5.3 defines —
 * reasonCode, invalidityDate, certificateIssuer, holdInstructionCode — is decoded and validated
 * when the CRL is parsed, critical or not, and one that does not decode makes the whole CRL
 * unusable (`malformed`), never an entry that silently matches nobody; an empty
 * revokedCertificates SEQUENCE (§5.1.2.6: MUST be absent) is refused as
 * `empty_revoked_certificates`. Checked on DER written here (test/support/der-writer.ts), on a
 * corpus CRL (../shared/testdata/crls) corrupted in one octet, through the RevocationStore and
 * the chain check (the fail-open case), and through `ca-proxy crl show`.
 */
import { describe, test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as D from '../../support/der-writer';
import { testdataSuite } from '../../support/testdata';
import { repoRoot, sharedTestdata } from '../../support/root';
import { parseCrl } from '../../../internal/pki/crl';
import { decodeCrlFile, closeCrlWorker } from '../../../internal/pki/crl-worker';
import { CrlError } from '../../../internal/pki/errors';
import { certInfo } from '../../../internal/pki/certinfo';
import { RevocationStore } from '../../../internal/pki/store';
import { verifyServerChain } from '../../../internal/pki/chain';

const NOW = new Date('2030-06-01T00:00:00Z');
const DAY = 86400_000;
const caKey = D.keyPair();
const CA = D.name([D.C, 'US', 0x13], [D.O, 'Strict CRLs', 0x13], [D.CN, 'Issuing CA', 0x13]);
const OTHER_CA = D.name([D.CN, 'Other CA']);
const caDer = D.cert({ issuer: CA, subject: CA, key: caKey, signer: caKey, ca: true });
const leafKey = D.keyPair();
const leafDer = (serial: number): Buffer => D.cert({ issuer: CA, subject: D.name([D.CN, 'leaf.test']), key: leafKey, signer: caKey, serial: Buffer.from([serial]) });

const crlWith = (entries: D.CrlEntrySpec[], extra: Partial<D.CrlSpec> = {}): Buffer =>
  D.crl({ issuer: CA, signer: caKey, thisUpdate: new Date(NOW.getTime() - DAY), nextUpdate: new Date(NOW.getTime() + 7 * DAY), crlNumber: 1, entries, ...extra });
/** A CRL listing serial 1 (keyCompromise) and serial 2 carrying `ext`. */
const crlWithEntryExt = (ext: Buffer): Buffer => crlWith([{ serial: Buffer.from([1]), reason: 1 }, { serial: Buffer.from([2]), extensions: [ext] }]);

const ENUM = (v: number): Buffer => D.tlv(0x0a, Buffer.from([v]));
const GEN_TIME = (s: string): Buffer => D.tlv(0x18, Buffer.from(s, 'latin1'));
const OID_REASON = '2.5.29.21';
const OID_HOLD = '2.5.29.23';
const OID_INVALIDITY = '2.5.29.24';
const OID_CERT_ISSUER = '2.5.29.29';

function refusal(der: Buffer): CrlError {
  try {
    parseCrl(der);
  } catch (e) {
    assert.ok(e instanceof CrlError, `not a CrlError: ${String(e)}`);
    return e;
  }
  assert.fail('the CRL was accepted');
}

describe('entry extensions RFC 5280 §5.3 defines are decoded and validated, critical or not', () => {
  // [what, extnID, malformed extnValue, what the message names]
  const malformed: [string, string, Buffer, RegExp][] = [
    ['reasonCode as an INTEGER', OID_REASON, D.int(1), /reasonCode/],
    ['reasonCode 7 (unassigned)', OID_REASON, ENUM(7), /reasonCode/],
    ['reasonCode 11', OID_REASON, ENUM(11), /reasonCode/],
    ['reasonCode with trailing bytes', OID_REASON, Buffer.concat([ENUM(1), Buffer.from([0])]), /reasonCode/],
    ['invalidityDate as a UTCTime', OID_INVALIDITY, D.tlv(0x17, Buffer.from('300101000000Z', 'latin1')), /invalidityDate/],
    ['invalidityDate with fractional seconds', OID_INVALIDITY, GEN_TIME('20300101000000.5Z'), /invalidityDate/],
    ['invalidityDate on the 13th month', OID_INVALIDITY, GEN_TIME('20301301000000Z'), /invalidityDate/],
    ['certificateIssuer not a SEQUENCE', OID_CERT_ISSUER, D.dirName(OTHER_CA), /certificateIssuer/],
    ['certificateIssuer an empty SEQUENCE', OID_CERT_ISSUER, D.seq(), /certificateIssuer.*empty/],
    ['certificateIssuer with tag [9] (no GeneralName alternative)', OID_CERT_ISSUER, D.seq(D.tlv(0x89, Buffer.from('x'))), /certificateIssuer/],
    ['certificateIssuer directoryName that is no Name', OID_CERT_ISSUER, D.seq(D.ctx(4, true, D.octets(Buffer.from('CN=x')))), /certificateIssuer/],
    ['certificateIssuer directoryName primitive', OID_CERT_ISSUER, D.seq(D.tlv(0x84, OTHER_CA)), /certificateIssuer/],
    ['certificateIssuer iPAddress of 5 octets', OID_CERT_ISSUER, D.seq(D.tlv(0x87, Buffer.from([10, 0, 0, 1, 0]))), /iPAddress/],
    ['certificateIssuer dNSName that is no IA5String', OID_CERT_ISSUER, D.seq(D.tlv(0x82, Buffer.from('bücher.example', 'utf8'))), /IA5String/],
    ['certificateIssuer with trailing bytes', OID_CERT_ISSUER, Buffer.concat([D.seq(D.dirName(OTHER_CA)), Buffer.from([0])]), /certificateIssuer/],
    ['holdInstructionCode a NULL', OID_HOLD, Buffer.from([0x05, 0x00]), /holdInstructionCode/],
    ['holdInstructionCode a non-minimal OID', OID_HOLD, D.tlv(0x06, Buffer.from([0x2a, 0x80, 0x01])), /holdInstructionCode/],
  ];
  for (const critical of [false, true]) {
    for (const [what, oid, value, names] of malformed) {
      test(`${critical ? 'critical' : 'non-critical'} ${what}: the CRL is malformed, naming the entry`, () => {
        const e = refusal(crlWithEntryExt(D.ext(oid, critical, value)));
        assert.equal(e.code, 'malformed');
        assert.match(e.message, names);
        assert.match(e.message, /revokedCertificates entry 2 \(serial 02\)/);
      });
    }
  }

  test('an entry extension twice is malformed', () => {
    const e = refusal(crlWith([{ serial: Buffer.from([2]), reason: 1, extensions: [D.ext(OID_REASON, false, ENUM(4))] }]));
    assert.equal(e.code, 'malformed');
    assert.match(e.message, /appears twice/);
  });

  test('well-formed ones decode: reason, invalidityDate, holdInstructionCode, and certificateIssuer routing of an indirect CRL', () => {
    const hold = D.ext(OID_HOLD, false, D.oid('1.2.840.10040.2.2')); // id-holdinstruction-callissuer
    const crl = parseCrl(
      crlWith([
        { serial: Buffer.from([1]), reason: 6, extensions: [hold, D.ext(OID_INVALIDITY, false, GEN_TIME('20300101000000Z'))] },
        // From here on the entries are about OTHER_CA's certificates (§5.3.3), the IP form must decode too.
        { serial: Buffer.from([2]), reason: 1, extensions: [D.ext(OID_CERT_ISSUER, true, D.seq(D.dirName(OTHER_CA), D.tlv(0x87, Buffer.from([10, 0, 0, 1]))))] },
        { serial: Buffer.from([3]) },
      ]),
    );
    const e1 = crl.lookup(Buffer.from([1]))!;
    assert.equal(e1.reason, 'certificateHold');
    assert.equal(e1.invalidityDate?.toISOString(), '2030-01-01T00:00:00.000Z');
    assert.equal(crl.hasCertificateIssuerEntries, true);
    const e3 = crl.lookupAll(Buffer.from([3]));
    assert.equal(e3.length, 1);
    assert.ok(e3[0]!.entryIssuer && e3[0]!.entryIssuer.equals(D.seq(D.dirName(OTHER_CA), D.tlv(0x87, Buffer.from([10, 0, 0, 1])))), 'serial 3 inherits the certificateIssuer of entry 2');
    assert.equal(crl.lookupAll(Buffer.from([1]))[0]!.entryIssuer, null, 'entries before the first certificateIssuer are the CRL issuer\'s');
  });

  test('an unknown non-critical entry extension is ignored, an unknown critical one is unsupported_critical_extension', () => {
    assert.equal(parseCrl(crlWithEntryExt(D.ext('1.2.3.4', false, Buffer.from([0x05, 0x00])))).entryCount, 2);
    assert.equal(refusal(crlWithEntryExt(D.ext('1.2.3.4', true, Buffer.from([0x05, 0x00])))).code, 'unsupported_critical_extension');
  });
});

describe('revokedCertificates: absent when empty (RFC 5280 §5.1.2.6)', () => {
  test('an empty SEQUENCE is refused with its own code; the absent field parses', () => {
    const e = refusal(crlWith([], { emptyRevokedCertificates: true }));
    assert.equal(e.code, 'empty_revoked_certificates');
    assert.match(e.message, /MUST be absent/);
    assert.equal(parseCrl(crlWith([])).entryCount, 0);
  });
});

describe('through the RevocationStore and the chain check', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-crl-strict-'));
  });
  afterAll(async () => {
    fs.rmSync(dir, { recursive: true, force: true });
    await closeCrlWorker();
  });

  test('a malformed critical certificateIssuer no longer turns the serials it governs good (it was fail-open)', async () => {
    const anchors = [new X509Certificate(caDer)];
    const store = new RevocationStore({ trust: anchors, now: () => NOW, clockSkewMs: 0 });
    const file = path.join(dir, 'ca.crl');
    // Entry 1 names a malformed certificate issuer; serial 5 follows it and so is governed by it.
    fs.writeFileSync(file, crlWith([{ serial: Buffer.from([4]), extensions: [D.ext(OID_CERT_ISSUER, true, D.seq(D.tlv(0x89, Buffer.from('x'))))] }, { serial: Buffer.from([5]) }], { crlNumber: 3 }));
    const rep = await store.loadPaths([file]);
    assert.deepEqual(rep.refused.map((r) => r.code), ['malformed']);
    assert.match(rep.refused[0]!.message, /certificateIssuer/);
    const chain = verifyServerChain([leafDer(5)], { anchors, hostname: null, now: NOW, revocation: store, leafOnly: false });
    assert.equal(chain.revocation.status, 'unknown', 'no usable CRL: unknown (hardFail denies), never good');

    // With a good CRL in force, the malformed one is refused and the good one stays.
    fs.writeFileSync(file, crlWith([{ serial: Buffer.from([5]), reason: 1 }], { crlNumber: 4 }));
    assert.equal((await store.loadPaths([file])).accepted.length, 1);
    fs.writeFileSync(file, crlWith([{ serial: Buffer.from([6]), extensions: [D.ext(OID_CERT_ISSUER, false, D.seq())] }], { crlNumber: 5 }));
    const rep2 = await store.loadPaths([file]);
    assert.deepEqual(rep2.refused.map((r) => r.code), ['malformed']);
    assert.equal(store.check(certInfo(leafDer(5)), anchors[0]!).status, 'revoked', 'the last good CRL stays');
  });

  test('an empty revokedCertificates SEQUENCE is refused by the store with its code', async () => {
    const store = new RevocationStore({ trust: [new X509Certificate(caDer)], now: () => NOW, clockSkewMs: 0 });
    const file = path.join(dir, 'empty.crl');
    fs.writeFileSync(file, crlWith([], { emptyRevokedCertificates: true }));
    const rep = await store.loadPaths([file]);
    assert.deepEqual(rep.refused.map((r) => [r.source, r.code]), [[file, 'empty_revoked_certificates']]);
    assert.equal(store.ready, false);
  });

  test('`ca-proxy crl show` reports each: code and message, exit code 1', () => {
    const cases: [string, Buffer, string, RegExp][] = [
      ['cert-issuer.crl', crlWithEntryExt(D.ext(OID_CERT_ISSUER, true, D.seq(D.tlv(0x89, Buffer.from('x'))))), 'malformed', /certificateIssuer is not GeneralNames/],
      ['reason.crl', crlWithEntryExt(D.ext(OID_REASON, false, ENUM(7))), 'malformed', /reasonCode is not a valid CRLReason/],
      ['empty.crl', crlWith([], { emptyRevokedCertificates: true }), 'empty_revoked_certificates', /MUST be absent/],
    ];
    const main = path.join(repoRoot(), 'dist', 'cmd', 'ca-proxy', 'main.js');
    for (const [name, der, code, message] of cases) {
      const file = path.join(dir, name);
      fs.writeFileSync(file, der);
      const json = spawnSync(process.execPath, [main, 'crl', 'show', file, '--json'], { encoding: 'utf8' });
      assert.equal(json.status, 1, `${name}: ${json.stderr}`);
      const shown = JSON.parse(json.stdout) as { code?: string; error?: string }[];
      assert.equal(shown[0]!.code, code, name);
      assert.match(shown[0]!.error!, message);
      const text = spawnSync(process.execPath, [main, 'crl', 'show', file], { encoding: 'utf8' });
      assert.equal(text.status, 1);
      assert.match(text.stdout, new RegExp(`error: +${code}: `), name);
    }
  });
});

const corpusDir = sharedTestdata('crls');
testdataSuite('the CRL corpus (testdata/crls)', path.join(corpusDir, 'manifest.json')).test(
  'pyca_crl_all_reasons: its certificateIssuer entries decode; one corrupted to a non-GeneralName makes the CRL malformed',
  () => {
    const der = decodeCrlFile(fs.readFileSync(path.join(corpusDir, 'pyca_crl_all_reasons.pem')))[0]!;
    const crl = parseCrl(der);
    assert.equal(crl.hasCertificateIssuerEntries, true);
    assert.equal(crl.entryCount, 12);
    // The first certificateIssuer: 06 03 55 1D 1D, 04 len, 30 len, A4 (directoryName). A4 → A9: no GeneralName alternative.
    const at = der.indexOf(Buffer.from('0603551d1d', 'hex'));
    assert.ok(at > 0);
    const tagAt = at + 5 + 2 + 2;
    assert.equal(der[tagAt], 0xa4);
    const bad = Buffer.from(der);
    bad[tagAt] = 0xa9;
    const e = refusal(bad);
    assert.equal(e.code, 'malformed');
    assert.match(e.message, /revokedCertificates entry \d+ \(serial 0?1\): certificateIssuer/);
  },
);
