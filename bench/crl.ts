/**
 * CRL benchmark: a 1,000,000-entry CRL (bench/gen-crl.ts) loaded by RevocationStore, side by side
 * with `openssl crl -inform DER -noout` (which only decodes it). Measures, over several runs
 * (min / median):
 * - load time (read, parse, index, SHA-256, signature check) vs OpenSSL's decode — target ≤ 1/4;
 * - the longest event-loop stall while loading (perf_hooks.monitorEventLoopDelay and a 1 ms
 *   setInterval probe) — target ≤ 50 ms; also shown for a synchronous parse on the main thread,
 *   the reason the store parses large files in a worker;
 * - heap + external bytes held per entry once loaded — target ≤ 64;
 * - lookup time, hits and misses, for ParsedCrl.lookup and RevocationStore.check — target < 10 µs.
 *
 * Prints a table and rewrites the CRL section of docs/benchmarks.md (not with `--no-docs`); with
 * `--json FILE` also writes every run's numbers there (`make bench` reads them: bench/compare/crl-scale.ts).
 * Run: `node dist/bench/crl.js [--entries N] [--runs N] [--no-docs] [--json FILE]`.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import crypto, { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';
import { ensureBenchCrl, serialFor } from './gen-crl';
import { RevocationStore } from '../internal/pki/store';
import { parseCrl } from '../internal/pki/crl';
import { closeCrlWorker } from '../internal/pki/crl-worker';
import { certInfo, type CertInfo } from '../internal/pki/certinfo';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const args = process.argv.slice(2);
const arg = (name: string, dflt: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const ENTRIES = arg('--entries', 1_000_000);
const RUNS = arg('--runs', 5);
const WRITE_DOCS = !args.includes('--no-docs');
const JSON_OUT = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined;

const ms = (ns: bigint | number): number => Number(ns) / 1e6;
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const min = (xs: number[]): number => Math.min(...xs);

/** Longest event-loop stall while `fn` runs: histogram max and a 1 ms interval probe's largest gap. */
async function withStallProbe<T>(fn: () => Promise<T>): Promise<{ value: T; stallMs: number; elapsedMs: number }> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  let last = performance.now();
  let maxGap = 0;
  const probe = setInterval(() => {
    const t = performance.now();
    maxGap = Math.max(maxGap, t - last);
    last = t;
  }, 1);
  h.enable();
  await new Promise((r) => setImmediate(r));
  const t0 = process.hrtime.bigint();
  const value = await fn();
  const elapsedMs = ms(process.hrtime.bigint() - t0);
  await new Promise((r) => setTimeout(r, 5));
  h.disable();
  clearInterval(probe);
  // The histogram reports delay beyond the 1 ms resolution; the probe reports gaps including it.
  const stallMs = Math.max(h.max / 1e6, maxGap - 1);
  return { value, stallMs, elapsedMs };
}

function memNow(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

async function main(): Promise<void> {
  const gen0 = Date.now();
  const bench = ensureBenchCrl(ENTRIES);
  const genMs = Date.now() - gen0;
  const ca = new X509Certificate(fs.readFileSync(bench.caCertPath));
  const caInfo = certInfo(ca);
  const opensslVersion = execFileSync('openssl', ['version'], { encoding: 'utf8' }).trim();

  // OpenSSL decode only (no signature check, no index): its lower bound for "loading" the file.
  const osslTimes: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync('openssl', ['crl', '-inform', 'DER', '-noout', '-in', bench.crlPath]);
    if (r.status !== 0) throw new Error(`openssl crl failed: ${r.stderr}`);
    osslTimes.push(ms(process.hrtime.bigint() - t0));
  }

  // Our full load: read + parse + index (worker) + SHA-256 + signature (thread pool) + swap.
  const loadTimes: number[] = [];
  const stalls: number[] = [];
  let perEntry = 0;
  let store: RevocationStore | null = null;
  // Memory is measured on the first run only: freed backing stores of earlier runs leave the
  // external-memory counter late, which would hide the new ones.
  const before = memNow();
  for (let i = 0; i < RUNS; i++) {
    store = null;
    const s = new RevocationStore({ trust: [ca] });
    const { value: rep, stallMs, elapsedMs } = await withStallProbe(() => s.loadPaths([bench.crlPath]));
    if (rep.accepted.length !== 1 || rep.refused.length) throw new Error(`load failed: ${JSON.stringify(rep.refused)}`);
    loadTimes.push(elapsedMs);
    stalls.push(stallMs);
    store = s;
    if (i === 0) perEntry = (memNow() - before) / ENTRIES;
  }

  // For contrast: a synchronous parse on the main thread stalls the loop for its whole duration.
  const buf = fs.readFileSync(bench.crlPath);
  const syncStalls: number[] = [];
  const syncTimes: number[] = [];
  for (let i = 0; i < Math.min(RUNS, 3); i++) {
    const { stallMs, elapsedMs } = await withStallProbe(async () => {
      await new Promise((r) => setImmediate(r));
      parseCrl(buf);
    });
    syncStalls.push(stallMs);
    syncTimes.push(elapsedMs);
  }
  const parsed = parseCrl(buf);

  // Lookups: hits on random entries, misses on random serials. Batched to time µs-scale calls.
  const N = 200_000;
  const hits = Array.from({ length: N }, (_, i) => serialFor((i * 7919) % ENTRIES));
  const misses = Array.from({ length: N }, () => {
    const b = crypto.randomBytes(16);
    b[0] = (b[0]! & 0x7f) | 0x20; // outside serialFor's 0x1x first octet: never listed
    return b;
  });
  const timePer = (fn: (i: number) => unknown): number[] => {
    const out: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < N; i++) fn(i);
      out.push(Number(process.hrtime.bigint() - t0) / N / 1000);
    }
    return out;
  };
  let found = 0;
  const lookupHit = timePer((i) => (parsed.lookup(hits[i]!) ? found++ : 0));
  const lookupMiss = timePer((i) => (parsed.lookup(misses[i]!) ? found++ : 0));
  if (found !== N * RUNS) throw new Error(`lookup: ${found} hits, expected ${N * RUNS}`);
  // store.check with certificate stand-ins (issuer Name + serial are all it reads).
  const fake = (serial: Buffer): CertInfo => ({ ...caInfo, issuerDer: caInfo.subjectDer, serial, isCa: false });
  const hitCerts = hits.map(fake);
  const missCerts = misses.map(fake);
  let revoked = 0;
  const checkHit = timePer((i) => (store!.check(hitCerts[i]!, caInfo).status === 'revoked' ? revoked++ : 0));
  const checkMiss = timePer((i) => (store!.check(missCerts[i]!, caInfo).status === 'good' ? revoked++ : 0));
  if (revoked !== 2 * N * RUNS) throw new Error(`check: ${revoked} expected answers, expected ${2 * N * RUNS}`);
  await closeCrlWorker();

  const ratio = median(loadTimes) / median(osslTimes);
  const rows: [string, string, string, string, string][] = [
    ['load, ours (RevocationStore.loadPaths)', `${min(loadTimes).toFixed(0)} ms`, `${median(loadTimes).toFixed(0)} ms`, `≤ 1/4 of OpenSSL`, ratio <= 0.25 ? `ok (${(ratio * 100).toFixed(0)}%)` : `MISSED (${(ratio * 100).toFixed(0)}%)`],
    ['load, `openssl crl -inform DER -noout`', `${min(osslTimes).toFixed(0)} ms`, `${median(osslTimes).toFixed(0)} ms`, '', ''],
    ['max event-loop stall while loading', `${min(stalls).toFixed(1)} ms`, `${median(stalls).toFixed(1)} ms`, '≤ 50 ms', Math.max(...stalls) <= 50 ? `ok (max ${Math.max(...stalls).toFixed(1)} ms)` : `MISSED (max ${Math.max(...stalls).toFixed(1)} ms)`],
    ['(contrast) synchronous parseCrl on the main thread: stall', `${min(syncStalls).toFixed(0)} ms`, `${median(syncStalls).toFixed(0)} ms`, '', 'why large files go to the worker'],
    ['heap + external bytes per entry (store loaded)', `${perEntry.toFixed(1)} B`, '', '≤ 64 B', perEntry <= 64 ? 'ok' : 'MISSED'],
    ['ParsedCrl.lookup, hit', `${min(lookupHit).toFixed(2)} µs`, `${median(lookupHit).toFixed(2)} µs`, '< 10 µs', median(lookupHit) < 10 ? 'ok' : 'MISSED'],
    ['ParsedCrl.lookup, miss', `${min(lookupMiss).toFixed(2)} µs`, `${median(lookupMiss).toFixed(2)} µs`, '< 10 µs', median(lookupMiss) < 10 ? 'ok' : 'MISSED'],
    ['RevocationStore.check, revoked', `${min(checkHit).toFixed(2)} µs`, `${median(checkHit).toFixed(2)} µs`, '< 10 µs', median(checkHit) < 10 ? 'ok' : 'MISSED'],
    ['RevocationStore.check, good', `${min(checkMiss).toFixed(2)} µs`, `${median(checkMiss).toFixed(2)} µs`, '< 10 µs', median(checkMiss) < 10 ? 'ok' : 'MISSED'],
  ];
  const header = ['measure', 'min', 'median', 'target', 'result'];
  const table = [
    `| ${header.join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const context = [
    `CRL: ${ENTRIES.toLocaleString('en-US')} entries (16-octet serials, revocationDate, reasonCode), ${(bench.bytes / 1e6).toFixed(1)} MB DER, RSA-2048 / SHA-256 signature; generated by bench/gen-crl.ts${genMs > 1000 ? ` in ${(genMs / 1000).toFixed(1)} s` : ''}.`,
    `Machine: ${os.cpus().length} × ${cpu}, Node ${process.version}, ${opensslVersion}; load average ${os.loadavg()[0]!.toFixed(2)} at the end (other work on the machine inflates the load times). ${RUNS} runs each; lookups timed over ${N.toLocaleString('en-US')} calls per run.`,
    `Our load includes the SHA-256 of the file and the signature check; OpenSSL's only decodes. The index holds the DER plus a Uint32Array hash table (load factor ≤ 1/2).`,
  ].join('\n');
  console.log(context + '\n\n' + table);

  if (JSON_OUT) {
    const result: CrlBenchJson = {
      entries: ENTRIES, derBytes: bench.bytes, loadMs: loadTimes, opensslMs: osslTimes, stallMs: stalls, syncStallMs: syncStalls,
      perEntryBytes: perEntry, lookupHitUs: lookupHit, lookupMissUs: lookupMiss, checkRevokedUs: checkHit, checkGoodUs: checkMiss,
      maxRssBytes: process.resourceUsage().maxRSS * 1024,
    };
    fs.writeFileSync(JSON_OUT, JSON.stringify(result));
  }
  if (WRITE_DOCS) writeDocs(`${context}\n\n${table}\n\nRun: \`node dist/bench/crl.js\` (after \`npx tsc -p .\`). Measured ${new Date().toISOString().slice(0, 10)}.`);
}

/** What `--json FILE` writes: every run's value (ms, µs, bytes). */
export interface CrlBenchJson {
  entries: number;
  derBytes: number;
  loadMs: number[];
  opensslMs: number[];
  stallMs: number[];
  syncStallMs: number[];
  /** Heap + external bytes per entry once loaded (after GC). */
  perEntryBytes: number;
  lookupHitUs: number[];
  lookupMissUs: number[];
  checkRevokedUs: number[];
  checkGoodUs: number[];
  /** Peak RSS of the benchmark process (it also holds the lookup samples), bytes. */
  maxRssBytes: number;
}

/** Replace the CRL section of docs/benchmarks.md (between markers), leaving other sections alone. */
function writeDocs(body: string): void {
  const file = path.resolve(__dirname, '..', '..', 'docs', 'benchmarks.md');
  const begin = '<!-- crl-bench:begin -->';
  const end = '<!-- crl-bench:end -->';
  const section = `${begin}\n## CRL loading and lookup\n\n${body}\n${end}`;
  let text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Benchmarks\n\nNumbers from `bench/`, written by the benchmarks themselves.\n';
  const a = text.indexOf(begin);
  const b = text.indexOf(end);
  if (a >= 0 && b > a) text = text.slice(0, a) + section + text.slice(b + end.length);
  else text = text.trimEnd() + '\n\n' + section + '\n';
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  console.log(`\nwrote ${path.relative(process.cwd(), file)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
