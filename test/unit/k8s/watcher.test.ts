/**
 * CrlWatcher against the fake API server and real CRLs made with openssl: initial list, updates,
 * split + gzip sets, half-written sets, refused CRLs (bad signature, rollback, tampered bytes), set
 * deletion, cut watches and 410, API errors, and the mounted-volume source with kubelet's `..data`
 * swap.
 */
import { afterAll, beforeAll, describe, test } from '@jest/globals';
import { afterThis } from '../../support/cleanup';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { KubeConfig } from '@kubernetes/client-node';
import { makePki, type Pki, type LeafHandle } from '../../support/pki';
import { startFakeKubeApiServer, type FakeKubeApiServer } from '../../support/kube-apiserver';
import { RevocationStore } from '../../../internal/pki/store';
import { certInfo } from '../../../internal/pki/certinfo';
import { CrlWatcher, type SetRefusal } from '../../../internal/k8s/watcher';
import { publish } from './publish-helper';
import { until } from '../../support/until';

const NS = 'ca-proxy';


interface Fixture {
  pki: Pki;
  a: LeafHandle;
  b: LeafHandle;
  /** CRL #1 revokes a; #2 revokes a and b; #3 as #2, signed by an impostor key; */
  crl1: string;
  crl2: string;
  forged: string;
  /** A large CRL (many entries) so it needs gzip and several parts at a small payload budget. */
}

function fixture(): Fixture {
  const pki = makePki({ keyType: 'ec' });
  const a = pki.issueLeaf('a');
  const b = pki.issueLeaf('b');
  pki.revoke('intermediate', a.certPath, 'keyCompromise');
  const crl1 = pki.crl('intermediate');
  pki.revoke('intermediate', b.certPath, 'superseded');
  const crl2 = pki.crl('intermediate');
  pki.addCa('impostor', { issuer: 'root', subject: pki.intermediate.subject });
  const forged = pki.crl('impostor', { crlNumber: 99 });
  return { pki, a, b, crl1, crl2, forged };
}

function status(store: RevocationStore, f: Fixture, leaf: LeafHandle): string {
  return store.check(certInfo(leaf.x509), f.pki.intermediate.x509).status;
}

describe('CrlWatcher', () => {
  let f: Fixture;
  let api: FakeKubeApiServer;
  let kc: KubeConfig;
  beforeAll(async () => {
    f = fixture();
    api = await startFakeKubeApiServer();
    kc = new KubeConfig();
    kc.loadFromOptions(api.kubeconfigOptions(NS));
  });
  afterAll(async () => {
    await api.stop();
    f.pki.cleanup();
  });
  const newStore = () => new RevocationStore({ trust: [f.pki.root.x509, f.pki.intermediate.x509] });

  async function startWatcher(store: RevocationStore, extra: Partial<ConstructorParameters<typeof CrlWatcher>[0]> = {}) {
    const w = new CrlWatcher({
      store, source: { kind: 'api', kubeConfig: kc, namespace: NS }, debounceMs: 10, backoffMs: { initial: 20, max: 100 }, ...extra,
    });
    const refused: SetRefusal[] = [];
    w.on('refused', (r: SetRefusal) => refused.push(r));
    await w.start();
    afterThis(() => w.stop());
    return { w, refused };
  }

  test('initial list, then an update through the watch; an unrelated ConfigMap is ignored', async () => {
    await publish(api, NS, 'intermediate', f.crl1);
    api.put('configmaps', { metadata: { name: 'other', namespace: NS, labels: { app: 'x' } }, data: { k: 'v' } });
    const store = newStore();
    const { w } = await startWatcher(store);
    await w.whenSynced();
    assert.equal(store.ready, true);
    assert.equal(status(store, f, f.a), 'revoked');
    assert.equal(status(store, f, f.b), 'good');
    await publish(api, NS, 'intermediate', f.crl2);
    await until(() => status(store, f, f.b) === 'revoked', 'b revoked after the update');
    assert.deepEqual(store.snapshot().map((c) => c.cRLNumber), ['2']);
    assert.deepEqual([...w.sets().keys()], ['intermediate']);
  });

  test('split + gzip: a CRL in several parts; a half-written generation keeps the last good CRL', async () => {
    const big = (() => {
      for (let i = 0; i < 12; i++) f.pki.revoke('root', f.pki.issueLeaf(`r${i}`, { issuer: 'root' }).certPath, 'superseded');
      return f.pki.crl('root');
    })();
    const store = newStore();
    const { w, refused } = await startWatcher(store);
    await w.whenSynced();
    const n = await publish(api, NS, 'root', big, { maxPayloadBytes: 120 });
    assert.ok(n >= 3, `split into ${n} parts`);
    await until(() => store.snapshot().some((c) => c.entries === 12), 'the split CRL');
    const root1 = store.snapshot().find((c) => c.entries === 12)!;

    // The next root CRL, written part by part: until the last part lands the set is incomplete.
    f.pki.revoke('root', f.pki.issueLeaf('r-extra', { issuer: 'root' }).certPath, 'superseded');
    const big2 = f.pki.crl('root');
    const n2 = await publish(api, NS, 'root', big2, { maxPayloadBytes: 120, onlyParts: [1] });
    await until(() => refused.some((r) => r.set === 'root' && r.code === 'incomplete'), 'incomplete noticed');
    assert.equal(store.snapshot().find((c) => c.issuer === root1.issuer)?.cRLNumber, root1.cRLNumber, 'old root CRL kept');
    await publish(api, NS, 'root', big2, { maxPayloadBytes: 120, onlyParts: Array.from({ length: n2 }, (_, i) => i + 1) });
    await until(() => store.snapshot().some((c) => c.entries === 13), 'the new split CRL');
  });

  test('refused: forged signature, rollback, tampered bytes — the last good CRL stays', async () => {
    const store = newStore();
    const { w, refused } = await startWatcher(store);
    await w.whenSynced();
    await until(() => status(store, f, f.b) === 'revoked', 'crl2 active');
    await publish(api, NS, 'intermediate', f.forged);
    await until(() => refused.some((r) => r.set === 'intermediate' && r.code !== 'incomplete'), 'forged refused');
    assert.equal(status(store, f, f.b), 'revoked');
    assert.equal(store.snapshot().find((c) => c.issuer.includes('intermediate'))?.cRLNumber, '2');

    const before = refused.length;
    await publish(api, NS, 'intermediate', f.crl1); // cRLNumber 1 < 2
    await until(() => refused.length > before, 'rollback refused');
    assert.equal(refused.at(-1)!.code, 'rollback');
    assert.equal(status(store, f, f.b), 'revoked');

    // Bytes that do not match the sha256 annotation.
    const cm = api.getObject('configmaps', NS, 'intermediate')!;
    const der = Buffer.from(fs.readFileSync(f.crl2));
    der[der.length - 5] ^= 0xff;
    cm.binaryData = { 'crl.der': der.toString('base64') };
    cm.metadata.annotations!['ca-proxy.io/sha256'] = (await import('node:crypto')).createHash('sha256').update(fs.readFileSync(f.crl2)).digest('hex');
    const before2 = refused.length;
    api.put('configmaps', cm);
    await until(() => refused.length > before2, 'tampered refused');
    assert.equal(refused.at(-1)!.code, 'malformed');
    assert.match(refused.at(-1)!.message, /SHA-256/);
    assert.equal(status(store, f, f.b), 'revoked');
    await publish(api, NS, 'intermediate', f.crl2);
  });

  test('a cut watch and a 410 lose no update; API errors are retried', async () => {
    const store = newStore();
    const { w } = await startWatcher(store);
    await w.whenSynced();
    await until(() => api.openWatches >= 1, 'watching');
    api.remove('configmaps', NS, 'intermediate');
    api.closeWatches();
    // The store keeps a deleted set's last good CRL; what must not be lost is the watcher seeing the deletion.
    await until(() => !w.sets().has('intermediate'), 'set deleted during a cut watch');

    api.compact();
    api.closeWatches();
    await publish(api, NS, 'intermediate', f.crl2);
    api.compact();
    await until(() => w.sets().has('intermediate') && status(store, f, f.b) === 'revoked', 'update across 410');

    api.fail((r) => r.verb === 'watch' || r.verb === 'list', 503, 4);
    api.closeWatches();
    api.compact();
    api.remove('configmaps', NS, 'intermediate');
    await until(() => !w.sets().has('intermediate'), 'change after API errors');
    assert.ok(api.requests.some((r) => r.status === 503));
    await publish(api, NS, 'intermediate', f.crl2);
    await until(() => w.sets().has('intermediate') && status(store, f, f.b) === 'revoked', 'back');
  });

  test('mounted volume: kubelet ..data swap, gzip parts', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-vol-'));
    afterThis(() => fs.rmSync(root, { recursive: true, force: true }));
    const dir = path.join(root, 'intermediate');
    fs.mkdirSync(dir);
    // What kubelet's AtomicWriter does: write a timestamped folder, point ..data at it, files link through ..data.
    let gen = 0;
    const kubeletWrite = (files: Record<string, Buffer>) => {
      const ts = `..${Date.now()}_${gen++}`;
      fs.mkdirSync(path.join(dir, ts));
      for (const [k, v] of Object.entries(files)) fs.writeFileSync(path.join(dir, ts, k), v);
      const old = fs.existsSync(path.join(dir, '..data')) ? fs.readlinkSync(path.join(dir, '..data')) : null;
      fs.symlinkSync(ts, path.join(dir, '..data_tmp'));
      fs.renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
      for (const k of Object.keys(files)) if (!fs.existsSync(path.join(dir, k))) fs.symlinkSync(path.join('..data', k), path.join(dir, k));
      for (const n of fs.readdirSync(dir)) if (!n.startsWith('.') && !(n in files)) fs.unlinkSync(path.join(dir, n));
      if (old) fs.rmSync(path.join(dir, old), { recursive: true });
    };
    kubeletWrite({ 'crl.der': fs.readFileSync(f.crl1) });
    const store = newStore();
    const w = new CrlWatcher({ store, source: { kind: 'volume', dirs: [dir], pollMs: 20 }, debounceMs: 10 });
    await w.start();
    afterThis(() => w.stop());
    await w.whenSynced();
    assert.equal(status(store, f, f.a), 'revoked');
    assert.equal(status(store, f, f.b), 'good');
    const gz = zlib.gzipSync(fs.readFileSync(f.crl2));
    const half = Math.ceil(gz.length / 2);
    kubeletWrite({ 'crl.der.gz.part-1-of-2': gz.subarray(0, half), 'crl.der.gz.part-2-of-2': gz.subarray(half) });
    await until(() => status(store, f, f.b) === 'revoked', 'volume update');
    const refused: SetRefusal[] = [];
    w.on('refused', (r: SetRefusal) => refused.push(r));
    kubeletWrite({ 'crl.der.gz': Buffer.from('not gzip') });
    await until(() => refused.length > 0, 'garbage refused');
    assert.equal(status(store, f, f.b), 'revoked');
  });
});
