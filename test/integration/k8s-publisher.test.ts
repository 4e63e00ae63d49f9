/**
 * The CRL publisher (internal/k8s/publisher.ts via cmd/ca-proxy/publish-crl.ts `startPublisher`)
 * against the fake API server (test/support/kube-apiserver.ts) and the local HTTP CA
 * (test/support/crl-ca.ts):
 * - publishes a CRL, then a newer one, into the documented ConfigMap format;
 * - refuses each bad case (404, slow beyond the timeout, garbage, lower cRLNumber, wrong key,
 *   over the size limit) and keeps the published CRL, with metrics and Warning Events;
 * - splits a 2,000,000-entry CRL across ConfigMaps that the API server accepts and that
 *   reassemble to the same DER;
 * - two publishers sharing one Lease never both write (every write observed at the HTTP level),
 *   and the survivor takes over after the leader dies;
 * - the `ca-proxy publish-crl` command as two processes: /metrics and /readyz on the admin port,
 *   SIGKILL of the leader → takeover, SIGTERM → Lease released and exit 0.
 */
import { describe, test, beforeAll, afterAll } from '@jest/globals';
import { note } from '../support/note';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeConfig } from '@kubernetes/client-node';
import pino from 'pino';
import { loadPublisherConfig, startPublisher, type RunningPublisher } from '../../cmd/ca-proxy/publish-crl';
import { ANN, LABEL_SET, decodeCrlSet, sourceIdFor, type CrlConfigMap } from '../../internal/k8s/crl-configmap';
import { closeCrlWorker } from '../../internal/pki/crl-worker';
import { ensureBenchCrl } from '../../bench/gen-crl';
import { startFakeKubeApiServer, type FakeKubeApiServer } from '../support/kube-apiserver';
import { startCrlCa, type CrlCa } from '../support/crl-ca';
import { ext, seq, tlv } from '../support/der-writer';
import { until } from '../support/until';

const NS = 'crl-system';
const quiet = pino({ level: 'silent' });
let api: FakeKubeApiServer;
let ca: CrlCa;
let dir: string;

beforeAll(async () => {
  api = await startFakeKubeApiServer();
  ca = await startCrlCa();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-publisher-it-'));
  fs.writeFileSync(path.join(dir, 'ca.pem'), ca.certPem);
});
afterAll(async () => {
  await api.stop();
  await ca.close();
  await closeCrlWorker();
  fs.rmSync(dir, { recursive: true, force: true });
});

function kubeConfig(server = api.url): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({ clusters: [{ name: 'fake', server, skipTLSVerify: true }], users: [{ name: 'u' }], contexts: [{ name: 'c', cluster: 'fake', user: 'u' }], currentContext: 'c' });
  return kc;
}

/** A config file as a user would write it; returns the loaded config. */
function configFor(name: string, yaml: string) {
  const file = path.join(dir, `${name}.yaml`);
  fs.writeFileSync(file, `admin: null\nlog: {level: silent}\n${yaml}`);
  return loadPublisherConfig(file);
}

function setOf(url: string, base: string): CrlConfigMap[] {
  const set = `${base}-${sourceIdFor(url)}`;
  return api.listObjects('configmaps', NS).filter((o) => o.metadata.labels?.[LABEL_SET] === set) as CrlConfigMap[];
}


async function scrape(run: RunningPublisher): Promise<string> {
  return run.metrics.registry.metrics();
}

function metric(text: string, name: string, labels: Record<string, string>): number | undefined {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (want.every((w) => line.includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

describe('publisher: publish, refuse, keep', () => {
  let run: RunningPublisher;
  let url: string;

  beforeAll(async () => {
    url = `${ca.url}/main.crl`;
    const { config, publisher } = configFor(
      'main',
      `publisher:
  sources: {urls: ["${url}"], caFiles: [ca.pem]}
  namespace: ${NS}
  configMapName: crl-main
  intervalSeconds: 3600
  nextUpdateMarginSeconds: 3600
  fetch: {timeoutMs: 300, maxBytes: 65536, retries: 1}
  lease: {name: pub-main, durationSeconds: 15, renewSeconds: 1}
`,
    );
    ca.route('/main.crl', { crl: ca.crl({ crlNumber: 10, revoked: [Buffer.from([0x10, 0x01])] }) });
    run = await startPublisher(config, publisher, { kubeConfig: kubeConfig(), identity: 'solo', logger: quiet, admin: '127.0.0.1:0', retryBaseDelayMs: 5 });
    await until(() => run.elector.isLeader(), 'leadership', 5000);
  });
  afterAll(() => run.close());

  test('publishes the CA\'s CRL, then a newer one, with every annotation of the format', async () => {
    await until(() => setOf(url, 'crl-main').length === 1, 'first publish', 5000);
    let cms = setOf(url, 'crl-main');
    let out = await decodeCrlSet(cms);
    assert.equal(out.meta.crlNumber, '10');
    assert.equal(out.meta.source, url);
    const a = cms[0]!.metadata!.annotations!;
    assert.equal(a[ANN.sha256], crypto.createHash('sha256').update(out.der).digest('hex'));
    assert.equal(a[ANN.issuer], 'CN=publisher test CA,O=ca-proxy test');
    assert.equal(a[ANN.part], '1/1');
    assert.equal(a[ANN.publishedBy], 'solo');
    assert.ok(a[ANN.thisUpdate] && a[ANN.nextUpdate]);

    // Same CRL again: 304 on the ETag, nothing written.
    const rv = cms[0]!.metadata!.resourceVersion;
    await run.publisher.runOnce();
    assert.equal(setOf(url, 'crl-main')[0]!.metadata!.resourceVersion, rv);
    assert.ok((ca.conditional.get('/main.crl') ?? 0) >= 1);
    assert.equal(run.publisher.status()[0]!.lastResult, 'not_modified');

    const next = ca.crl({ crlNumber: 11, revoked: [Buffer.from([0x10, 0x01]), Buffer.from([0x10, 0x02])] });
    ca.route('/main.crl', { crl: next });
    await run.publisher.runOnce();
    cms = setOf(url, 'crl-main');
    out = await decodeCrlSet(cms);
    assert.equal(out.meta.crlNumber, '11');
    assert.deepEqual(out.der, next);
    const m = await scrape(run);
    assert.equal(metric(m, 'ca_proxy_publisher_published_crl_number', { source: url }), 11);
    assert.ok(metric(m, 'ca_proxy_publisher_fetches_total', { source: url, result: 'published' })! >= 2);
    assert.ok(metric(m, 'ca_proxy_publisher_last_success_timestamp_seconds', { source: url })! > Date.now() / 1000 - 60);
    const left = metric(m, 'ca_proxy_publisher_next_update_seconds', { source: url })!;
    assert.ok(left > 6 * 86400 && left <= 7 * 86400, `seconds until nextUpdate: ${left}`);
    assert.equal(Number(/^ca_proxy_publisher_leader (\S+)$/m.exec(m)?.[1]), 1);
  });

  const bad: [string, () => void, string, string][] = [
    ['404', () => ca.route('/main.crl', { status: 404 }), 'fetch_failed', 'fetch_http_status'],
    ['slow beyond the timeout', () => ca.route('/main.crl', { slowMs: 3000 }), 'fetch_failed', 'fetch_timeout'],
    ['garbage', () => ca.route('/main.crl', { garbage: true }), 'refused', 'malformed'],
    ['a validly signed CRL with a lower cRLNumber', () => ca.route('/main.crl', { crl: ca.crl({ crlNumber: 9 }) }), 'refused', 'rollback'],
    ['a CRL signed by the wrong key', () => ca.route('/main.crl', { crl: ca.crl({ crlNumber: 12, wrongKey: true }) }), 'refused', 'bad_signature'],
    [
      'a CRL over the size limit',
      () => ca.route('/main.crl', { crl: ca.crl({ crlNumber: 13, revoked: Array.from({ length: 3000 }, (_, i) => Buffer.from([0x10, i >> 8, i & 0xff])) }) }),
      'fetch_failed',
      'fetch_too_large',
    ],
    [
      'a PEM file holding two CRLs',
      () => {
        const pem = (d: Buffer) => `-----BEGIN X509 CRL-----\n${d.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END X509 CRL-----\n`;
        ca.route('/main.crl', { crl: Buffer.from(pem(ca.crl({ crlNumber: 20 })) + pem(ca.crl({ crlNumber: 21 }))) });
      },
      'refused',
      'several_crls',
    ],
    ['a CRL whose thisUpdate is in the future', () => ca.route('/main.crl', { crl: ca.crl({ crlNumber: 14, thisUpdate: new Date(Date.now() + 86400_000) }) }), 'refused', 'not_yet_valid'],
    [
      'a CRL whose critical certificateIssuer entry extension does not decode',
      // [9] is no GeneralName alternative (RFC 5280 §4.2.1.6): the serials it governs must not turn good.
      () => ca.route('/main.crl', { crl: ca.crl({ crlNumber: 15, entries: [{ serial: Buffer.from([0x10, 0x03]), extensions: [ext('2.5.29.29', true, seq(tlv(0x89, Buffer.from('x'))))] }] }) }),
      'refused',
      'malformed',
    ],
    ['a CRL with an empty revokedCertificates SEQUENCE', () => ca.route('/main.crl', { crl: ca.crl({ crlNumber: 16, emptyRevokedCertificates: true }) }), 'refused', 'empty_revoked_certificates'],
  ];
  for (const [what, serve, result, code] of bad) {
    test(`refuses ${what} (${code}) and keeps cRLNumber 11 published`, async () => {
      const before = setOf(url, 'crl-main');
      const m0 = await scrape(run);
      serve();
      await run.publisher.runOnce();
      const after = setOf(url, 'crl-main');
      assert.deepEqual(
        after.map((c) => c.metadata!.resourceVersion),
        before.map((c) => c.metadata!.resourceVersion),
        'the published ConfigMaps are untouched',
      );
      assert.equal((await decodeCrlSet(after)).meta.crlNumber, '11');
      const st = run.publisher.status()[0]!;
      assert.equal(st.lastResult, result);
      assert.ok(st.lastError?.startsWith(code.replace(/^fetch_/, '')), st.lastError ?? '');
      const m1 = await scrape(run);
      assert.equal((metric(m1, 'ca_proxy_publisher_refusals_total', { source: url, code }) ?? 0) - (metric(m0, 'ca_proxy_publisher_refusals_total', { source: url, code }) ?? 0), 1);
      if (result === 'refused') {
        const ev = api.listObjects('events', NS).find((e) => e.reason === 'CRLRefused' && String(e.message).includes(`(${code})`));
        assert.ok(ev, `a CRLRefused Event for ${code}`);
        assert.equal(ev.type, 'Warning');
        const io = ev.involvedObject as Record<string, string>;
        assert.equal(io.kind, 'ConfigMap');
        assert.equal(io.name, after[0]!.metadata!.name);
        assert.equal(io.uid, after[0]!.metadata!.uid);
        assert.match(String(ev.message), /Still published: cRLNumber 11/);
      }
    });
  }

  test('a refusal repeated is one Event with a count', async () => {
    ca.route('/main.crl', { crl: ca.crl({ crlNumber: 15, wrongKey: true }) });
    await run.publisher.runOnce();
    await run.publisher.runOnce();
    const evs = api.listObjects('events', NS).filter((e) => e.reason === 'CRLRefused' && String(e.message).includes('(bad_signature)'));
    // The same reason and message on the same ConfigMap (cRLNumber 12 once, 15 twice): one Event, count 3.
    assert.equal(evs.length, 1);
    assert.equal(evs[0]!.count, 3);
  });

  test('the CA comes back with a newer CRL: published', async () => {
    ca.route('/main.crl', { crl: ca.crl({ crlNumber: 16 }) });
    await run.publisher.runOnce();
    assert.equal((await decodeCrlSet(setOf(url, 'crl-main'))).meta.crlNumber, '16');
    assert.equal(run.publisher.status()[0]!.lastError, null);
  });

  test('close to nextUpdate without a newer CRL: a CRLNextUpdateSoon Warning', async () => {
    const soon = ca.crl({ crlNumber: 17, nextUpdate: new Date(Date.now() + 20 * 60_000) });
    ca.route('/main.crl', { crl: soon });
    await run.publisher.runOnce(); // published
    await run.publisher.runOnce(); // 304: the same CRL, 20 min before nextUpdate, margin 1 h
    const ev = api.listObjects('events', NS).find((e) => e.reason === 'CRLNextUpdateSoon');
    assert.ok(ev, 'a CRLNextUpdateSoon Event');
    assert.match(String(ev.message), /cRLNumber 17/);
    // The next round is due before nextUpdate − margin... already passed: at the minimum delay, not the 1 h interval.
    const next = run.publisher.status()[0]!.nextRoundAt!;
    assert.ok(next.getTime() - Date.now() <= 31_000, `next round in ${next.getTime() - Date.now()} ms`);
  });

  test('the next round is due at the interval, or before nextUpdate − margin when that comes first', async () => {
    const now = Date.now();
    // nextUpdate in 1 h 10 min, margin 1 h: due in about 10 min, not in the 1 h interval.
    ca.route('/main.crl', { crl: ca.crl({ crlNumber: 17_001, nextUpdate: new Date(now + 70 * 60_000) }) });
    await run.publisher.runOnce();
    const due = run.publisher.status()[0]!.nextRoundAt!.getTime() - now;
    assert.ok(due > 9 * 60_000 && due <= 10 * 60_000, `due in ${due} ms`);
    // nextUpdate in a week: the interval (1 h) decides.
    ca.route('/main.crl', { crl: ca.crl({ crlNumber: 17_002 }) });
    await run.publisher.runOnce();
    const due2 = run.publisher.status()[0]!.nextRoundAt!.getTime() - Date.now();
    assert.ok(due2 > 59 * 60_000 && due2 <= 60 * 60_000, `due in ${due2} ms`);
  });

  test('a write under a stale resourceVersion gets 409: re-read, retried, written', async () => {
    const [cm] = setOf(url, 'crl-main');
    // Someone else touches the ConfigMap (a label added): the publisher's resourceVersion is stale.
    api.put('configmaps', { ...(cm as never as { metadata: { name: string } }), metadata: { ...cm!.metadata!, labels: { ...cm!.metadata!.labels, touched: 'yes' } } } as never);
    const m0 = await scrape(run);
    ca.route('/main.crl', { crl: ca.crl({ crlNumber: 17_003 }) });
    await run.publisher.runOnce();
    assert.equal((await decodeCrlSet(setOf(url, 'crl-main'))).meta.crlNumber, '17003');
    const m1 = await scrape(run);
    assert.equal(metric(m1, 'ca_proxy_publisher_configmap_writes_total', { result: 'conflict' })! - metric(m0, 'ca_proxy_publisher_configmap_writes_total', { result: 'conflict' })!, 1);
  });

  test('a 409 that reveals a newer CRL already stored: not overwritten, and nothing older is published after it', async () => {
    const [cm] = setOf(url, 'crl-main');
    const foreign = structuredClone(cm!) as CrlConfigMap;
    foreign.metadata!.annotations![ANN.crlNumber] = '99999';
    api.put('configmaps', foreign as never);
    ca.route('/main.crl', { crl: ca.crl({ crlNumber: 17_004 }) });
    await run.publisher.runOnce();
    assert.equal(run.publisher.status()[0]!.lastResult, 'write_failed');
    assert.equal(setOf(url, 'crl-main')[0]!.metadata!.annotations![ANN.crlNumber], '99999');
    await run.publisher.runOnce();
    assert.equal(run.publisher.status()[0]!.lastResult, 'refused');
    assert.match(run.publisher.status()[0]!.lastError!, /^rollback: cRLNumber 17004 .* older than the published cRLNumber 99999/);
  });
});

test('a 2,000,000-entry CRL is gzipped and split across ConfigMaps the API server accepts, and reassembles to the same DER', async () => {
  const bench = ensureBenchCrl(2_000_000, path.join(dir, 'bench'));
  ca.route('/huge.crl', { file: bench.crlPath });
  const url = `${ca.url}/huge.crl`;
  fs.copyFileSync(bench.caCertPath, path.join(dir, 'bench-ca.pem'));
  const { config, publisher } = configFor(
    'huge',
    `publisher:
  sources: {urls: ["${url}"], caFiles: [bench-ca.pem]}
  namespace: ${NS}
  configMapName: crl-huge
  intervalSeconds: 3600
  fetch: {timeoutMs: 60000, maxBytes: 268435456, retries: 0}
  lease: {name: pub-huge, durationSeconds: 30, renewSeconds: 5}
`,
  );
  const run = await startPublisher(config, publisher, { kubeConfig: kubeConfig(), identity: 'huge', logger: quiet, admin: null });
  try {
    const t0 = Date.now();
    await until(() => run.publisher.status()[0]!.lastResult !== null, 'the first round', 120_000);
    const ms = Date.now() - t0;
    assert.equal(run.publisher.status()[0]!.lastResult, 'published', run.publisher.status()[0]!.lastError ?? '');
    const cms = setOf(url, 'crl-huge');
    const n = cms.length;
    assert.ok(n > 1, `split into ${n}`);
    for (const cm of cms) {
      const [key] = Object.keys(cm.binaryData!);
      assert.match(key!, new RegExp(`^crl\\.der\\.gz\\.part-\\d+-of-${n}$`));
      assert.ok(Buffer.from(cm.binaryData![key!]!, 'base64').length <= 1_000_000);
    }
    const out = await decodeCrlSet(cms);
    assert.equal(out.der.length, bench.bytes);
    assert.equal(out.meta.crlNumber, String(1000 + 2_000_000));
    assert.equal(crypto.createHash('sha256').update(out.der).digest('hex'), crypto.createHash('sha256').update(fs.readFileSync(bench.crlPath)).digest('hex'));
    note(`2,000,000 entries, ${bench.bytes} bytes DER → ${n} ConfigMaps; fetch + validate + gzip + write: ${ms} ms`);
  } finally {
    await run.close();
    fs.rmSync(path.join(dir, 'bench'), { recursive: true, force: true });
  }
});

/** An HTTP proxy in front of the fake API server that records every ConfigMap write it forwards. */
async function recordingProxy(tag: string, log: { who: string; at: number; method: string; path: string; status: number }[]) {
  const target = new URL(api.url);
  const srv = http.createServer((req, res) => {
    const isWrite = req.method !== 'GET' && (req.url ?? '').includes('/configmaps');
    const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
      if (isWrite) log.push({ who: tag, at: Date.now(), method: req.method!, path: req.url!, status: ur.statusCode ?? 0 });
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, close: () => (srv.closeAllConnections(), new Promise<void>((r) => srv.close(() => r()))) };
}

test('two publishers with one Lease never both write; the survivor takes over after the leader dies', async () => {
  const url = `${ca.url}/shared.crl`;
  let n = 100;
  ca.route('/shared.crl', { crl: ca.crl({ crlNumber: n }) });
  const log: { who: string; at: number; method: string; path: string; status: number }[] = [];
  const proxies = await Promise.all(['a', 'b'].map((who) => recordingProxy(who, log)));
  const { config, publisher } = configFor(
    'shared',
    `publisher:
  sources: {urls: ["${url}"], caFiles: [ca.pem]}
  namespace: ${NS}
  configMapName: crl-shared
  intervalSeconds: 1
  fetch: {timeoutMs: 2000, maxBytes: 65536, retries: 0}
  lease: {name: pub-shared, durationSeconds: 2, renewSeconds: 1}
`,
  );
  // Faster than the schema allows, to keep the test short: 1 s lease, renew every 200 ms, a round every 100 ms.
  const p = { ...publisher, lease: { ...publisher.lease, durationSeconds: 1, renewSeconds: 0.2 } };
  const runs = new Map<string, RunningPublisher>();
  for (const [i, who] of ['a', 'b'].entries()) {
    runs.set(who, await startPublisher(config, p, { kubeConfig: kubeConfig(proxies[i]!.url), identity: who, logger: quiet, admin: null, minDelayMs: 100 }));
  }
  // The CA issues a new CRL every 150 ms: the leader keeps writing.
  const issuer = setInterval(() => ca.route('/shared.crl', { crl: ca.crl({ crlNumber: ++n }) }), 150);
  try {
    const t0 = Date.now();
    await until(() => log.length >= 3, 'writes', 10_000);
    const writers = new Set(log.map((w) => w.who));
    assert.equal(writers.size, 1, `writers while both run: ${[...writers].join(',')}`);
    const leader = [...writers][0]!;
    const follower = leader === 'a' ? 'b' : 'a';
    await sleep(500);
    assert.deepEqual(new Set(log.map((w) => w.who)), new Set([leader]), 'still one writer half a second later');
    // The leader dies: no release, no more requests from it.
    const killedAt = Date.now();
    await runs.get(leader)!.close({ release: false });
    await proxies[leader === 'a' ? 0 : 1]!.close();
    await until(() => log.some((w) => w.who === follower), 'takeover', 10_000);
    const lastByLeader = Math.max(...log.filter((w) => w.who === leader).map((w) => w.at));
    const firstByFollower = Math.min(...log.filter((w) => w.who === follower).map((w) => w.at));
    assert.ok(firstByFollower > lastByLeader, 'the writes of the two never interleave');
    const cms = setOf(url, 'crl-shared');
    await until(async () => Number((await decodeCrlSet(setOf(url, 'crl-shared'))).meta.crlNumber) > n - 3, 'the new leader publishes current CRLs', 5000);
    assert.equal(cms[0]!.metadata!.annotations![ANN.publishedBy], follower);
    const lease = api.getObject('leases', NS, 'pub-shared')!.spec as Record<string, unknown>;
    assert.equal(lease.holderIdentity, follower);
    assert.ok(firstByFollower - killedAt >= 500, `takeover waited for the lease to expire (${firstByFollower - killedAt} ms)`);
    note(`first write ${log[0]!.at - t0} ms after start; takeover: first write by the new leader ${firstByFollower - killedAt} ms after the leader died (lease 1 s)`);
  } finally {
    clearInterval(issuer);
    for (const r of runs.values()) await r.close().catch(() => undefined);
    for (const pr of proxies) await pr.close().catch(() => undefined);
  }
});

test('`ca-proxy publish-crl` as processes: publishes, serves /metrics and /readyz; SIGKILL → the other takes over; SIGTERM releases the Lease and exits 0', async () => {
  const url = `${ca.url}/cli.crl`;
  ca.route('/cli.crl', { crl: ca.crl({ crlNumber: 500 }) });
  const kubeconfig = path.join(dir, 'kubeconfig.json');
  fs.writeFileSync(
    kubeconfig,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake', cluster: { server: api.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'u', user: {} }],
      contexts: [{ name: 'c', context: { cluster: 'fake', user: 'u' } }],
      'current-context': 'c',
    }),
  );
  const file = path.join(dir, 'cli.yaml');
  // No interceptionCA: publish-crl does not need it.
  fs.writeFileSync(
    file,
    `admin: 127.0.0.1:0
log: {level: info}
trust: {caFiles: [ca.pem]}
publisher:
  sources: {urls: ["${url}"]}
  namespace: ${NS}
  configMapName: crl-cli
  intervalSeconds: 1
  lease: {name: pub-cli, durationSeconds: 2, renewSeconds: 1}
  kubeconfig: kubeconfig.json
`,
  );
  const { spawn } = await import('node:child_process');
  const { repoRoot } = await import('../support/root');
  const start = (id: string) => {
    const child = spawn(process.execPath, [path.join(repoRoot(), 'dist/cmd/ca-proxy/main.js'), 'publish-crl', '--config', file, '--identity', id], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const parts = buf.split('\n');
      buf = parts.pop()!;
      lines.push(...parts);
    });
    child.stderr.on('data', (d) => lines.push(String(d)));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    return { id, child, lines, exited };
  };
  const procs = [start('cli-a'), start('cli-b')];
  try {
    const adminOf = async (p: (typeof procs)[number]) => {
      await until(() => p.lines.some((l) => l.includes('publish-crl started')), `${p.id} started`, 10_000);
      return `http://${JSON.parse(p.lines.find((l) => l.includes('publish-crl started'))!).admin}`;
    };
    const admins = await Promise.all(procs.map(adminOf));
    await until(() => setOf(url, 'crl-cli').length === 1, 'the first publish', 10_000);
    const holder = () => (api.getObject('leases', NS, 'pub-cli')?.spec as { holderIdentity?: string } | undefined)?.holderIdentity;
    const leaderIdx = procs.findIndex((p) => p.id === holder());
    assert.ok(leaderIdx >= 0, `holder ${holder()}`);
    const leader = procs[leaderIdx]!;
    const follower = procs[1 - leaderIdx]!;
    const metrics = await (await fetch(`${admins[leaderIdx]}/metrics`)).text();
    assert.equal(metric(metrics, 'ca_proxy_publisher_published_crl_number', { source: url }), 500);
    assert.match(metrics, /^ca_proxy_publisher_leader 1$/m);
    assert.match(await (await fetch(`${admins[1 - leaderIdx]}/metrics`)).text(), /^ca_proxy_publisher_leader 0$/m);
    // A follower is ready once its election round has seen the Lease and its holder.
    let readyBody = '';
    await until(async () => {
      const r = await fetch(`${admins[1 - leaderIdx]}/readyz`);
      readyBody = await r.text();
      return r.status === 200;
    }, 'the follower ready', 5000);
    assert.match(readyBody, new RegExp(`following ${leader.id}`));

    // The leader is killed: nothing is released; the follower takes over once the Lease expires.
    leader.child.kill('SIGKILL');
    await leader.exited;
    ca.route('/cli.crl', { crl: ca.crl({ crlNumber: 501 }) });
    await until(() => setOf(url, 'crl-cli')[0]?.metadata?.annotations?.[ANN.crlNumber] === '501', 'the new leader publishes', 10_000);
    assert.equal(setOf(url, 'crl-cli')[0]!.metadata!.annotations![ANN.publishedBy], follower.id);
    assert.equal(holder(), follower.id);

    // SIGTERM: the Lease is released (no holder) and the process exits 0.
    follower.child.kill('SIGTERM');
    assert.equal(await follower.exited, 0);
    assert.equal(holder() ?? null, null);
    assert.ok(follower.lines.some((l) => l.includes('became the leader')));
  } finally {
    for (const p of procs) p.child.kill('SIGKILL');
  }
});
