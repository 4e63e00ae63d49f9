/**
 * The CRL ConfigMap watcher inside a running proxy (`ca-proxy run` composition root), fed by the
 * fake kube-apiserver through a kubeconfig file: readiness waits for the first CRLs; a ConfigMap
 * update makes the proxy deny a newly revoked server; a cut watch and a 410 lose no update; a bad
 * CRL in a ConfigMap never replaces the good one.
 */
import { describe, test, beforeAll, afterAll } from '@jest/globals';
import { note } from '../support/note';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { makeWorld, worldConfig, startProxy, curlVia, type World, type RunningProxy } from '../support/world';
import { startSServer, type SServer } from '../support/s-server';
import { startFakeKubeApiServer, type FakeKubeApiServer, writeKubeconfig } from '../support/kube-apiserver';
import { publish } from '../unit/k8s/publish-helper';
import { until } from '../support/until';

const NS = 'ca-proxy';


let w: World;
let api: FakeKubeApiServer;
let good: SServer;
let p: RunningProxy;

beforeAll(async () => {
  w = makeWorld();
  api = await startFakeKubeApiServer();
  good = await startSServer({ cert: w.good.certPath, key: w.good.keyPath, chain: w.chainPath, clientCA: w.pki.cas.get('client-ca')!.certPath, version: 'tls1_2' });
  const kubeconfig = writeKubeconfig(path.join(w.dir, 'kubeconfig'), api.url, NS);
  const cfg = worldConfig(w);
  cfg.revocation.crlPaths = [];
  cfg.revocation.kubernetes = { namespace: NS, kubeconfig };
  p = await startProxy(cfg);
});
afterAll(async () => {
  await p?.stop();
  await good?.stop();
  await api?.stop();
  w?.cleanup();
});

const crlNumberOf = (issuerCn: string) => p.rt.store!.snapshot().find((c) => c.issuer.includes(`CN=${issuerCn}`))?.cRLNumber ?? null;

describe('k8s watcher in a running proxy', () => {
  test('not ready until the CRL ConfigMaps arrive; then a good server is allowed', async () => {
    await p.rt.crlWatcher!.whenSynced();
    assert.equal(p.rt.readiness().ready, false, 'no CRL yet under hardFail');
    await publish(api, NS, 'root', path.join(w.crlDir, 'root.crl'));
    await publish(api, NS, 'intermediate', path.join(w.crlDir, 'intermediate.crl'));
    await until(() => crlNumberOf('intermediate') !== null && crlNumberOf('root') !== null, 'both CRLs');
    assert.equal(p.rt.readiness().ready, true);
    const res = await curlVia(p, w, good.port);
    assert.equal(res.code, 0, res.stderr);
    assert.equal((await p.nextDecision()).outcome, 'allow');
  });

  test('revoking the server at the CA and publishing denies it', async () => {
    w.pki.revoke('intermediate', w.good.certPath, 'keyCompromise');
    const crl = w.pki.crl('intermediate');
    const before = crlNumberOf('intermediate');
    const t0 = performance.now();
    await publish(api, NS, 'intermediate', crl);
    await until(() => crlNumberOf('intermediate') !== before, 'the new CRL');
    note(`ConfigMap write → store swap: ${(performance.now() - t0).toFixed(1)} ms`);
    const res = await curlVia(p, w, good.port);
    assert.notEqual(res.code, 0);
    const d = await p.nextDecision();
    assert.equal(d.outcome, 'deny');
    assert.equal(d.reason, 'certificate_revoked');
    assert.equal(d.revocation?.cRLNumber, crlNumberOf('intermediate'));
  });

  test('a CRL signed by the wrong key never replaces the good one', async () => {
    w.pki.addCa('impostor', { issuer: 'root', subject: w.pki.intermediate.subject });
    const forged = w.pki.crl('impostor', { crlNumber: 1000 }); // revokes nothing, high number
    const before = crlNumberOf('intermediate');
    const refused = new Promise((r) => p.rt.crlWatcher!.once('refused', r));
    await publish(api, NS, 'intermediate', forged);
    await refused;
    assert.equal(crlNumberOf('intermediate'), before);
    const res = await curlVia(p, w, good.port);
    assert.notEqual(res.code, 0);
    assert.equal((await p.nextDecision()).reason, 'certificate_revoked');
  });

  test('a watch cut by the server, and a 410 after compaction, lose no update (split + gzip set)', async () => {
    await until(() => api.openWatches === 1, 'watching');
    api.closeWatches();
    const n1 = crlNumberOf('intermediate');
    await publish(api, NS, 'intermediate', w.pki.crl('intermediate'), { maxPayloadBytes: 200 });
    await until(() => crlNumberOf('intermediate') !== n1, 'update after the cut');

    await until(() => api.openWatches === 1, 'watching again');
    api.compact();
    api.closeWatches();
    const n2 = crlNumberOf('intermediate');
    await publish(api, NS, 'intermediate', w.pki.crl('intermediate'));
    api.compact(); // the resume point is now expired: the informer gets 410 and relists
    await until(() => crlNumberOf('intermediate') !== n2, 'update across 410');
    assert.ok(BigInt(crlNumberOf('intermediate')!) > BigInt(n2!));
    const res = await curlVia(p, w, good.port);
    assert.notEqual(res.code, 0);
    assert.equal((await p.nextDecision()).reason, 'certificate_revoked');
  });
});
