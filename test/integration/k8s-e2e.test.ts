/**
 * End to end, CA → publisher → API server → watcher → proxy decision, with every piece real
 * except the API server (test/support/kube-apiserver.ts) and the CA's HTTP front
 * (test/support/crl-ca.ts serving CRLs made by `openssl ca`):
 * - the publisher (two replicas, one Lease) publishes the root's and the intermediate's CRLs; the
 *   proxy (`ca-proxy run` composition root, watcher on the fake API server through a kubeconfig
 *   file) turns ready and allows the good server;
 * - revoking the server at the CA makes the proxy deny it: the time from the CA's change to the
 *   store swap and to the first denied connection is measured (publish interval 1 s);
 * - a CRL the publisher refuses (forged signature) never reaches the processor;
 * - a watch cut by the server, and a 410 after compaction, lose no update;
 * - only the Lease holder wrote the ConfigMaps (`ca-proxy.io/published-by` on every stored version
 *   sampled).
 */
import { test, beforeAll, afterAll } from '@jest/globals';
import { note } from '../support/note';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { startPublisher, type RunningPublisher } from '../../cmd/ca-proxy/publish-crl';
import { defaultConfig } from '../../internal/config/defaults';
import type { PublisherConfig } from '../../internal/config/types';
import { ANN } from '../../internal/k8s/crl-configmap';
import { makeWorld, worldConfig, startProxy, curlVia, type World, type RunningProxy } from '../support/world';
import { startSServer, type SServer } from '../support/s-server';
import { startFakeKubeApiServer, type FakeKubeApiServer, writeKubeconfig } from '../support/kube-apiserver';
import { startCrlCa, type CrlCa } from '../support/crl-ca';
import { until } from '../support/until';

const NS = 'ca-proxy';
let w: World;
let api: FakeKubeApiServer;
let ca: CrlCa;
let good: SServer;
let p: RunningProxy;
const pubs: RunningPublisher[] = [];
/** Every `published-by` the API server stored on a CRL ConfigMap, in order. */
const writers: string[] = [];


const crlNumberOf = (issuerCn: string) => p.rt.store!.snapshot().find((c) => c.issuer.includes(`CN=${issuerCn}`))?.cRLNumber ?? null;
const serve = (name: string, file: string) => ca.route(`/${name}.crl`, { crl: fs.readFileSync(file) });

beforeAll(async () => {
  w = makeWorld();
  api = await startFakeKubeApiServer();
  ca = await startCrlCa();
  serve('root', path.join(w.crlDir, 'root.crl'));
  serve('intermediate', path.join(w.crlDir, 'intermediate.crl'));
  good = await startSServer({ cert: w.good.certPath, key: w.good.keyPath, chain: w.chainPath, clientCA: w.pki.cas.get('client-ca')!.certPath, version: 'tls1_2' });
  const kubeconfig = writeKubeconfig(path.join(w.dir, 'kubeconfig'), api.url, NS);
  // The processor: CRLs only from the ConfigMaps.
  const cfg = worldConfig(w);
  cfg.revocation.crlPaths = [];
  cfg.revocation.kubernetes = { namespace: NS, kubeconfig };
  p = await startProxy(cfg);
  // Record who wrote each ConfigMap version the API server stored, sampled every 2 ms (a version
  // replaced within 2 ms can be missed; k8s-publisher.test.ts checks every write at the HTTP level).
  const seen = new Set<string>();
  const poll = setInterval(() => {
    for (const cm of api.listObjects('configmaps', NS)) {
      const id = `${cm.metadata.name}@${cm.metadata.resourceVersion}`;
      if (seen.has(id)) continue;
      seen.add(id);
      writers.push(cm.metadata.annotations?.[ANN.publishedBy] ?? '(none)');
    }
  }, 2);
  poll.unref();
  // The publishers: the same trust settings as the processor, two replicas on one Lease.
  const pcfg: PublisherConfig = {
    ...defaultConfig().publisher!,
    sources: { urls: [`${ca.url}/root.crl`, `${ca.url}/intermediate.crl`], caFiles: [] },
    namespace: NS,
    configMapName: 'crl',
    intervalSeconds: 1,
    fetch: { timeoutMs: 2000, maxBytes: 16 * 1024 * 1024, retries: 1 },
    lease: { name: 'crl-publisher', durationSeconds: 2, renewSeconds: 0.5 },
    kubeconfig,
  };
  for (const id of ['pub-a', 'pub-b']) {
    pubs.push(await startPublisher(worldConfig(w), pcfg, { identity: id, logger: pino({ level: 'silent' }), admin: null, minDelayMs: 1000 }));
  }
});

afterAll(async () => {
  for (const r of pubs) await r.close();
  await p?.stop();
  await good?.stop();
  await api?.stop();
  await ca?.close();
  w?.cleanup();
});

test('the publisher\'s CRLs reach the proxy: ready, and the good server is allowed', async () => {
  await until(() => crlNumberOf('intermediate') !== null && crlNumberOf('root') !== null, 'both CRLs in the store');
  assert.equal(p.rt.readiness().ready, true);
  const res = await curlVia(p, w, good.port);
  assert.equal(res.code, 0, res.stderr);
  assert.equal((await p.nextDecision()).outcome, 'allow');
});

test('revoking the server at the CA: the proxy denies it within one publish interval plus informer latency', async () => {
  w.pki.revoke('intermediate', w.good.certPath, 'keyCompromise');
  const crl = w.pki.crl('intermediate');
  const before = crlNumberOf('intermediate');
  const requestsBefore = ca.requests.get('/intermediate.crl') ?? 0;
  const t0 = performance.now();
  serve('intermediate', crl); // the CA's change
  await until(() => crlNumberOf('intermediate') !== before, 'the new CRL in the store', 10_000, 2);
  const swapMs = performance.now() - t0;
  // "Within one publish interval": the publisher's first fetch after the change carried it all the way.
  assert.equal((ca.requests.get('/intermediate.crl') ?? 0) - requestsBefore, 1);
  let denyMs = NaN;
  for (;;) {
    const res = await curlVia(p, w, good.port);
    const d = await p.nextDecision();
    if (d.outcome === 'deny') {
      denyMs = performance.now() - t0;
      assert.notEqual(res.code, 0);
      assert.equal(d.reason, 'certificate_revoked');
      assert.equal(d.revocation?.cRLNumber, crlNumberOf('intermediate'));
      break;
    }
  }
  const fetchedAt = ca.served.find((x) => x.path === '/intermediate.crl' && x.at >= t0)!.at;
  note(
    `CA change → store swap: ${swapMs.toFixed(0)} ms; → first denied connection: ${denyMs.toFixed(0)} ms (publish interval 1000 ms; ` +
      `of which waiting for the publisher's next round ${(fetchedAt - t0).toFixed(0)} ms, its fetch → store swap ${(t0 + swapMs - fetchedAt).toFixed(0)} ms)`,
  );
});

test('a CRL the publisher refuses (forged signature) never reaches the processor', async () => {
  w.pki.addCa('impostor', { issuer: 'root', subject: w.pki.intermediate.subject });
  const forged = w.pki.crl('impostor', { crlNumber: 1000 }); // revokes nothing, a high cRLNumber
  const before = crlNumberOf('intermediate');
  const leader = pubs.find((r) => r.elector.isLeader())!;
  const status = () => leader.publisher.status().find((s) => s.url.endsWith('/intermediate.crl'))!;
  serve('intermediate', forged);
  await until(() => status().lastResult === 'refused', 'the refusal', 5000, 20);
  // Same issuer Name, another key: its authorityKeyIdentifier matches no trusted certificate.
  assert.match(status().lastError!, /^unknown_issuer/);
  await sleep(300);
  assert.equal(crlNumberOf('intermediate'), before);
  const res = await curlVia(p, w, good.port);
  assert.notEqual(res.code, 0);
  assert.equal((await p.nextDecision()).reason, 'certificate_revoked');
});

test('a watch cut by the server, and a 410 after compaction, lose no update', async () => {
  await until(() => api.openWatches >= 1, 'watching');
  api.closeWatches();
  const n1 = crlNumberOf('intermediate');
  serve('intermediate', w.pki.crl('intermediate'));
  await until(() => crlNumberOf('intermediate') !== n1, 'update after the cut');

  await until(() => api.openWatches >= 1, 'watching again');
  api.compact();
  api.closeWatches();
  const n2 = crlNumberOf('intermediate');
  serve('intermediate', w.pki.crl('intermediate'));
  await until(() => crlNumberOf('intermediate') !== n2, 'update across the 410');
  assert.ok(BigInt(crlNumberOf('intermediate')!) > BigInt(n2!));
});

test('two publishers on one Lease: every ConfigMap version was written by the Lease holder alone', () => {
  const holder = (api.getObject('leases', NS, 'crl-publisher')!.spec as { holderIdentity: string }).holderIdentity;
  assert.ok(writers.length >= 4, `${writers.length} versions seen`);
  assert.deepEqual([...new Set(writers)], [holder]);
});
