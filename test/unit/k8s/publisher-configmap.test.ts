/**
 * The CRL ConfigMap format (internal/k8s/crl-configmap.ts): encode → decode round trips for plain
 * DER, gzip and split sets; half-written and tampered sets are refused, never half-decoded.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  ANN,
  CrlConfigMapError,
  LABEL_ROLE,
  LABEL_SET,
  chunkBytesFor,
  decodeCrlSet,
  encodeCrlConfigMaps,
  groupCrlConfigMaps,
  sourceIdFor,
  type CrlConfigMap,
  type CrlMeta,
} from '../../../internal/k8s/crl-configmap';

function meta(der: Buffer): CrlMeta {
  return {
    issuer: 'CN=test CA',
    thisUpdate: new Date('2026-01-01T00:00:00Z'),
    nextUpdate: new Date('2026-01-08T00:00:00Z'),
    crlNumber: '42',
    sha256: crypto.createHash('sha256').update(der).digest('hex'),
    source: 'http://ca.test/crl',
  };
}

async function roundTrip(der: Buffer, maxObjectBytes: number) {
  const enc = await encodeCrlConfigMaps({ base: 'crls', sourceId: sourceIdFor('http://ca.test/crl'), namespace: 'ns', der, meta: meta(der), maxObjectBytes });
  const all = [...enc.parts, enc.head];
  const sets = groupCrlConfigMaps(all);
  assert.equal(sets.length, 1);
  const out = await decodeCrlSet(sets[0]!);
  return { enc, all, out };
}

test('a small CRL goes into the head as plain DER with every annotation', async () => {
  const der = crypto.randomBytes(5000);
  const { enc, out } = await roundTrip(der, 1024 * 1024);
  assert.equal(enc.encoding, 'identity');
  assert.equal(enc.parts.length, 0);
  const a = enc.head.metadata!.annotations!;
  assert.equal(a[ANN.crlNumber], '42');
  assert.equal(a[ANN.thisUpdate], '2026-01-01T00:00:00.000Z');
  assert.equal(a[ANN.nextUpdate], '2026-01-08T00:00:00.000Z');
  assert.equal(a[ANN.issuer], 'CN=test CA');
  assert.equal(a[ANN.parts], '1');
  assert.equal(enc.head.metadata!.labels![LABEL_SET], 'crls');
  assert.equal(enc.head.metadata!.labels![LABEL_ROLE], 'head');
  assert.ok(enc.head.binaryData!['crl.der']);
  assert.deepEqual(out.der, der);
  assert.equal(out.meta.crlNumber, '42');
});

test('a compressible CRL over one object is gzipped into the head', async () => {
  const der = Buffer.alloc(200_000, 0x30);
  const { enc, out } = await roundTrip(der, 64 * 1024);
  assert.equal(enc.encoding, 'gzip');
  assert.equal(enc.parts.length, 0);
  assert.ok(enc.head.binaryData!['crl.der.gz']);
  assert.deepEqual(out.der, der);
});

test('an incompressible CRL is split into parts, each object under the limit', async () => {
  const limit = 64 * 1024;
  const der = crypto.randomBytes(300_000);
  const { enc, out } = await roundTrip(der, limit);
  assert.equal(enc.encoding, 'gzip');
  assert.equal(enc.parts.length, Math.ceil(enc.payloadBytes / chunkBytesFor(limit)));
  assert.ok(enc.parts.length >= 6);
  for (const p of [...enc.parts, enc.head]) assert.ok(Buffer.byteLength(JSON.stringify(p)) < limit, `${p.metadata!.name} is ${Buffer.byteLength(JSON.stringify(p))} bytes`);
  assert.equal(enc.head.binaryData, undefined);
  assert.deepEqual(out.der, der);
});

test('a set with a part missing or from another write is incomplete; tampering is malformed', async () => {
  const limit = 64 * 1024;
  const der1 = crypto.randomBytes(200_000);
  const der2 = crypto.randomBytes(200_000);
  const a = await encodeCrlConfigMaps({ base: 'crls', sourceId: 's', namespace: 'ns', der: der1, meta: meta(der1), maxObjectBytes: limit });
  const b = await encodeCrlConfigMaps({ base: 'crls', sourceId: 's', namespace: 'ns', der: der2, meta: meta(der2), maxObjectBytes: limit });
  // Missing part.
  const missing = groupCrlConfigMaps([a.head, ...a.parts.slice(1)]);
  await assert.rejects(decodeCrlSet(missing[0]!), (e: unknown) => e instanceof CrlConfigMapError && e.code === 'incomplete');
  // Parts of the new write, head of the old one (a publish in progress).
  const mixed = groupCrlConfigMaps([a.head, b.parts[0]!, ...a.parts.slice(1)]);
  await assert.rejects(decodeCrlSet(mixed[0]!), (e: unknown) => e instanceof CrlConfigMapError && e.code === 'incomplete');
  // A chunk whose bytes were changed but annotations kept.
  const bad = structuredClone(a.parts[1]!) as CrlConfigMap;
  const raw = Buffer.from(bad.binaryData!.chunk!, 'base64');
  raw[100] ^= 0xff;
  bad.binaryData!.chunk = raw.toString('base64');
  const tampered = groupCrlConfigMaps([a.head, a.parts[0]!, bad, ...a.parts.slice(2)]);
  await assert.rejects(decodeCrlSet(tampered[0]!), (e: unknown) => e instanceof CrlConfigMapError && e.code === 'malformed');
});

test('plain-DER head whose bytes do not hash to the annotation, bad base64, missing annotations: malformed', async () => {
  const der = crypto.randomBytes(1000);
  const enc = await encodeCrlConfigMaps({ base: 'crls', sourceId: 's', namespace: 'ns', der, meta: meta(der) });
  const wrongSha = structuredClone(enc.head) as CrlConfigMap;
  wrongSha.binaryData!['crl.der'] = crypto.randomBytes(1000).toString('base64');
  await assert.rejects(decodeCrlSet({ head: wrongSha, parts: new Map() }), /SHA-256/);
  const badB64 = structuredClone(enc.head) as CrlConfigMap;
  badB64.binaryData!['crl.der'] = 'not base64!';
  await assert.rejects(decodeCrlSet({ head: badB64, parts: new Map() }), /not base64/);
  const noSha = structuredClone(enc.head) as CrlConfigMap;
  delete noSha.metadata!.annotations![ANN.sha256];
  await assert.rejects(decodeCrlSet({ head: noSha, parts: new Map() }), (e: unknown) => e instanceof CrlConfigMapError && e.code === 'malformed');
});

test('a gzip bomb stops at maxDerBytes', async () => {
  const der = Buffer.alloc(4 * 1024 * 1024, 0);
  const enc = await encodeCrlConfigMaps({ base: 'crls', sourceId: 's', namespace: 'ns', der, meta: meta(der), maxObjectBytes: 64 * 1024 });
  assert.equal(enc.encoding, 'gzip');
  await assert.rejects(decodeCrlSet(groupCrlConfigMaps([enc.head, ...enc.parts])[0]!, { maxDerBytes: 1024 * 1024 }), (e: unknown) => e instanceof CrlConfigMapError && e.code === 'too_large');
});

test('parts without a head are ignored; sets sort by head name', () => {
  const head = (name: string): CrlConfigMap => ({ metadata: { name, labels: { [LABEL_ROLE]: 'head' } } });
  const orphan: CrlConfigMap = { metadata: { name: 'x-part-0', labels: { [LABEL_ROLE]: 'part' }, annotations: { [ANN.head]: 'x', [ANN.part]: '0' } } };
  const sets = groupCrlConfigMaps([head('b'), orphan, head('a')]);
  assert.deepEqual(sets.map((s) => s.head.metadata!.name), ['a', 'b']);
  assert.equal(sets[0]!.parts.size + sets[1]!.parts.size, 0);
});
