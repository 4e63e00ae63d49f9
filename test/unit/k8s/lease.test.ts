/**
 * Leader election on a coordination.k8s.io/v1 Lease (internal/k8s/lease.ts) against the fake
 * API server: acquire and renew, one leader among candidates at every sample, takeover after a
 * dead leader's lease expires, fast takeover after a release, a lost 409 round, and a leader
 * cut off from the API server giving up leadership by its own clock.
 */
import { test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeConfig } from '@kubernetes/client-node';
import { LeaderElector } from '../../../internal/k8s/lease';
import { startFakeKubeApiServer, type FakeKubeApiServer } from '../../support/kube-apiserver';
import { until } from '../../support/until';

let api: FakeKubeApiServer;
let kc: KubeConfig;
beforeAll(async () => {
  api = await startFakeKubeApiServer();
  kc = new KubeConfig();
  kc.loadFromOptions(api.kubeconfigOptions('ns'));
});
afterAll(() => api.stop());

const elector = (name: string, identity: string, over: Partial<ConstructorParameters<typeof LeaderElector>[0]> = {}) =>
  new LeaderElector({ kubeConfig: kc, namespace: 'ns', name, identity, leaseDurationSeconds: 1, renewSeconds: 0.1, ...over });


test('a lone candidate creates the Lease, then renews it', async () => {
  const a = elector('solo', 'a');
  a.start();
  await until(() => a.isLeader());
  const l1 = api.getObject('leases', 'ns', 'solo')!;
  const spec1 = l1.spec as Record<string, unknown>;
  assert.equal(spec1.holderIdentity, 'a');
  assert.equal(spec1.leaseDurationSeconds, 1);
  assert.equal(spec1.leaseTransitions, 0);
  await sleep(350);
  const spec2 = api.getObject('leases', 'ns', 'solo')!.spec as Record<string, unknown>;
  assert.ok(new Date(spec2.renewTime as string) > new Date(spec1.renewTime as string));
  assert.equal(spec2.acquireTime, spec1.acquireTime);
  await a.stop();
  assert.equal(a.isLeader(), false);
  assert.equal((api.getObject('leases', 'ns', 'solo')!.spec as Record<string, unknown>).holderIdentity, undefined);
});

test('three candidates: never two leaders at once; a dead leader is replaced after the lease duration', async () => {
  const cs = ['x', 'y', 'z'].map((id) => elector('trio', id));
  for (const c of cs) c.start();
  let both = 0;
  let samples = 0;
  const sampler = setInterval(() => {
    samples++;
    if (cs.filter((c) => c.isLeader()).length > 1) both++;
  }, 5);
  try {
    await until(() => cs.some((c) => c.isLeader()));
    const first = cs.find((c) => c.isLeader())!;
    await sleep(400);
    assert.equal(first.isLeader(), true, 'the leader keeps leading while it renews');
    // The leader's process dies: no release.
    const killedAt = Date.now();
    await first.stop({ release: false });
    await until(() => cs.some((c) => c !== first && c.isLeader()));
    const tookMs = Date.now() - killedAt;
    assert.ok(tookMs >= 700, `takeover only after the lease expired (took ${tookMs} ms)`);
    const spec = api.getObject('leases', 'ns', 'trio')!.spec as Record<string, unknown>;
    assert.notEqual(spec.holderIdentity, first.identity);
    assert.equal(spec.leaseTransitions, 1);
  } finally {
    clearInterval(sampler);
    for (const c of cs) await c.stop();
  }
  assert.ok(samples > 100);
  assert.equal(both, 0, `${both} of ${samples} samples saw two leaders`);
});

test('a released Lease is taken over at the next round, without waiting for expiry', async () => {
  const a = elector('rel', 'a', { leaseDurationSeconds: 10, renewSeconds: 0.1 });
  const b = elector('rel', 'b', { leaseDurationSeconds: 10, renewSeconds: 0.1 });
  a.start();
  await until(() => a.isLeader());
  b.start();
  await sleep(300);
  assert.equal(b.isLeader(), false);
  const t0 = Date.now();
  await a.stop();
  await until(() => b.isLeader(), 'condition', 3000);
  assert.ok(Date.now() - t0 < 3000);
  await b.stop();
});

test('a 409 on the renew loses the round', async () => {
  const a = elector('conflict', 'a', { leaseDurationSeconds: 1, renewSeconds: 0.1 });
  a.start();
  await until(() => a.isLeader());
  api.fail((r) => r.resource === 'coordination.k8s.io/leases' && r.verb === 'update', 409, 1);
  await until(() => !a.isLeader(), 'condition', 2000);
  await until(() => a.isLeader(), 'condition', 2000);
  await a.stop();
});

test('a leader that cannot reach the API server stops leading by its own clock, before the lease expires for others', async () => {
  let now = Date.now();
  const a = elector('cut', 'a', { leaseDurationSeconds: 10, renewSeconds: 0.05, now: () => now });
  a.start();
  await until(() => a.isLeader());
  // Every Lease request fails from now on; the last successful renew was sent at about `now`.
  api.fail((r) => r.resource === 'coordination.k8s.io/leases', 503, 1_000_000);
  await sleep(200);
  const sent = now;
  now = sent + 7_000;
  assert.equal(a.isLeader(), true, 'still within the lease minus the safety margin');
  now = sent + 8_000; // lease 10 s, safety 2 s: others may take over only after 10 s
  assert.equal(a.isLeader(), false);
  await a.stop();
});
