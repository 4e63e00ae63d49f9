/**
 * The CRL ConfigMap format (internal/k8s/crl-configmap.ts, docs/kubernetes.md): encode → decode
 * round trips for plain DER, gzip and split sets; half-written, mixed and tampered sets are
 * refused, never half-decoded.
 */
import { test } from '@jest/globals';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  ANN,
  CrlConfigMapError,
  LABEL_CRL,
  LABEL_SET,
  decodeCrlSet,
  encodeCrlConfigMaps,
  groupCrlSets,
  type CrlConfigMap,
  type CrlMeta,
} from '../../../internal/k8s/crl-configmap';

function meta(der: Buffer, crlNumber = '42'): CrlMeta {
  return {
    issuer: 'CN=test CA',
    thisUpdate: new Date('2026-01-01T00:00:00Z'),
    nextUpdate: new Date('2026-01-08T00:00:00Z'),
    crlNumber,
    sha256: crypto.createHash('sha256').update(der).digest('hex'),
    source: 'http://ca.test/crl',
  };
}

const enc = (der: Buffer, maxPayloadBytes?: number, crlNumber?: string) =>
  encodeCrlConfigMaps({ set: 'crls-abc', namespace: 'ns', der, meta: meta(der, crlNumber), maxPayloadBytes });
const isCode = (code: string) => (e: unknown) => e instanceof CrlConfigMapError && e.code === code;

test('a small CRL is one ConfigMap with plain DER and every annotation of the format', async () => {
  const der = crypto.randomBytes(5000);
  const e = await enc(der);
  assert.equal(e.encoding, 'identity');
  assert.equal(e.configMaps.length, 1);
  const cm = e.configMaps[0]!;
  assert.equal(cm.metadata!.name, 'crls-abc');
  assert.deepEqual(cm.metadata!.labels, { [LABEL_CRL]: 'true', [LABEL_SET]: 'crls-abc' });
  const a = cm.metadata!.annotations!;
  assert.equal(a[ANN.crlNumber], '42');
  assert.equal(a[ANN.thisUpdate], '2026-01-01T00:00:00Z');
  assert.equal(a[ANN.nextUpdate], '2026-01-08T00:00:00Z');
  assert.equal(a[ANN.issuer], 'CN=test CA');
  assert.equal(a[ANN.part], '1/1');
  assert.equal(a[ANN.sha256], crypto.createHash('sha256').update(der).digest('hex'));
  assert.deepEqual(Object.keys(cm.binaryData!), ['crl.der']);
  const out = await decodeCrlSet(e.configMaps);
  assert.deepEqual(out.der, der);
  assert.equal(out.meta.crlNumber, '42');
});

test('a compressible CRL over one ConfigMap is gzipped whole', async () => {
  const der = Buffer.alloc(200_000, 0x30);
  const e = await enc(der, 64 * 1024);
  assert.equal(e.encoding, 'gzip');
  assert.deepEqual(Object.keys(e.configMaps[0]!.binaryData!), ['crl.der.gz']);
  assert.deepEqual((await decodeCrlSet(e.configMaps)).der, der);
});

test('an incompressible CRL is split into parts crl.der.gz.part-i-of-n, each payload within the budget', async () => {
  const max = 64 * 1024;
  const der = crypto.randomBytes(300_000);
  const e = await enc(der, max);
  const n = Math.ceil(e.payloadBytes / max);
  assert.equal(e.configMaps.length, n);
  assert.ok(n >= 5);
  e.configMaps.forEach((cm, k) => {
    assert.equal(cm.metadata!.name, `crls-abc-${k + 1}`);
    assert.deepEqual(Object.keys(cm.binaryData!), [`crl.der.gz.part-${k + 1}-of-${n}`]);
    assert.equal(cm.metadata!.annotations![ANN.part], `${k + 1}/${n}`);
    assert.ok(Buffer.from(Object.values(cm.binaryData!)[0]!, 'base64').length <= max);
  });
  // Order of the ConfigMaps does not matter (an informer cache has none).
  assert.deepEqual((await decodeCrlSet([...e.configMaps].reverse())).der, der);
});

test('a missing part, or parts of two writes, is incomplete; the complete generation wins over a partial one', async () => {
  const max = 64 * 1024;
  const der1 = crypto.randomBytes(200_000);
  const der2 = crypto.randomBytes(200_000);
  const a = await enc(der1, max, '1');
  const b = await enc(der2, max, '2');
  await assert.rejects(decodeCrlSet(a.configMaps.slice(1)), isCode('incomplete'));
  // A publisher overwrote part 1 in place: neither generation is complete.
  await assert.rejects(decodeCrlSet([b.configMaps[0]!, ...a.configMaps.slice(1)]), isCode('incomplete'));
  // The new generation complete beside an old leftover part: the complete one is used.
  const out = await decodeCrlSet([...b.configMaps, a.configMaps[0]!]);
  assert.deepEqual(out.der, der2);
  // Two complete generations: the higher cRLNumber wins.
  const whole1 = await enc(Buffer.alloc(100, 1), undefined, '7');
  const whole2 = await enc(Buffer.alloc(100, 2), undefined, '9');
  whole2.configMaps[0]!.metadata!.name = 'other';
  assert.equal((await decodeCrlSet([whole1.configMaps[0]!, whole2.configMaps[0]!])).meta.crlNumber, '9');
});

test('tampered bytes, bad base64, key/annotation disagreement, missing annotations: malformed', async () => {
  const max = 64 * 1024;
  const der = crypto.randomBytes(200_000);
  const a = await enc(der, max);
  const bad = structuredClone(a.configMaps[1]!) as CrlConfigMap;
  const key = Object.keys(bad.binaryData!)[0]!;
  const raw = Buffer.from(bad.binaryData![key]!, 'base64');
  raw[100] ^= 0xff;
  bad.binaryData![key] = raw.toString('base64');
  await assert.rejects(decodeCrlSet([a.configMaps[0]!, bad, ...a.configMaps.slice(2)]), isCode('malformed'));

  const small = (await enc(crypto.randomBytes(1000))).configMaps[0]!;
  const wrong = structuredClone(small) as CrlConfigMap;
  wrong.binaryData!['crl.der'] = crypto.randomBytes(1000).toString('base64');
  await assert.rejects(decodeCrlSet([wrong]), /SHA-256/);
  const b64 = structuredClone(small) as CrlConfigMap;
  b64.binaryData!['crl.der'] = 'not base64!';
  await assert.rejects(decodeCrlSet([b64]), /not base64/);
  const part = structuredClone(small) as CrlConfigMap;
  part.metadata!.annotations![ANN.part] = '2/3';
  await assert.rejects(decodeCrlSet([part]), /disagrees/);
  const noSha = structuredClone(small) as CrlConfigMap;
  delete noSha.metadata!.annotations![ANN.sha256];
  await assert.rejects(decodeCrlSet([noSha]), isCode('malformed'));
  const twoKeys = structuredClone(small) as CrlConfigMap;
  twoKeys.binaryData!['x'] = '';
  await assert.rejects(decodeCrlSet([twoKeys]), isCode('malformed'));
});

test('a gzip bomb stops at maxDerBytes', async () => {
  const der = Buffer.alloc(4 * 1024 * 1024, 0);
  const e = await enc(der, 64 * 1024);
  assert.equal(e.encoding, 'gzip');
  await assert.rejects(decodeCrlSet(e.configMaps, { maxDerBytes: 1024 * 1024 }), isCode('too_large'));
});

test('groupCrlSets groups by the crl-set label, a ConfigMap without it is its own set', () => {
  const cm = (name: string, set?: string): CrlConfigMap => ({ metadata: { name, labels: set ? { [LABEL_SET]: set } : {} } });
  const g = groupCrlSets([cm('b-1', 'b'), cm('lonely'), cm('a', 'a'), cm('b-2', 'b')]);
  assert.deepEqual([...g.keys()], ['a', 'b', 'lonely']);
  assert.deepEqual(g.get('b')!.map((c) => c.metadata!.name), ['b-1', 'b-2']);
});
