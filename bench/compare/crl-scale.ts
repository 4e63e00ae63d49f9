/**
 * CRL scale: 10k, 100k and 1M entries, two ways.
 *
 * 1. bench/crl.ts in a child process per size (`--json`): load through RevocationStore (parse,
 *    index, SHA-256, signature) vs `openssl crl -noout`, the event-loop stall while loading, heap +
 *    external bytes per entry, lookup time.
 * 2. `ca-proxy run` itself with a CRL of that size issued by the server chain's intermediate (so
 *    every handshake looks the server's certificate up in it): time until it listens and is ready,
 *    RSS once loaded and its peak (VmHWM), RSS per entry against the same proxy with the small
 *    test CRLs, and the stall during a reload under traffic — new handshakes at a fixed rate
 *    while the CRL file is replaced (higher cRLNumber, one more entry; rename over the old file,
 *    as a ConfigMap volume update does), reload detected from `ca_proxy_crl_reloads_total`.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { CrlBenchJson } from '../crl';
import { writeBenchCrl } from '../gen-crl';
import { percentile } from '../support';
import { startContender, type Running } from './contenders';
import type { Metric, Row, ScenarioResult } from './measure';
import type { BenchPki } from './pki';
import { SNI } from './pki';
import { treeMemory } from './procstat';
import { handshakes } from './tlsbench';
import { startSServer } from './upstreams';

export interface CrlScaleOptions {
  pki: BenchPki;
  dir: string;
  sizes: number[];
  /** Runs of bench/crl.ts per size. */
  runs: number;
  /** New handshakes per second during the reload, and for how long, s. */
  reloadRate: number;
  reloadSeconds: number;
  log: (line: string) => void;
}

/** bench/crl.ts for one size; resolves with its JSON. */
function crlBench(entries: number, runs: number, out: string, log: (l: string) => void): Promise<CrlBenchJson> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(__dirname, '..', 'crl.js'), '--entries', String(entries), '--runs', String(runs), '--no-docs', '--json', out], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stdout.resume();
    child.stderr.on('data', (d) => (err += d));
    const t = setTimeout(() => child.kill('SIGKILL'), 300_000);
    child.once('close', (code) => {
      clearTimeout(t);
      if (code !== 0) return reject(new Error(`bench/crl.js --entries ${entries}: exit ${code}: ${err.trim().slice(-500)}`));
      log(`  crl: bench/crl.js --entries ${entries} done`);
      resolve(JSON.parse(fs.readFileSync(out, 'utf8')) as CrlBenchJson);
    });
  });
}

/** `ca_proxy_crl_reloads_total{result}` from the admin port. */
async function reloads(adminUrl: string): Promise<{ accepted: number; refused: number }> {
  const text = await fetch(`${adminUrl}/metrics`).then((r) => r.text());
  const get = (result: string): number => Number(new RegExp(`^ca_proxy_crl_reloads_total\\{result="${result}"\\} (\\S+)`, 'm').exec(text)?.[1] ?? 0);
  return { accepted: get('accepted'), refused: get('refused') };
}

interface ProxyScale {
  readyS: number;
  rssBytes: number;
  peakBytes: number;
  /** Max connection latency among connections started while the reload ran, and the p50 of the others, ms. */
  reloadMaxMs: number;
  p50Ms: number;
  reloadMs: number;
  failed: number;
  firstError?: string;
}

/** Starts ca-proxy with `crlDir`, measures start and memory, then replaces `crlFile` under traffic (when given). */
async function proxyScale(o: CrlScaleOptions, upstreamPort: number, crlDir: string, reload: { file: string; next: () => void } | null): Promise<ProxyScale> {
  const t0 = performance.now();
  const proxy: Running = await startContender('ca-proxy', { pki: o.pki, upstream: { port: upstreamPort, tls: '1.3' }, dir: o.dir, crlPaths: [crlDir], watchCrls: true });
  try {
    const readyS = (performance.now() - t0) / 1000;
    await handshakes(proxy.target, SNI, 10); // the minted leaf and the JIT, so memory is that of a working proxy
    const mem = treeMemory(proxy.pids);
    if (!reload) return { readyS, rssBytes: mem.rssBytes, peakBytes: mem.peakBytes, reloadMaxMs: NaN, p50Ms: NaN, reloadMs: NaN, failed: 0 };
    const before = await reloads(proxy.adminUrl!);
    const count = Math.round(o.reloadRate * o.reloadSeconds);
    const tStart = performance.now();
    const traffic = handshakes(proxy.target, SNI, count, { rate: o.reloadRate });
    await new Promise((r) => setTimeout(r, (o.reloadSeconds * 1000) / 4));
    const tReload = performance.now();
    reload.next();
    let tDone = NaN;
    while (performance.now() - tReload < o.reloadSeconds * 2000) {
      const now = await reloads(proxy.adminUrl!);
      if (now.refused > before.refused) throw new Error('ca-proxy refused the replacement CRL');
      if (now.accepted > before.accepted) {
        tDone = performance.now();
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    const r = await traffic;
    const peak = treeMemory(proxy.pids).peakBytes;
    // Connection i started about i / rate after the client did; the window is the reload's, plus one interval.
    const first = Math.floor(((tReload - tStart) / 1000) * o.reloadRate);
    const last = Number.isFinite(tDone) ? Math.ceil(((tDone - tStart) / 1000) * o.reloadRate) + 1 : r.latMs.length - 1;
    const inside = r.latMs.slice(first, last + 1);
    const outside = [...r.latMs.slice(0, first), ...r.latMs.slice(last + 1)];
    return {
      readyS,
      rssBytes: mem.rssBytes,
      peakBytes: Math.max(mem.peakBytes, peak),
      reloadMaxMs: inside.length ? Math.max(...inside) : NaN,
      p50Ms: percentile(outside, 50),
      reloadMs: tDone - tReload,
      failed: r.errors,
      firstError: r.firstError || undefined,
    };
  } finally {
    await proxy.stop();
  }
}

const METRICS: Metric[] = [
  { key: 'derMB', label: 'CRL size', unit: 'MB', digits: 1, better: 'lower' },
  { key: 'loadMs', label: 'load, ours', unit: 'ms', digits: 0, better: 'lower' },
  { key: 'opensslMs', label: 'load, openssl crl -noout', unit: 'ms', digits: 0, better: 'lower' },
  { key: 'loadShare', label: 'load, ours / openssl', unit: '×', digits: 2, better: 'lower', chart: true },
  { key: 'stallMs', label: 'loop stall while loading', unit: 'ms', digits: 1, better: 'lower' },
  { key: 'perEntry', label: 'heap + external per entry', unit: 'B', digits: 1, better: 'lower' },
  { key: 'lookupHitUs', label: 'lookup hit', unit: 'µs', digits: 2, better: 'lower' },
  { key: 'lookupMissUs', label: 'lookup miss', unit: 'µs', digits: 2, better: 'lower' },
  { key: 'readyS', label: '`ca-proxy run` start to ready', unit: 's', digits: 2, better: 'lower' },
  { key: 'rssMB', label: 'RSS loaded', unit: 'MB', digits: 0, better: 'lower', chart: true },
  { key: 'peakMB', label: 'peak RSS (VmHWM)', unit: 'MB', digits: 0, better: 'lower' },
  { key: 'rssPerEntry', label: 'RSS per entry', unit: 'B', digits: 0, better: 'lower' },
  { key: 'reloadMs', label: 'reload under traffic took', unit: 'ms', digits: 0, better: 'lower' },
  { key: 'reloadMaxMs', label: 'max handshake latency during reload', unit: 'ms', digits: 1, better: 'lower', chart: true },
  { key: 'p50Ms', label: 'p50 latency otherwise', unit: 'ms', digits: 1, better: 'lower' },
];

export async function runCrlScale(o: CrlScaleOptions): Promise<ScenarioResult> {
  const upstream = await startSServer(o.pki, o.dir);
  const rows: Row[] = [];
  const notes: string[] = [];
  try {
    o.log('  crl: ca-proxy with the small test CRLs (the baseline for RSS per entry)');
    const base = await proxyScale(o, upstream.port, o.pki.crlDir, null);
    rows.push({ name: 'small', label: 'test CRLs (2 CRLs, 1 entry)', values: { readyS: [base.readyS], rssMB: [base.rssBytes / 1e6], peakMB: [base.peakBytes / 1e6] }, errors: 0 });
    for (const n of o.sizes) {
      o.log(`  crl: ${n.toLocaleString('en-US')} entries`);
      const js = await crlBench(n, o.runs, path.join(o.dir, `crl-${n}.json`), o.log);
      const crlDir = path.join(o.dir, `crls-${n}`);
      fs.mkdirSync(crlDir, { recursive: true });
      for (const f of fs.readdirSync(o.pki.crlDir)) if (!f.startsWith('intermediate')) fs.copyFileSync(path.join(o.pki.crlDir, f), path.join(crlDir, f));
      const file = path.join(crlDir, 'intermediate.crl');
      const ca = o.pki.world.pki.intermediate;
      writeBenchCrl({ entries: n, caCertPath: ca.certPath, caKeyPath: ca.keyPath, crlNumber: 1000 + n, outPath: file });
      // Written beforehand beside it and renamed over the old file at the reload: the watcher
      // never sees half a CRL, and the writing is not part of the reload time.
      const tmp = path.join(o.dir, `next-${n}.crl`);
      writeBenchCrl({ entries: n + 1, caCertPath: ca.certPath, caKeyPath: ca.keyPath, crlNumber: 1001 + n, outPath: tmp });
      const next = (): void => fs.renameSync(tmp, file);
      const s = await proxyScale(o, upstream.port, crlDir, { file, next });
      const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
      rows.push({
        name: String(n),
        label: `${n.toLocaleString('en-US')} entries`,
        values: {
          derMB: [js.derBytes / 1e6],
          loadMs: js.loadMs,
          opensslMs: js.opensslMs,
          loadShare: [med(js.loadMs) / med(js.opensslMs)],
          stallMs: js.stallMs,
          perEntry: [js.perEntryBytes],
          lookupHitUs: js.lookupHitUs,
          lookupMissUs: js.lookupMissUs,
          readyS: [s.readyS],
          rssMB: [s.rssBytes / 1e6],
          peakMB: [s.peakBytes / 1e6],
          rssPerEntry: [(s.rssBytes - base.rssBytes) / n],
          reloadMs: [s.reloadMs],
          reloadMaxMs: [s.reloadMaxMs],
          p50Ms: [s.p50Ms],
        },
        errors: s.failed,
        firstError: s.firstError,
      });
      if (!Number.isFinite(s.reloadMs)) notes.push(`${n.toLocaleString('en-US')} entries: the reload was not seen in \`ca_proxy_crl_reloads_total\` while the traffic ran.`);
    }
  } finally {
    await upstream.stop();
  }
  return {
    id: 'crl-scale',
    title: 'CRL scale',
    setup: [
      `CRLs of ${o.sizes.map((n) => n.toLocaleString('en-US')).join(', ')} entries (16-octet serials, revocationDate, reasonCode; bench/gen-crl.ts).`,
      `*load … lookup*: bench/crl.ts in a process of its own per size, ${o.runs} runs each (its CRL is RSA-2048-signed): RevocationStore.loadPaths (read, parse and index in the worker, SHA-256, signature) against \`openssl crl -inform DER -noout\` (decode only); the longest event-loop stall while loading; heap + external bytes per entry after GC; ParsedCrl.lookup over 200,000 calls per run.`,
      `*\`ca-proxy run\` …*: the real CLI with the CRL issued (ECDSA P-256) by the server chain's intermediate, so every handshake looks the server's certificate up in it. Start to ready = spawn until /readyz answers 200 (Node start-up and module loading included: compare with the small-CRL row). RSS after 10 handshakes; RSS per entry = (RSS − RSS with the small test CRLs) / entries. Reload under traffic: ${o.reloadRate} new handshakes/s (one at a time, openssl s_server upstream) for ${o.reloadSeconds} s; a quarter in, a CRL with one more entry and a higher cRLNumber is renamed over the file; the reload ends when \`ca_proxy_crl_reloads_total{result="accepted"}\` moves. Latency of the connections started meanwhile against the p50 of the others.`,
      'One run per size for the `ca-proxy run` columns; the others show the median of the runs (min–max).',
    ].join('\n\n'),
    metrics: METRICS,
    rows,
    refs: [],
    notes,
    transpose: true,
  };
}
