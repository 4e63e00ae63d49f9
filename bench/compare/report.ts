/**
 * docs/benchmarks.md from one side-by-side run: the machine and versions, one section per scenario
 * (set-up, a table of medians with min–max over the rounds and ratios against the reference rows,
 * the chart), and the issue-13 targets checked against the numbers. Every scenario section sits
 * between `<!-- bench:ID:begin -->` and `<!-- bench:ID:end -->`; a run of some scenarios
 * (`--only`) replaces those and keeps the others, and any other marked section (e.g. a profile
 * summary written by hand) is kept as it is.
 */
import fs from 'node:fs';
import { mdTable } from '../support';
import { med, range, type Metric, type Row, type ScenarioResult } from './measure';

export interface RunInfo {
  date: string;
  durationS: number;
  /** Why this run's numbers are not final (busy machine, quick run), or null. */
  provisional: string | null;
  machine: string;
  versions: [string, string][];
  loadStart: number;
  loadEnd: number;
  command: string;
  /** Contenders that could not run, with the reason. */
  skipped: string[];
}

const fmt = (v: number, digits: number): string => (Number.isFinite(v) ? v.toFixed(digits) : '–');

/** `median (min–max)` over the rounds, or the one value. */
export function cell(values: number[] | undefined, digits: number): string {
  const f = (values ?? []).filter(Number.isFinite);
  if (!f.length) return '–';
  if (f.length === 1) return fmt(f[0]!, digits);
  const [lo, hi] = range(f);
  return `${fmt(med(f), digits)} (${fmt(lo, digits)}–${fmt(hi, digits)})`;
}

function ratio(row: Row, ref: Row | undefined, m: Metric): string {
  if (!ref || ref === row) return '';
  const v = med(row.values[m.key]) / med(ref.values[m.key]);
  return Number.isFinite(v) ? `${v.toFixed(2)}×` : '–';
}

export function scenarioTable(r: ScenarioResult): string {
  if (r.transpose) {
    const header = ['', ...r.rows.map((row) => row.label)];
    const lines = r.metrics.map((m) => [`${m.label}${m.unit ? `, ${m.unit}` : ''}`, ...r.rows.map((row) => cell(row.values[m.key], m.digits))]);
    lines.push(['errors', ...r.rows.map((row) => (row.errors ? `${row.errors}${row.firstError ? ` (${row.firstError.replace(/\|/g, '\\|').slice(0, 80)})` : ''}` : '0'))]);
    return mdTable(header, lines);
  }
  const refs = r.refs.map((name) => r.rows.find((row) => row.name === name)).filter((x): x is Row => !!x);
  const header = ['', ...r.metrics.flatMap((m) => [`${m.label}${m.unit ? `, ${m.unit}` : ''}`, ...(m.ratios ? refs.filter((ref) => Number.isFinite(med(ref.values[m.key]))).map((ref) => `/ ${ref.label}`) : [])]), 'errors'];
  const rows = r.rows.map((row) => [
    row.note ? `${row.label} (${row.note})` : row.label,
    ...r.metrics.flatMap((m) => [cell(row.values[m.key], m.digits), ...(m.ratios ? refs.filter((ref) => Number.isFinite(med(ref.values[m.key]))).map((ref) => ratio(row, ref, m)) : [])]),
    row.errors ? `${row.errors}${row.firstError ? ` (${row.firstError.replace(/\|/g, '\\|').slice(0, 120)})` : ''}` : '0',
  ]);
  return mdTable(header, rows);
}

export function scenarioSection(r: ScenarioResult): string {
  return [
    `<!-- bench:${r.id}:begin -->`,
    `## ${r.title}`,
    '',
    r.setup,
    '',
    scenarioTable(r),
    '',
    ...(r.notes.length ? [r.notes.join('\n'), ''] : []),
    ...(r.chart ? [`![${r.title}](${r.chart})`, ''] : []),
    `<!-- bench:${r.id}:end -->`,
  ].join('\n');
}

function intro(info: RunInfo): string {
  return [
    '# Benchmarks',
    '',
    'ca-proxy side by side with HAProxy, nginx (stream module) and stunnel doing the same job on loopback — terminate the workload\'s TLS with a certificate for the SNI, originate mutual TLS to the server with the proxy\'s certificate, verify the server chain with CRLs — and a direct connection as the baseline. Written by `make bench` (bench/run.ts, bench/compare/); nothing here is asserted by a test.',
    '',
    '`make bench` installs what is missing (Debian `haproxy`, `nginx` + `libnginx-mod-stream`, `stunnel4`, `gnuplot-nox`, and `gcc` + `libssl-dev` for the load generator), builds a PKI with `openssl` (ECDSA P-256, TLS 1.3 unless a scenario says otherwise), compiles the load generator (bench/tlsbench.c: a full handshake per connection, no session cache, no tickets), runs every scenario, stops everything it started and rewrites this file and docs/bench/*.png. `make bench QUICK=1` is a short smoke run (small counts, one or two rounds); `make bench TRANSFER_MIB=256` shrinks the long transfer; `make bench ONLY=handshake,memory` runs some scenarios and keeps the others\' sections; `BENCH_ARGS=--no-install` never calls apt-get.',
    '',
    ...(info.provisional ? [`> **Provisional run (${info.date.slice(0, 10)})**: ${info.provisional} These numbers show that the harness works and roughly where things stand; they are not the final figures, which come from a run on a quiet machine.`, ''] : []),
    `Run: ${info.date}, ${(info.durationS / 60).toFixed(1)} min, \`${info.command}\`. Machine: ${info.machine}. Load average (1 min): ${info.loadStart.toFixed(2)} at the start, ${info.loadEnd.toFixed(2)} at the end — the load generator, the upstream server and the proxy share the cores, and so does whatever else runs there.`,
    '',
    mdTable(['component', 'version'], info.versions.map(([k, v]) => [k, v])),
    '',
    ...(info.skipped.length ? [`Skipped: ${info.skipped.join(' ')}`, ''] : []),
    'Reading the tables: each cell is the median over the rounds with the min–max in brackets; ratio columns divide the row\'s median by the named reference row\'s. *Proxy CPU* is the kernel\'s account (utime + stime in /proc of the proxy\'s processes and threads) over the measured work, not wall time.',
  ].join('\n');
}

interface Check {
  target: string;
  measured: string;
  ok: boolean | null;
}

/** The issue-13 targets, checked where this run measured them. */
export function targetChecks(results: Map<string, ScenarioResult>): Check[] {
  const get = (id: string, row: string, key: string): number => med(results.get(id)?.rows.find((r) => r.name === row)?.values[key]);
  const checks: Check[] = [];
  const ratioCheck = (target: string, a: number, b: number, limit: number, atMost: boolean, what: string): void => {
    const v = a / b;
    checks.push({ target, measured: Number.isFinite(v) ? `${v.toFixed(2)}× (${what})` : 'not measured', ok: Number.isFinite(v) ? (atMost ? v <= limit : v >= limit) : null });
  };
  ratioCheck('proxy CPU per new connection ≤ 1.75 × HAProxy\'s', get('handshake', 'ca-proxy', 'cpuMs'), get('handshake', 'haproxy', 'cpuMs'), 1.75, true, `${fmt(get('handshake', 'ca-proxy', 'cpuMs'), 2)} vs ${fmt(get('handshake', 'haproxy', 'cpuMs'), 2)} ms`);
  for (const id of ['transfer', 'transfer-parallel']) {
    const label = id === 'transfer' ? 'one long transfer' : 'parallel transfers';
    ratioCheck(`relay CPU per GiB ≤ 1.75 × HAProxy's (${label})`, get(id, 'ca-proxy', 'cpuPerGiB'), get(id, 'haproxy', 'cpuPerGiB'), 1.75, true, `${fmt(get(id, 'ca-proxy', 'cpuPerGiB'), 2)} vs ${fmt(get(id, 'haproxy', 'cpuPerGiB'), 2)} s`);
    ratioCheck(`throughput ≥ 0.75 × HAProxy's (${label})`, get(id, 'ca-proxy', 'mbps'), get(id, 'haproxy', 'mbps'), 0.75, false, `${fmt(get(id, 'ca-proxy', 'mbps'), 0)} vs ${fmt(get(id, 'haproxy', 'mbps'), 0)} MB/s`);
  }
  const addedCa = get('latency', 'ca-proxy', 'added_p50');
  const addedHa = get('latency', 'haproxy', 'added_p50');
  checks.push({ target: 'added p50 latency ≤ HAProxy\'s + 1 ms', measured: Number.isFinite(addedCa) && Number.isFinite(addedHa) ? `${fmt(addedCa, 2)} ms vs ${fmt(addedHa, 2)} ms` : 'not measured', ok: Number.isFinite(addedCa) && Number.isFinite(addedHa) ? addedCa <= addedHa + 1 : null });
  ratioCheck('p99 ≤ 3 × p50 (ca-proxy, fixed low rate)', get('latency', 'ca-proxy', 'p99'), get('latency', 'ca-proxy', 'p50'), 3, true, `${fmt(get('latency', 'ca-proxy', 'p99'), 2)} / ${fmt(get('latency', 'ca-proxy', 'p50'), 2)} ms`);
  const idle = get('memory', 'ca-proxy', 'idleMB');
  checks.push({ target: 'idle RSS of `ca-proxy run` ≤ 80 MB', measured: Number.isFinite(idle) ? `${fmt(idle, 1)} MB` : 'not measured', ok: Number.isFinite(idle) ? idle <= 80 : null });
  const per = get('memory', 'ca-proxy', 'perConnKB');
  checks.push({ target: '≤ 48 KB per held intercepted connection', measured: Number.isFinite(per) ? `${fmt(per, 1)} KB` : 'not measured', ok: Number.isFinite(per) ? per <= 48 : null });
  ratioCheck('inspect ≥ 0.9 × a plain TCP relay (throughput, Node relay)', get('inspect', 'ca-proxy-inspect', 'mbps'), get('inspect', 'tcp-relay-node', 'mbps'), 0.9, false, 'MB/s');
  ratioCheck('inspect ≥ 0.9 × a plain TCP relay (throughput, HAProxy mode tcp)', get('inspect', 'ca-proxy-inspect', 'mbps'), get('inspect', 'tcp-relay-haproxy', 'mbps'), 0.9, false, 'MB/s');
  ratioCheck('gRPC path relay ≥ 0.6 × the standalone listener (stand-in)', get('extproc', 'ca-proxy-extproc', 'mbps'), get('extproc', 'ca-proxy', 'mbps'), 0.6, false, 'MB/s');
  const big = results.get('crl-scale')?.rows.find((r) => r.name === '1000000');
  if (big) {
    const v = (k: string) => med(big.values[k]);
    checks.push({ target: '1M-entry CRL: load ≤ ¼ of `openssl crl -noout`', measured: `${fmt(v('loadShare'), 2)} (${fmt(v('loadMs'), 0)} vs ${fmt(v('opensslMs'), 0)} ms)`, ok: v('loadShare') <= 0.25 });
    checks.push({ target: '1M-entry CRL: ≤ 64 B per entry (heap + external)', measured: `${fmt(v('perEntry'), 1)} B (RSS: ${fmt(v('rssPerEntry'), 0)} B)`, ok: v('perEntry') <= 64 });
    checks.push({ target: '1M-entry CRL: lookup ≤ 10 µs', measured: `${fmt(v('lookupHitUs'), 2)} µs hit, ${fmt(v('lookupMissUs'), 2)} µs miss`, ok: Math.max(v('lookupHitUs'), v('lookupMissUs')) <= 10 });
    const stall = Math.max(v('stallMs'), v('reloadMaxMs') - v('p50Ms'));
    checks.push({ target: '1M-entry CRL: stall ≤ 50 ms', measured: `${fmt(v('stallMs'), 1)} ms loop stall while loading; reload under traffic: max latency ${fmt(v('reloadMaxMs'), 1)} ms vs p50 ${fmt(v('p50Ms'), 1)} ms`, ok: Number.isFinite(stall) ? stall <= 50 : null });
  } else {
    checks.push({ target: '1M-entry CRL figures', measured: 'not measured in this run', ok: null });
  }
  return checks;
}

function targetsSection(results: Map<string, ScenarioResult>): string {
  const rows = targetChecks(results).map((c) => [c.target, c.measured, c.ok === null ? 'not measured' : c.ok ? 'met' : '**missed**']);
  return [
    '<!-- bench:targets:begin -->',
    '## Against the targets (issue 13)',
    '',
    'Ratios from this one run (medians). Where a target is missed, the sections above and the profile say where the time goes.',
    '',
    mdTable(['target', 'this run', 'result'], rows),
    '<!-- bench:targets:end -->',
  ].join('\n');
}

/** The marked sections (`<!-- NAME:begin -->…<!-- NAME:end -->`) of a file, by name, in order. */
export function markedSections(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/<!-- ([\w:-]+):begin -->[\s\S]*?<!-- \1:end -->/g)) out.set(m[1]!, m[0]);
  return out;
}

/** Sections of earlier benchmark layouts that this report replaces. */
const SUPERSEDED = new Set(['crl-bench', 'handshake-relay-bench']);

/**
 * Writes `file`: the intro, the targets, this run's scenario sections in `order`, earlier sections
 * of scenarios not run this time (kept as they were), and other marked sections.
 */
export function writeReport(file: string, info: RunInfo, results: Map<string, ScenarioResult>, order: string[]): void {
  const old = fs.existsSync(file) ? markedSections(fs.readFileSync(file, 'utf8')) : new Map<string, string>();
  const parts = [intro(info), targetsSection(results)];
  for (const id of order) {
    const r = results.get(id);
    if (r) parts.push(scenarioSection(r));
    else if (old.has(`bench:${id}`)) parts.push(old.get(`bench:${id}`)!);
  }
  for (const [name, body] of old) {
    if (name.startsWith('bench:') || SUPERSEDED.has(name)) continue;
    parts.push(body);
  }
  fs.writeFileSync(file, parts.join('\n\n') + '\n');
}
