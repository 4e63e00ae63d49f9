/**
 * PodEventReporter against the fake API server: Events on the source Pod found the way
 * `kubectl describe pod` searches them (involvedObject kind/name/namespace/uid), aggregation per
 * pod + reason with a count, the rate limit, and recreation after the Event expired.
 */
import { afterAll, beforeAll, describe, test } from '@jest/globals';
import assert from 'node:assert/strict';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { startFakeKubeApiServer, type FakeKubeApiServer, type KubeObject } from '../../support/kube-apiserver';
import { PodEventReporter, eventReason } from '../../../internal/k8s/events';
import type { Decision } from '../../../internal/engine/decision';

function decision(over: Partial<Decision> = {}): Decision {
  return {
    time: new Date().toISOString(),
    connectionId: 'c1',
    source: { pod: 'web-1', namespace: 'shop' },
    destination: { sni: 'api.bank.test', port: 443 },
    action: 'intercept',
    rule: 'bank',
    outcome: 'deny',
    reason: 'certificate_revoked',
    revocation: { status: 'revoked', serial: '0a1b', reason: 'keyCompromise', cRLNumber: '7' },
    ...over,
  } as Decision;
}

describe('PodEventReporter', () => {
  let api: FakeKubeApiServer;
  let core: CoreV1Api;
  let pod: KubeObject;
  let clock = new Date('2030-01-01T00:00:00Z');
  let rep: PodEventReporter;
  beforeAll(async () => {
    api = await startFakeKubeApiServer();
    const kc = new KubeConfig();
    kc.loadFromOptions(api.kubeconfigOptions());
    core = kc.makeApiClient(CoreV1Api);
    pod = api.put('pods', { metadata: { name: 'web-1', namespace: 'shop' }, spec: {} });
    rep = new PodEventReporter({ kubeConfig: kc, ratePerMinute: 2, flushMs: 3_600_000, now: () => clock, instance: 'proc-0' });
  });
  afterAll(async () => {
    await rep.close();
    await api.stop();
  });

  /** What `kubectl describe pod web-1 -n shop` lists. */
  const describe = async (name = 'web-1', uid = pod.metadata.uid) =>
    (await core.listNamespacedEvent({ namespace: 'shop', fieldSelector: `involvedObject.kind=Pod,involvedObject.name=${name},involvedObject.namespace=shop,involvedObject.uid=${uid}` })).items;

  test('allowed connections and unknown pods write nothing', async () => {
    rep.report(decision({ outcome: 'allow', reason: 'ok' }));
    rep.report(decision({ source: { address: '10.0.0.1' } }));
    rep.report(decision({ source: { pod: 'x' } })); // no namespace, no default
    await rep.flush();
    assert.equal(rep.writes, 0);
    assert.equal(api.listObjects('events').length, 0);
  });

  test('a denial becomes a Warning Event on the Pod; repeats raise its count', async () => {
    rep.report(decision());
    await rep.flush();
    let evs = await describe();
    assert.equal(evs.length, 1);
    const e = evs[0]!;
    assert.equal(e.type, 'Warning');
    assert.equal(e.reason, 'CertificateRevoked');
    assert.equal(e.count, 1);
    assert.equal(e.involvedObject.uid, pod.metadata.uid);
    assert.equal(e.reportingComponent, 'ca-proxy');
    assert.equal(e.reportingInstance, 'proc-0');
    assert.match(e.message!, /api\.bank\.test:443: certificate_revoked; certificate serial 0a1b revoked \(keyCompromise\) by CRL #7/);
    clock = new Date(clock.getTime() + 60_000); // refill the bucket
    for (let i = 0; i < 5; i++) rep.report(decision());
    await rep.flush();
    evs = await describe();
    assert.equal(evs.length, 1, 'aggregated into one Event');
    assert.equal(evs[0]!.count, 6);
    assert.equal(new Date(evs[0]!.lastTimestamp!).getTime(), clock.getTime());
  });

  test('rate limit: writes beyond ratePerMinute wait for tokens; counts are kept, not lost', async () => {
    clock = new Date(clock.getTime() + 60_000);
    const before = rep.writes;
    for (const p of ['a', 'b', 'c', 'd']) rep.report(decision({ source: { pod: p, namespace: 'shop' }, reason: 'revocation_unknown' }));
    rep.report(decision({ source: { pod: 'a', namespace: 'shop' }, reason: 'revocation_unknown' }));
    await rep.flush();
    assert.equal(rep.writes - before, 2, '2 tokens per minute');
    clock = new Date(clock.getTime() + 60_000);
    await rep.flush();
    assert.equal(rep.writes - before, 4);
    clock = new Date(clock.getTime() + 60_000); // a's second denial came while its create was in flight
    await rep.flush();
    const byPod = new Map(api.listObjects('events', 'shop').filter((e) => e.reason === 'RevocationUnknown').map((e) => [(e.involvedObject as { name: string }).name, e.count]));
    assert.deepEqual(Object.fromEntries(byPod), { a: 2, b: 1, c: 1, d: 1 });
    // A pod the reporter cannot read (not in the API here): the Event is still written, without uid.
    const evA = api.listObjects('events', 'shop').find((e) => (e.involvedObject as { name: string }).name === 'a')!;
    assert.equal((evA.involvedObject as { uid?: string }).uid, undefined);
  });

  test('an Event that expired is created again', async () => {
    for (const e of api.listObjects('events', 'shop')) if (e.reason === 'CertificateRevoked') api.remove('events', 'shop', e.metadata.name);
    clock = new Date(clock.getTime() + 60_000);
    rep.report(decision());
    await rep.flush();
    const evs = await describe();
    assert.equal(evs.length, 1);
    assert.equal(evs[0]!.count, 7);
  });

  test('reason names', () => {
    assert.equal(eventReason('certificate_revoked'), 'CertificateRevoked');
    assert.equal(eventReason('tls13_not_inspectable'), 'Tls13NotInspectable');
  });
});
