/**
 * The fake API server (test/support/kube-apiserver.ts) against the real client library: what
 * @kubernetes/client-node sends and expects must work as it would against kube-apiserver.
 */
import { afterAll, beforeAll, describe, test } from '@jest/globals';
import { afterThis } from '../../support/cleanup';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  CoordinationV1Api, CoreV1Api, KubeConfig, makeInformer, Watch, setHeaderOptions,
  type V1ConfigMap, type ApiException,
} from '@kubernetes/client-node';
import { startFakeKubeApiServer, type FakeKubeApiServer } from '../../support/kube-apiserver';
import { until } from '../../support/until';

function client(api: FakeKubeApiServer): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions(api.kubeconfigOptions());
  return kc;
}

function cm(name: string, labels: Record<string, string> = {}, bin?: Buffer): V1ConfigMap {
  return { metadata: { name, labels }, ...(bin ? { binaryData: { 'crl.der': bin.toString('base64') } } : { data: { k: name } }) };
}

async function code(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (e) {
    return (e as ApiException<unknown>).code;
  }
  return 200;
}


/** Reads a raw watch stream for `ms` (or until the server ends it); returns the decoded events. */
function rawWatch(url: string, ms: number): Promise<{ status: number; events: { type: string; object: any }[]; ended: boolean }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, (res) => {
      let buf = '';
      let ended = false;
      res.on('data', (d) => (buf += d));
      const done = () => resolve({ status: res.statusCode ?? 0, events: buf.split('\n').filter(Boolean).map((l) => JSON.parse(l)), ended });
      res.on('end', () => ((ended = true), clearTimeout(t), done()));
      const t = setTimeout(() => (req.destroy(), done()), ms);
    });
    req.on('error', reject);
  });
}

describe('fake kube-apiserver with @kubernetes/client-node', () => {
  let api: FakeKubeApiServer;
  let kc: KubeConfig;
  let core: CoreV1Api;
  beforeAll(async () => {
    api = await startFakeKubeApiServer();
    kc = client(api);
    core = kc.makeApiClient(CoreV1Api);
  });
  afterAll(() => api.stop());
  const ns = 'default';

  test('create, get, list by label with resourceVersion; AlreadyExists; NotFound', async () => {
    const a = await core.createNamespacedConfigMap({ namespace: ns, body: cm('a', { 'ca-proxy.io/crl': 'true' }, Buffer.from([0x30, 0])) });
    assert.ok(Number(a.metadata?.resourceVersion) > 0);
    assert.ok(a.metadata?.uid);
    await core.createNamespacedConfigMap({ namespace: ns, body: cm('b', { other: 'x' }) });
    const got = await core.readNamespacedConfigMap({ name: 'a', namespace: ns });
    assert.equal(got.binaryData?.['crl.der'], Buffer.from([0x30, 0]).toString('base64'));
    const list = await core.listNamespacedConfigMap({ namespace: ns, labelSelector: 'ca-proxy.io/crl=true' });
    assert.deepEqual(list.items.map((i) => i.metadata?.name), ['a']);
    assert.equal(list.metadata?.resourceVersion, api.resourceVersion);
    const set = await core.listNamespacedConfigMap({ namespace: ns, labelSelector: 'other in (x,y),!ca-proxy.io/crl' });
    assert.deepEqual(set.items.map((i) => i.metadata?.name), ['b']);
    assert.equal(await code(core.createNamespacedConfigMap({ namespace: ns, body: cm('a') })), 409);
    assert.equal(await code(core.readNamespacedConfigMap({ name: 'nope', namespace: ns })), 404);
    assert.equal(await code(core.listNamespacedConfigMap({ namespace: ns, resourceVersion: String(Number(api.resourceVersion) + 100) })), 504);
  });

  test('optimistic concurrency: a stale resourceVersion gets 409 Conflict, on replace and on patch', async () => {
    const cur = await core.readNamespacedConfigMap({ name: 'b', namespace: ns });
    const stale = structuredClone(cur);
    cur.data = { k: 'v2' };
    const next = await core.replaceNamespacedConfigMap({ name: 'b', namespace: ns, body: cur });
    assert.notEqual(next.metadata?.resourceVersion, stale.metadata?.resourceVersion);
    stale.data = { k: 'lost update' };
    assert.equal(await code(core.replaceNamespacedConfigMap({ name: 'b', namespace: ns, body: stale })), 409);
    const merge = setHeaderOptions('Content-Type', 'application/merge-patch+json');
    assert.equal(await code(core.patchNamespacedConfigMap({ name: 'b', namespace: ns, body: { metadata: { resourceVersion: stale.metadata?.resourceVersion }, data: { k: 'x' } } }, merge)), 409);
    const patched = await core.patchNamespacedConfigMap({ name: 'b', namespace: ns, body: { data: { k: 'v3' } } }, merge);
    assert.equal(patched.data?.k, 'v3');
    // Default content type of the client: JSON Patch.
    const jp = await core.patchNamespacedConfigMap({ name: 'b', namespace: ns, body: [{ op: 'replace', path: '/data/k', value: 'v4' }] });
    assert.equal(jp.data?.k, 'v4');
    assert.equal((await core.readNamespacedConfigMap({ name: 'b', namespace: ns })).data?.k, 'v4');
  });

  test('size limits: ConfigMap data over 1 MiB → 422 Invalid, request body over 3 MiB → 413', async () => {
    assert.equal(await code(core.createNamespacedConfigMap({ namespace: ns, body: cm('big', {}, Buffer.alloc(1024 * 1024 + 1)) })), 422);
    assert.equal((await code(core.createNamespacedConfigMap({ namespace: ns, body: cm('fits', {}, Buffer.alloc(1024 * 1024)) }))), 200);
    const huge: V1ConfigMap = { metadata: { name: 'huge' }, data: { a: 'x'.repeat(3 * 1024 * 1024 + 10) } };
    assert.equal(await code(core.createNamespacedConfigMap({ namespace: ns, body: huge })), 413);
    await core.deleteNamespacedConfigMap({ name: 'fits', namespace: ns });
  });

  test('informer: ADDED/MODIFIED/DELETED; a cut watch resumes from its resourceVersion; 410 makes it relist', async () => {
    const informer = makeInformer(kc, `/api/v1/namespaces/${ns}/configmaps`,
      () => core.listNamespacedConfigMap({ namespace: ns, labelSelector: 'ca-proxy.io/crl=true' }), 'ca-proxy.io/crl=true');
    const seen: string[] = [];
    informer.on('add', (o) => seen.push(`add ${o.metadata?.name} ${o.data?.k ?? ''}`));
    informer.on('update', (o) => seen.push(`update ${o.metadata?.name} ${o.data?.k ?? ''}`));
    informer.on('delete', (o) => seen.push(`delete ${o.metadata?.name}`));
    informer.on('error', (e) => seen.push(`error ${String(e)}`));
    await informer.start();
    afterThis(() => informer.stop());
    await until(() => api.openWatches === 1, 'the watch');
    assert.deepEqual(seen, ['add a ']);
    const watchReq = api.requests.filter((r) => r.verb === 'watch').at(-1)!;
    assert.equal(watchReq.query.labelSelector, 'ca-proxy.io/crl=true');
    assert.equal(watchReq.query.resourceVersion, (await core.listNamespacedConfigMap({ namespace: ns })).metadata?.resourceVersion);

    await core.createNamespacedConfigMap({ namespace: ns, body: cm('c', { 'ca-proxy.io/crl': 'true' }) });
    await until(() => seen.length === 2, 'ADDED c');
    // Relabelling out of the selector is a DELETED for this watch; back in, an ADDED.
    await core.patchNamespacedConfigMap({ name: 'c', namespace: ns, body: { metadata: { labels: { 'ca-proxy.io/crl': 'false' } } } }, setHeaderOptions('Content-Type', 'application/merge-patch+json'));
    await until(() => seen.length === 3, 'DELETED c');
    assert.equal(seen[2], 'delete c');

    // Cut the watch: the informer reconnects from its last resourceVersion (no relist) and misses nothing.
    const lists = () => api.requests.filter((r) => r.verb === 'list').length;
    const listsBefore = lists();
    api.closeWatches();
    api.put('configmaps', { metadata: { name: 'd', namespace: ns, labels: { 'ca-proxy.io/crl': 'true' } }, data: { k: 'during-cut' } });
    await until(() => seen.includes('add d during-cut'), 'd after the cut');
    assert.equal(lists(), listsBefore, 'a cut watch resumes without a relist');

    // Expire history and cut again, with writes in between: 410 Expired → relist → every change seen.
    await until(() => api.openWatches === 1, 'the watch again');
    api.compact();
    api.closeWatches();
    api.put('configmaps', { metadata: { name: 'd', namespace: ns, labels: { 'ca-proxy.io/crl': 'true' } }, data: { k: 'after-410' } });
    api.remove('configmaps', ns, 'a');
    // Make the resume point stale: the informer's resourceVersion is now older than the compacted history.
    api.compact();
    await until(() => seen.includes('update d after-410') && seen.includes('delete a'), 'changes across the 410');
    const ws = api.requests.filter((r) => r.verb === 'watch');
    assert.ok(lists() > listsBefore, 'relisted after 410');
    assert.ok(ws.some((r) => r.status === 200) && !seen.some((s) => s.startsWith('error')), seen.join('\n'));
  });

  test('410 as an HTTP status (goneAs: status) also makes the informer relist', async () => {
    const api2 = await startFakeKubeApiServer({ goneAs: 'status' });
    afterThis(() => api2.stop());
    const kc2 = client(api2);
    const core2 = kc2.makeApiClient(CoreV1Api);
    api2.put('configmaps', { metadata: { name: 'x', namespace: ns }, data: { k: '1' } });
    const informer = makeInformer(kc2, `/api/v1/namespaces/${ns}/configmaps`, () => core2.listNamespacedConfigMap({ namespace: ns }));
    const seen: string[] = [];
    informer.on('add', (o) => seen.push(`add ${o.metadata?.name} ${o.data?.k}`));
    informer.on('update', (o) => seen.push(`update ${o.metadata?.name} ${o.data?.k}`));
    await informer.start();
    afterThis(() => informer.stop());
    await until(() => api2.openWatches === 1, 'the watch');
    api2.compact();
    api2.closeWatches();
    api2.put('configmaps', { metadata: { name: 'x', namespace: ns }, data: { k: '2' } });
    api2.compact();
    await until(() => seen.includes('update x 2'), 'update after 410');
    assert.ok(api2.requests.some((r) => r.verb === 'watch' && r.status === 410));
  });

  test('raw watch: synthetic ADDED from "", history replay, BOOKMARK, timeoutSeconds, ERROR 410', async () => {
    const api3 = await startFakeKubeApiServer({ bookmarkIntervalMs: 20 });
    afterThis(() => api3.stop());
    const first = api3.put('configmaps', { metadata: { name: 'p', namespace: ns }, data: { k: '1' } });
    api3.put('configmaps', { metadata: { name: 'p', namespace: ns }, data: { k: '2' } });
    const base = `${api3.url}/api/v1/namespaces/${ns}/configmaps?watch=true`;
    const fresh = await rawWatch(`${base}&timeoutSeconds=0.1`, 2000);
    assert.equal(fresh.ended, true, 'timeoutSeconds ends the stream');
    assert.deepEqual(fresh.events.map((e) => `${e.type} ${e.object.data.k}`), ['ADDED 2']);
    const replay = await rawWatch(`${base}&resourceVersion=${first.metadata.resourceVersion}&timeoutSeconds=0.1`, 2000);
    assert.deepEqual(replay.events.map((e) => `${e.type} ${e.object.data.k}`), ['MODIFIED 2']);
    const bm = await rawWatch(`${base}&resourceVersion=${api3.resourceVersion}&allowWatchBookmarks=true&timeoutSeconds=0.2`, 2000);
    assert.ok(bm.events.length > 0 && bm.events.every((e) => e.type === 'BOOKMARK' && e.object.metadata.resourceVersion === api3.resourceVersion));
    api3.compact();
    api3.put('configmaps', { metadata: { name: 'p', namespace: ns }, data: { k: '3' } });
    const gone = await rawWatch(`${base}&resourceVersion=${first.metadata.resourceVersion}`, 2000);
    assert.equal(gone.status, 200);
    assert.equal(gone.events[0].type, 'ERROR');
    assert.equal(gone.events[0].object.code, 410);
    assert.equal(gone.events[0].object.reason, 'Expired');
    assert.equal(gone.ended, true);
  });

  test('client-node Watch with fieldSelector on metadata.name', async () => {
    const w = new Watch(kc);
    const got: string[] = [];
    let done = false;
    const ctl = await w.watch(`/api/v1/namespaces/${ns}/configmaps`, { fieldSelector: 'metadata.name=d' }, (type, obj) => got.push(`${type} ${obj.metadata.name}`), () => (done = true));
    await until(() => got.length >= 1, 'synthetic ADDED');
    assert.deepEqual(got, ['ADDED d']);
    ctl.abort();
    await until(() => done, 'done');
  });

  test('leases: create, replace with the current resourceVersion, 409 with a stale one', async () => {
    const coord = kc.makeApiClient(CoordinationV1Api);
    const now = new Date();
    const l = await coord.createNamespacedLease({ namespace: ns, body: { metadata: { name: 'ca-proxy-publisher' }, spec: { holderIdentity: 'a', leaseDurationSeconds: 15, acquireTime: now, renewTime: now } } });
    assert.equal(l.spec?.holderIdentity, 'a');
    const mine = structuredClone(l);
    mine.spec!.holderIdentity = 'b';
    const taken = await coord.replaceNamespacedLease({ name: 'ca-proxy-publisher', namespace: ns, body: mine });
    assert.equal(taken.spec?.holderIdentity, 'b');
    assert.equal(await code(coord.replaceNamespacedLease({ name: 'ca-proxy-publisher', namespace: ns, body: l })), 409);
    assert.equal(api.getObject('leases', ns, 'ca-proxy-publisher')?.spec && (api.getObject('leases', ns, 'ca-proxy-publisher')!.spec as { holderIdentity: string }).holderIdentity, 'b');
  });

  test('core/v1 events: create, merge-patch the count, list by involvedObject field selector', async () => {
    const ev = await core.createNamespacedEvent({
      namespace: ns,
      body: { metadata: { name: 'pod-a.1' }, involvedObject: { kind: 'Pod', name: 'pod-a', namespace: ns }, reason: 'EgressDenied', message: 'm', type: 'Warning', count: 1 },
    });
    assert.equal(ev.count, 1);
    const p = await core.patchNamespacedEvent({ name: 'pod-a.1', namespace: ns, body: { count: 5 } }, setHeaderOptions('Content-Type', 'application/strategic-merge-patch+json'));
    assert.equal(p.count, 5);
    const list = await core.listNamespacedEvent({ namespace: ns, fieldSelector: 'involvedObject.kind=Pod,involvedObject.name=pod-a' });
    assert.equal(list.items.length, 1);
    assert.equal((await core.listNamespacedEvent({ namespace: ns, fieldSelector: 'involvedObject.name=pod-b' })).items.length, 0);
  });

  test('fault injection answers with a Status error', async () => {
    api.fail((r) => r.verb === 'get', 503);
    assert.equal(await code(core.readNamespacedConfigMap({ name: 'd', namespace: ns })), 503);
    assert.equal(await code(core.readNamespacedConfigMap({ name: 'd', namespace: ns })), 200);
  });
});
