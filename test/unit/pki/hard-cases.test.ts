/**
 * CRL cases other implementations got wrong (issue 3), each built at test time with hand-written
 * DER (test/support/der-writer.ts) and judged per RFC 5280 through `validatePath`, plus the
 * RevocationStore (what the engine consults) where loading matters.
 */
import { describe, test } from '@jest/globals';
import assert from 'node:assert/strict';
import { chainReason } from '../../../internal/engine/pki-reasons';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { parseCrl } from '../../../internal/pki/crl';
import { decodeCrlFile } from '../../../internal/pki/crl-worker';
import { certInfo } from '../../../internal/pki/certinfo';
import { validatePath } from '../../../internal/pki/path';
import type { PathFailureCode } from '../../../internal/pki/errors';
import { RevocationStore } from '../../../internal/pki/store';
import { verifyServerChain } from '../../../internal/pki/chain';
import * as D from '../../support/der-writer';

const NOW = new Date('2030-06-01T00:00:00Z');
const DAY = 86400_000;
const before = (days: number): Date => new Date(NOW.getTime() - days * DAY);
const after = (days: number): Date => new Date(NOW.getTime() + days * DAY);

const rootKey = D.keyPair();
const caKey = D.keyPair();
const leafKey = D.keyPair();
const ROOT = D.name([D.C, 'US', 0x13], [D.O, 'Hard Cases', 0x13], [D.CN, 'Root CA', 0x13]);
const CA = D.name([D.C, 'US', 0x13], [D.O, 'Hard Cases', 0x13], [D.CN, 'Issuing CA', 0x13]);
const rootDer = D.cert({ issuer: ROOT, subject: ROOT, key: rootKey, signer: rootKey, ca: true });
const caDer = D.cert({ issuer: ROOT, subject: CA, key: caKey, signer: rootKey, ca: true, serial: Buffer.from([0x10]) });
const rootCrl = parseCrl(D.crl({ issuer: ROOT, signer: rootKey, thisUpdate: before(1), nextUpdate: after(7), crlNumber: 1 }));

function leaf(serial: Buffer, extensions: Buffer[] = []): Buffer {
  return D.cert({ issuer: CA, subject: D.name([D.CN, 'leaf.test']), key: leafKey, signer: caKey, serial, extensions });
}
function caCrl(opts: Partial<D.CrlSpec> = {}): Buffer {
  return D.crl({ issuer: CA, signer: caKey, thisUpdate: before(1), nextUpdate: after(7), crlNumber: 5, ...opts });
}
function outcome(leafDer: Buffer, crls: Buffer[], opts: { anchor?: 'root' | 'ca' } = {}): 'valid' | PathFailureCode {
  const anchorIsCa = opts.anchor === 'ca';
  const res = validatePath({
    path: anchorIsCa ? [leafDer] : [leafDer, caDer],
    anchor: anchorIsCa ? caDer : rootDer,
    crls: [...(anchorIsCa ? [] : [rootCrl]), ...crls.map((c) => parseCrl(c))],
    now: NOW,
  });
  return res.ok ? 'valid' : res.failure!.code;
}
const REVOKE_1 = [{ serial: Buffer.from([0x01]), reason: 1 }];

describe('CRL scope (issuing distribution point vs the certificate distribution points)', () => {
  const URI = 'http://crl.example.test/ca.crl';
  test('IDP naming the URI in the certificate CRLDP is in scope (good, and revoked when listed)', () => {
    const l = leaf(Buffer.from([0x01]), [D.crlDp(D.uriName(URI))]);
    assert.equal(outcome(l, [caCrl({ idp: [D.idpFullName(D.uriName(URI))] })]), 'valid');
    assert.equal(outcome(l, [caCrl({ idp: [D.idpFullName(D.uriName(URI))], entries: REVOKE_1 })]), 'revoked');
    // Scheme and host compare case-insensitively (RFC 3986 §6.2.2.1).
    assert.equal(outcome(l, [caCrl({ idp: [D.idpFullName(D.uriName('HTTP://CRL.example.test/ca.crl'))] })]), 'valid');
  });
  test('IDP naming another URI is out of scope: unknown, never good', () => {
    const l = leaf(Buffer.from([0x01]), [D.crlDp(D.uriName(URI))]);
    assert.equal(outcome(l, [caCrl({ idp: [D.idpFullName(D.uriName('http://crl.example.test/other.crl'))] })]), 'revocation_unknown');
  });
  test('no CRLDP in the certificate, IDP names the issuer: in scope (RFC 5280 §6.3.3 (b)(2)(i), the default distribution point)', () => {
    const l = leaf(Buffer.from([0x01]));
    assert.equal(outcome(l, [caCrl({ idp: [D.idpFullName(D.dirName(CA))] })]), 'valid');
    assert.equal(outcome(l, [caCrl({ idp: [D.idpFullName(D.dirName(CA))], entries: REVOKE_1 })]), 'revoked');
    // …but an IDP with only a URI cannot be matched by a certificate without CRLDP.
    assert.equal(outcome(l, [caCrl({ idp: [D.idpFullName(D.uriName(URI))] })]), 'revocation_unknown');
  });
  test('certificate with a distribution point, CRL without IDP: a full CRL, in scope', () => {
    const l = leaf(Buffer.from([0x01]), [D.crlDp(D.uriName(URI))]);
    assert.equal(outcome(l, [caCrl()]), 'valid');
    assert.equal(outcome(l, [caCrl({ entries: REVOKE_1 })]), 'revoked');
  });
});

describe('trust anchors and chains', () => {
  test('the anchor is an intermediate CA and only its CRL is supplied: the anchor needs no CRL, its leaf is checked', () => {
    assert.equal(outcome(leaf(Buffer.from([0x01])), [caCrl()], { anchor: 'ca' }), 'valid');
    assert.equal(outcome(leaf(Buffer.from([0x01])), [caCrl({ entries: REVOKE_1 })], { anchor: 'ca' }), 'revoked');
    assert.equal(outcome(leaf(Buffer.from([0x01])), [], { anchor: 'ca' }), 'revocation_unknown');
  });
  test("two-certificate chain: the anchor's CRL revokes the leaf (validatePath, and the store through verifyServerChain)", async () => {
    const l = D.cert({ issuer: ROOT, subject: D.name([D.CN, 'direct.test']), key: leafKey, signer: rootKey, serial: Buffer.from([0x42]) });
    const revoking = D.crl({ issuer: ROOT, signer: rootKey, thisUpdate: before(1), nextUpdate: after(7), crlNumber: 2, entries: [{ serial: Buffer.from([0x42]), reason: 1 }] });
    const res = validatePath({ path: [l], anchor: rootDer, crls: [parseCrl(revoking)], now: NOW });
    assert.equal(res.failure?.code, 'revoked');

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hard-'));
    try {
      fs.writeFileSync(path.join(dir, 'root.crl'), revoking);
      const anchors = [new X509Certificate(rootDer)];
      const store = new RevocationStore({ trust: anchors, now: () => NOW, clockSkewMs: 0 });
      const rep = await store.loadPaths([dir]);
      assert.equal(rep.refused.length, 0, JSON.stringify(rep.refused));
      const chain = verifyServerChain([l], { anchors, hostname: null, now: NOW, revocation: store, leafOnly: false });
      assert.equal(chainReason(chain), 'certificate_revoked');
      assert.equal(chain.revocation.result?.status === 'revoked' && chain.revocation.result.reason, 'keyCompromise');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('delta CRLs', () => {
  const l = leaf(Buffer.from([0x01]));
  test('a delta CRL offered alone is not taken for a complete CRL', () => {
    assert.equal(outcome(l, [caCrl({ crlNumber: 6, deltaBase: 5 })]), 'revocation_unknown');
  });
  test('delta applied to a complete CRL whose number is at least the base; removeFromCRL un-holds', () => {
    const held = caCrl({ crlNumber: 5, entries: [{ serial: Buffer.from([0x01]), reason: 6 }] });
    assert.equal(outcome(l, [held]), 'revoked', 'certificateHold is a revocation');
    assert.equal(outcome(l, [held, caCrl({ crlNumber: 6, deltaBase: 5, entries: [{ serial: Buffer.from([0x01]), reason: 8 }] })]), 'valid');
    assert.equal(outcome(l, [caCrl({ crlNumber: 5 }), caCrl({ crlNumber: 6, deltaBase: 5, entries: REVOKE_1 })]), 'revoked');
    // Base 7 is newer than the complete CRL 5: the delta does not apply (§5.2.4), the complete CRL decides.
    assert.equal(outcome(l, [caCrl({ crlNumber: 5 }), caCrl({ crlNumber: 8, deltaBase: 7, entries: REVOKE_1 })]), 'valid');
  });
  test('the store keeps a delta beside its complete CRL and applies it', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hard-'));
    try {
      fs.writeFileSync(path.join(dir, 'a-complete.crl'), caCrl({ crlNumber: 5 }));
      fs.writeFileSync(path.join(dir, 'b-delta.crl'), caCrl({ crlNumber: 6, deltaBase: 5, entries: REVOKE_1 }));
      const store = new RevocationStore({ trust: [new X509Certificate(caDer)], now: () => NOW, clockSkewMs: 0 });
      const rep = await store.loadPaths([dir]);
      assert.equal(rep.accepted.length, 2, JSON.stringify(rep.refused));
      const st = store.check(certInfo(l), new X509Certificate(caDer));
      assert.ok(st.status === 'revoked' && st.crl.cRLNumber === '6', JSON.stringify(st));
      // A store that is offered the delta alone (a removed file would keep its last good CRL).
      fs.rmSync(path.join(dir, 'a-complete.crl'));
      const deltaOnly = new RevocationStore({ trust: [new X509Certificate(caDer)], now: () => NOW, clockSkewMs: 0 });
      await deltaOnly.loadPaths([dir]);
      assert.equal(deltaOnly.check(certInfo(l), new X509Certificate(caDer)).status, 'unknown', 'the delta alone decides nothing');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('names and serials', () => {
  test('CRL issuer with other string types, case and spaces than the certificate issuer (RFC 5280 §7.1)', () => {
    const utf8 = D.name([D.C, 'US', 0x13], [D.O, 'HARD  cases ', 0x0c], [D.CN, 'issuing ca', 0x0c]);
    assert.equal(outcome(leaf(Buffer.from([0x01])), [caCrl({ issuer: utf8 })]), 'valid');
    assert.equal(outcome(leaf(Buffer.from([0x01])), [caCrl({ issuer: utf8, entries: REVOKE_1 })]), 'revoked');
    const other = D.name([D.C, 'US', 0x13], [D.O, 'Hard Cases', 0x13], [D.CN, 'Issuing CA 2', 0x13]);
    assert.equal(outcome(leaf(Buffer.from([0x01])), [caCrl({ issuer: other, entries: REVOKE_1 })]), 'revocation_unknown');
  });
  test('serials: top bit set (leading 00), 20 and 21 bytes, zero and negative entries', () => {
    const top = Buffer.from('0080a1b2c3', 'hex');
    assert.equal(outcome(leaf(top), [caCrl({ entries: [{ serial: top, reason: 1 }] })]), 'revoked');
    const long20 = Buffer.concat([Buffer.from([0x7f]), Buffer.alloc(19, 0xab)]);
    const long21 = Buffer.concat([Buffer.from([0x00, 0x9f]), Buffer.alloc(19, 0xcd)]);
    const entries = [
      { serial: long20, reason: 1 },
      { serial: long21, reason: 4 },
      { serial: Buffer.from([0x00]) },
      { serial: Buffer.from([0xff]) }, // -1
    ];
    assert.equal(outcome(leaf(long20), [caCrl({ entries })]), 'revoked');
    assert.equal(outcome(leaf(long21), [caCrl({ entries })]), 'revoked');
    assert.equal(outcome(leaf(Buffer.concat([Buffer.from([0x00, 0x9f]), Buffer.alloc(18, 0xcd)])), [caCrl({ entries })]), 'valid', 'a shorter prefix is another serial');
    // 255 (00 FF) is not -1 (FF): the sign is part of the number.
    assert.equal(outcome(leaf(Buffer.from([0x00, 0xff])), [caCrl({ entries })]), 'valid');
    assert.equal(outcome(leaf(Buffer.from([0xff])), [caCrl({ entries })]), 'revoked');
    assert.equal(outcome(leaf(Buffer.from([0x00])), [caCrl({ entries })]), 'revoked', 'serial 0');
  });
});

describe('CRL times', () => {
  const l = leaf(Buffer.from([0x01]));
  test('nextUpdate in the past: stale, never good; a listed serial is still revoked', () => {
    assert.equal(outcome(l, [caCrl({ thisUpdate: before(10), nextUpdate: before(3) })]), 'revocation_stale');
    assert.equal(outcome(l, [caCrl({ thisUpdate: before(10), nextUpdate: before(3), entries: REVOKE_1 })]), 'revoked');
  });
  test('nextUpdate absent: usable (RFC 5280 §5.1.2.5 says MUST be present; accepted and reported)', () => {
    const c = caCrl({ nextUpdate: null });
    assert.equal(parseCrl(c).nextUpdate, null);
    assert.equal(outcome(l, [c]), 'valid');
  });
  test('dates in 2050 and later are GeneralizedTime and read as such', () => {
    const c = parseCrl(caCrl({ thisUpdate: new Date('2051-03-04T05:06:07Z'), nextUpdate: new Date('2151-01-01T00:00:00Z'), entries: [{ serial: Buffer.from([1]), date: new Date('2050-01-01T00:00:00Z') }] }));
    assert.equal(c.thisUpdate.toISOString(), '2051-03-04T05:06:07.000Z');
    assert.equal(c.nextUpdate?.toISOString(), '2151-01-01T00:00:00.000Z');
    assert.equal(c.lookup(Buffer.from([1]))?.revocationDate.toISOString(), '2050-01-01T00:00:00.000Z');
    assert.equal(outcome(l, [caCrl({ thisUpdate: new Date('2051-03-04T05:06:07Z'), nextUpdate: new Date('2151-01-01T00:00:00Z') })]), 'revocation_unknown', 'thisUpdate in the future: not yet usable');
  });
});

test('several CRLs concatenated in one PEM file: each is read, and the store uses all of them', async () => {
  const pem = (der: Buffer): string => `-----BEGIN X509 CRL-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END X509 CRL-----\n`;
  const bundle = pem(D.crl({ issuer: ROOT, signer: rootKey, thisUpdate: before(1), nextUpdate: after(7), crlNumber: 3 })) + pem(caCrl({ entries: REVOKE_1 }));
  assert.equal(decodeCrlFile(Buffer.from(bundle)).length, 2);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hard-'));
  try {
    fs.writeFileSync(path.join(dir, 'bundle.pem'), bundle);
    const anchors = [new X509Certificate(rootDer)];
    const store = new RevocationStore({ trust: [...anchors, new X509Certificate(caDer)], now: () => NOW, clockSkewMs: 0 });
    const rep = await store.loadPaths([dir]);
    assert.equal(rep.accepted.length, 2, JSON.stringify(rep.refused));
    const chain = verifyServerChain([leaf(Buffer.from([0x01])), caDer], { anchors, hostname: null, now: NOW, revocation: store, leafOnly: false });
    assert.equal(chainReason(chain), 'certificate_revoked');
    const good = verifyServerChain([leaf(Buffer.from([0x02])), caDer], { anchors, hostname: null, now: NOW, revocation: store, leafOnly: false });
    assert.equal(chainReason(good), 'ok', good.detail);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
