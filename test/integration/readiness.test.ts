/**
 * Readiness that tells the truth (issue 10, item 8), through `createRuntime` (the composition root
 * `ca-proxy run` uses) and its admin server's `/readyz`, with CRLs made by `openssl ca -gencrl`:
 * - an issuer whose only CRL is already past nextUpdate at start is judged as a reload judges it
 *   (refused `expired`, logged as such, counted as a refusal — never "CRLs accepted") and keeps
 *   `/readyz` at 503 under hardFail, naming the CRL; a current CRL dropped in makes it ready;
 *   an expired CRL offered on reload is refused the same way while the current CRL stays;
 * - under softFail the same start is ready, and the body says what is stale;
 * - a CRL that goes past nextUpdate while the process runs turns readiness off.
 */
import { describe, test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { makeWorld, worldConfig, startProxy, type World, type RunningProxy } from '../support/world';
import { afterThis } from '../support/cleanup';
import { until } from '../support/until';

let w: World;
beforeAll(() => {
  w = makeWorld();
});
afterAll(() => w.cleanup());

const DAY = 86400_000;

/** A CRL folder of its own: the root's current CRL and `intermediate.crl` as given. */
function crlDir(name: string, intermediateCrl: string): string {
  const dir = path.join(w.dir, `ready-${name}`);
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(w.crlDir, 'root.crl'), path.join(dir, 'root.crl'));
  fs.copyFileSync(intermediateCrl, path.join(dir, 'intermediate.crl'));
  return dir;
}

/** Atomic replacement, as kubelet and editors do it. */
function replace(dir: string, from: string): void {
  const tmp = path.join(dir, '.intermediate.crl.tmp');
  fs.copyFileSync(from, tmp);
  fs.renameSync(tmp, path.join(dir, 'intermediate.crl'));
}

async function readyz(p: RunningProxy): Promise<{ status: number; body: string }> {
  const r = await fetch(`${p.adminUrl}/readyz`);
  return { status: r.status, body: await r.text() };
}

async function metric(p: RunningProxy, line: RegExp): Promise<number> {
  const text = await (await fetch(`${p.adminUrl}/metrics`)).text();
  const m = text.split('\n').find((l) => line.test(l));
  return m ? Number(m.slice(m.lastIndexOf(' ') + 1)) : 0;
}

const logsOf = (p: RunningProxy): { msg: string; crl?: string; crls?: string[]; code?: string; level: string }[] => p.logs.map((l) => JSON.parse(l));

function expiredCrl(crlNumber: number): string {
  const now = Date.now();
  return w.pki.crl('intermediate', { thisUpdate: new Date(now - 10 * DAY), nextUpdate: new Date(now - 3 * DAY), crlNumber });
}

describe('an issuer whose only CRL is expired at start', () => {
  test('hardFail: not ready, the CRL refused as expired like a reload would; a current CRL makes it ready; an expired one on reload is refused the same way', async () => {
    const expired = expiredCrl(20);
    const dir = crlDir('hard', expired);
    const cfg = worldConfig(w);
    cfg.revocation.crlPaths = [dir];
    const p = await startProxy(cfg);
    afterThis(() => p.stop());
    const file = path.join(dir, 'intermediate.crl');

    const r = await readyz(p);
    assert.equal(r.status, 503, r.body);
    assert.match(r.body, /1 CRL\(s\) past nextUpdate, whose certificates hardFail denies \(revocation_stale\): CN=intermediate/);
    assert.ok(r.body.includes(file), r.body);
    assert.equal(p.rt.readiness().ready, false);

    const atStart = logsOf(p).filter((l) => l.crl === file);
    assert.deepEqual(atStart.map((l) => [l.code, l.level]), [['expired', 'warn']], JSON.stringify(atStart));
    assert.match(atStart[0]!.msg, /past nextUpdate and is not used as current/);
    const accepted = logsOf(p).filter((l) => l.msg === 'CRLs accepted').flatMap((l) => l.crls ?? []);
    assert.ok(!accepted.includes(file), `the expired CRL is not logged as accepted: ${JSON.stringify(accepted)}`);
    assert.ok(accepted.includes(path.join(dir, 'root.crl')));
    assert.equal(await metric(p, /^ca_proxy_crl_reloads_total\{result="refused"\}/), 1);

    // A current CRL of the same issuer: accepted, ready.
    replace(dir, w.pki.crl('intermediate', { crlNumber: 21 }));
    await until(async () => (await readyz(p)).status === 200, '/readyz 200 after a current CRL was dropped in', 15_000);
    assert.match((await readyz(p)).body, /^2 current CRL\(s\) loaded/);

    // An expired CRL offered on reload (a higher cRLNumber, so no rollback): the same judgement as
    // at start (expired), only now the current CRL stays. Still ready.
    const before = logsOf(p).length;
    replace(dir, expiredCrl(22));
    await until(() => logsOf(p).slice(before).some((l) => l.crl === file), 'the reload of the expired CRL', 15_000);
    const again = logsOf(p).slice(before).filter((l) => l.crl === file);
    assert.deepEqual(again.map((l) => [l.code, l.level]), [['expired', 'warn']]);
    assert.match(again[0]!.msg, /CRL refused, the last good CRL of its issuer stays: nextUpdate .* has passed .*the current CRL/);
    assert.equal((await readyz(p)).status, 200);
    assert.equal(await metric(p, /^ca_proxy_crl_reloads_total\{result="refused"\}/), 2);
  });

  test('softFail: ready, and the body says which CRL is stale', async () => {
    const dir = crlDir('soft', expiredCrl(30));
    const cfg = worldConfig(w, { defaults: { revocation: 'softFail' } });
    cfg.revocation.crlPaths = [dir];
    const p = await startProxy(cfg);
    afterThis(() => p.stop());
    const r = await readyz(p);
    assert.equal(r.status, 200, r.body);
    assert.match(r.body, /^1 current CRL\(s\) loaded; 1 past nextUpdate \(softFail allows their certificates, marked stale\): CN=intermediate/);
  });

  test('a hardFail rule among softFail defaults is enough to be not ready', async () => {
    const dir = crlDir('rule', expiredCrl(40));
    const cfg = worldConfig(w, { defaults: { revocation: 'softFail' }, rules: [{ name: 'strict', match: { sni: 'strict.example' }, action: 'intercept', revocation: 'hardFail' }] });
    cfg.revocation.crlPaths = [dir];
    const p = await startProxy(cfg);
    afterThis(() => p.stop());
    assert.equal((await readyz(p)).status, 503);
  });
});

test('a CRL that goes past nextUpdate while the process runs turns readiness off', async () => {
  // nextUpdate a few seconds ahead, no clock skew: current at start, stale soon after.
  const soon = w.pki.crl('intermediate', { thisUpdate: new Date(Date.now() - DAY), nextUpdate: new Date(Date.now() + 4000), crlNumber: 50 });
  const dir = crlDir('run', soon);
  const cfg = worldConfig(w);
  cfg.revocation.crlPaths = [dir];
  cfg.revocation.clockSkewSeconds = 0;
  const p = await startProxy(cfg);
  afterThis(() => p.stop());
  const first = await readyz(p);
  assert.equal(first.status, 200, `ready while the CRL is current: ${first.body}`);
  await until(async () => (await readyz(p)).status === 503, '/readyz 503 once nextUpdate has passed', 15_000, 100);
  assert.match((await readyz(p)).body, /past nextUpdate/);
});
