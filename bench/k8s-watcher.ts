/**
 * The CRL ConfigMap watcher applying a 1,000,000-entry CRL update while the processor serves
 * revocation checks.
 *
 * A child process runs the fake kube-apiserver (test/support/kube-apiserver.ts) and plays the
 * publisher (crl-configmap.ts encoding: gzip, split at 1,000,000 bytes per ConfigMap), so its
 * JSON and gzip work does not count against the processor. The parent is the processor: a
 * RevocationStore fed by a CrlWatcher (informer), with a 1 ms "serving" tick that runs store.check
 * on a fixed sample of serials. Steps: publish CRL A (1,000,000 entries, bench/gen-crl.ts), wait
 * until it is active, then publish CRL B (A + one new serial, higher cRLNumber) and measure
 *   - time from the publisher's last ConfigMap write to the first check answering `revoked` for
 *     the new serial (watch delivery, reassembly, gunzip, SHA-256, spool write, worker parse +
 *     signature, swap);
 *   - the event-loop stall during that time (perf_hooks.monitorEventLoopDelay, 1 ms resolution, and
 *     the largest gap of the 1 ms serving tick), and the number of checks served meanwhile;
 *   - memory: RSS peak during the update, heap + external before and after (after GC).
 *
 * Run: `node dist/bench/k8s-watcher.js [--entries N] [--runs N]` (CRLs cached in bench/.data).
 */
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';
import { KubeConfig } from '@kubernetes/client-node';
import { ensureBenchCrl, serialFor } from './gen-crl';
import { RevocationStore } from '../internal/pki/store';
import { certInfo, type CertInfo } from '../internal/pki/certinfo';
import { closeCrlWorker } from '../internal/pki/crl-worker';
import { CrlWatcher } from '../internal/k8s/watcher';
import { encodeCrlConfigMaps } from '../internal/k8s/crl-configmap';
import { parseCrl } from '../internal/pki/crl';
import { formatName } from '../internal/pki/certinfo';
import { startFakeKubeApiServer, type KubeObject } from '../test/support/kube-apiserver';

const NS = 'ca-proxy';
const args = process.argv.slice(2);
const arg = (name: string, dflt: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};

// ---- child: fake API server + publisher ---------------------------------------------------------
async function child(): Promise<void> {
  const api = await startFakeKubeApiServer();
  process.on('message', async (m: { publish: string }) => {
    const der = fs.readFileSync(m.publish);
    const c = parseCrl(der);
    const t0 = Date.now();
    const enc = await encodeCrlConfigMaps({
      set: 'bench', namespace: NS, der,
      meta: { issuer: formatName(c.issuerDer), thisUpdate: c.thisUpdate, nextUpdate: c.nextUpdate, crlNumber: c.crlNumber?.toString() ?? null, sha256: c.sha256, source: m.publish },
    });
    for (const cm of enc.configMaps) api.put('configmaps', cm as unknown as KubeObject);
    process.send!({ published: Date.now(), encodeMs: Date.now() - t0, parts: enc.configMaps.length, payloadBytes: enc.payloadBytes, derBytes: der.length });
  });
  process.send!({ url: api.url });
}

// ---- parent: the processor ----------------------------------------------------------------------
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const mb = (n: number) => (n / 1048576).toFixed(1);

function heapExt(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external + m.arrayBuffers;
}

async function parent(): Promise<void> {
  const entries = arg('--entries', 1_000_000);
  const runs = arg('--runs', 3);
  const a = ensureBenchCrl(entries);
  const ca = new X509Certificate(fs.readFileSync(a.caCertPath));
  const caInfo = certInfo(ca);
  const fake = (serial: Buffer): CertInfo => ({ ...caInfo, issuerDer: caInfo.subjectDer, serial, isCa: false });
  const sample = Array.from({ length: 200 }, (_, i) => fake(serialFor(i * 4999)));

  const srv: ChildProcess = fork(__filename, ['--server'], { stdio: 'inherit' });
  const msgs: Record<string, unknown>[] = [];
  let waiter: ((m: Record<string, unknown>) => void) | null = null;
  srv.on('message', (m: Record<string, unknown>) => (waiter ? (waiter(m), (waiter = null)) : msgs.push(m)));
  const next = () => new Promise<Record<string, unknown>>((r) => (msgs.length ? r(msgs.shift()!) : (waiter = r)));
  const { url } = (await next()) as { url: string };

  const kc = new KubeConfig();
  kc.loadFromOptions({ clusters: [{ name: 'fake', server: url, skipTLSVerify: true }], users: [{ name: 'u' }], contexts: [{ name: 'c', cluster: 'fake', user: 'u' }], currentContext: 'c' });
  const store = new RevocationStore({ trust: [ca] });
  const watcher = new CrlWatcher({ store, source: { kind: 'api', kubeConfig: kc, namespace: NS } });
  await watcher.start();
  await watcher.whenSynced();

  const waitFor = async (cond: () => boolean) => {
    while (!cond()) await new Promise((r) => setTimeout(r, 1));
  };
  const base = heapExt();
  srv.send({ publish: a.crlPath });
  const pa = await next();
  await waitFor(() => store.snapshot().length === 1);
  const afterFirst = heapExt();
  console.log(`CRL A: ${entries} entries, ${mb(a.bytes)} MiB DER → ${pa.parts} ConfigMaps (${mb(pa.payloadBytes as number)} MiB gzip); publisher encode ${pa.encodeMs} ms`);
  console.log(`memory held (heap + external, after GC): store + informer cache ${mb(afterFirst - base)} MiB`);

  const rows: { applyMs: number; stallMs: number; tickGapMs: number; checks: number; rssPeak: number; heldAfter: number }[] = [];
  for (let run = 0; run < runs; run++) {
    // Each run publishes a CRL one entry larger: a higher cRLNumber revoking one more serial.
    const b = ensureBenchCrl(entries + run + 1);
    const newSerial = fake(serialFor(entries + run));
    if (store.check(newSerial, caInfo).status === 'revoked') throw new Error('new serial already revoked');
    gc();
    const h = monitorEventLoopDelay({ resolution: 1 });
    let checks = 0;
    let last = performance.now();
    let maxGap = 0;
    let rssPeak = 0;
    let revokedAt = 0;
    const tick = setInterval(() => {
      const t = performance.now();
      maxGap = Math.max(maxGap, t - last);
      last = t;
      for (const c of sample) if (store.check(c, caInfo).status !== 'revoked') throw new Error('a revoked serial answered otherwise');
      checks += sample.length;
      if (!revokedAt && store.check(newSerial, caInfo).status === 'revoked') revokedAt = Date.now();
      rssPeak = Math.max(rssPeak, process.memoryUsage.rss());
    }, 1);
    h.enable();
    srv.send({ publish: b.crlPath });
    const pb = await next();
    await waitFor(() => revokedAt !== 0);
    h.disable();
    clearInterval(tick);
    const applyMs = revokedAt - (pb.published as number);
    rows.push({ applyMs, stallMs: h.max / 1e6, tickGapMs: maxGap, checks, rssPeak, heldAfter: heapExt() - base });
  }
  console.log('\nrun  apply ms  loop-delay max ms  serving-tick max gap ms  checks served  RSS peak MiB  held after MiB');
  rows.forEach((r, i) => console.log(`${String(i + 1).padStart(3)}  ${String(r.applyMs).padStart(8)}  ${r.stallMs.toFixed(1).padStart(17)}  ${r.tickGapMs.toFixed(1).padStart(23)}  ${String(r.checks).padStart(13)}  ${mb(r.rssPeak).padStart(12)}  ${mb(r.heldAfter).padStart(14)}`));
  await watcher.stop();
  srv.kill();
  await closeCrlWorker();
}

if (args.includes('--server')) void child();
else void parent().catch((e) => {
  console.error(e);
  process.exit(1);
});
