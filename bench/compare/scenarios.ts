/**
 * The measured scenarios of issue 13, side by side. Each starts its upstream and its contenders,
 * runs rounds through bench/compare/measure.ts, stops everything, and returns a ScenarioResult for
 * the report (bench/compare/report.ts). CRL scale and memory have files of their own.
 */
import { startContender, type ContenderName, type Running, type StartOptions } from './contenders';
import { bulkRound, handshakeRound, measureRounds, med, rounds, type Metric, type Row, type RoundValues, type ScenarioResult } from './measure';
import type { BenchPki } from './pki';
import { SNI } from './pki';
import { handshakes, bulk } from './tlsbench';
import { startFastUpstream, startSServer, type RunningUpstream } from './upstreams';

/** Counts and sizes; `sizesFor(quick)` gives the two standard sets. */
export interface Sizes {
  rounds: number;
  handshakes: number;
  latencyRate: number;
  latencyCount: number;
  resumption: number;
  /** The long transfer, MiB (also the total of the 64 parallel ones). */
  transferMiB: number;
  parallel: number;
  /** The transfer of the inspect and ext_proc comparisons, MiB. */
  pathMiB: number;
  pathHandshakes: number;
  crlSizes: number[];
  crlRuns: number;
  held: number;
}

export function sizesFor(quick: boolean): Sizes {
  return quick
    ? { rounds: 2, handshakes: 40, latencyRate: 25, latencyCount: 25, resumption: 40, transferMiB: 64, parallel: 64, pathMiB: 32, pathHandshakes: 30, crlSizes: [10_000, 100_000], crlRuns: 2, held: 100 }
    : { rounds: 5, handshakes: 300, latencyRate: 25, latencyCount: 100, resumption: 200, transferMiB: 1024, parallel: 64, pathMiB: 256, pathHandshakes: 200, crlSizes: [10_000, 100_000, 1_000_000], crlRuns: 3, held: 1000 };
}

export interface BenchContext {
  pki: BenchPki;
  dir: string;
  sizes: Sizes;
  log: (line: string) => void;
  /** Why a contender cannot run here (its Debian package is missing), or null. */
  unavailable(name: ContenderName): string | null;
}

/** The contenders of the split-TLS job, direct first (the baseline). */
export const SPLIT: ContenderName[] = ['direct', 'haproxy', 'nginx', 'stunnel', 'ca-proxy'];

const M = {
  rate: { key: 'rate', label: 'handshakes/s', unit: '/s', digits: 0, better: 'higher', chart: true, ratios: true },
  cpuMs: { key: 'cpuMs', label: 'proxy CPU per connection', unit: 'ms', digits: 2, better: 'lower', chart: true, ratios: true },
  p50: { key: 'p50', label: 'p50', unit: 'ms', digits: 2, better: 'lower' },
  p99: { key: 'p99', label: 'p99', unit: 'ms', digits: 2, better: 'lower' },
  mbps: { key: 'mbps', label: 'throughput', unit: 'MB/s', digits: 0, better: 'higher', chart: true, ratios: true },
  cpuPerGiB: { key: 'cpuPerGiB', label: 'proxy CPU per GiB', unit: 's', digits: 2, better: 'lower', chart: true, ratios: true },
} satisfies Record<string, Metric>;

/** What one scenario measures: its upstream, its contenders and what one round does to each. */
interface Plan {
  upstream: () => Promise<RunningUpstream>;
  names: ContenderName[];
  tag: string;
  rounds: number;
  warmup: (c: Running) => Promise<unknown>;
  once: (c: Running) => Promise<RoundValues>;
  /** Beyond the PKI, upstream and scratch folder (e.g. upstream resumption). */
  start?: Partial<StartOptions>;
}

/**
 * Starts the upstream and the available contenders of `plan` (unavailable ones become notes),
 * measures the rounds, stops them all.
 */
async function measured(ctx: BenchContext, plan: Plan): Promise<{ rows: Row[]; skipped: string[] }> {
  const up = await plan.upstream();
  const running: Running[] = [];
  const skipped: string[] = [];
  try {
    for (const name of plan.names) {
      const why = ctx.unavailable(name);
      if (why) skipped.push(`${name} skipped: ${why}.`);
      else running.push(await startContender(name, { pki: ctx.pki, upstream: up, dir: ctx.dir, ...plan.start }));
    }
    const rows = await measureRounds({ contenders: running, rounds: plan.rounds, log: ctx.log, tag: plan.tag, warmup: plan.warmup, once: plan.once });
    return { rows, skipped };
  } finally {
    await Promise.all(running.map((r) => r.stop()));
    await up.stop();
  }
}

/** Row values from two round functions run back to back (a handshake batch, then a transfer). */
async function both(a: () => Promise<RoundValues>, b: () => Promise<RoundValues>, keysA: string[], keysB: string[]): Promise<RoundValues> {
  const ra = await a();
  const rb = await b();
  const pick = (r: RoundValues, keys: string[]) => Object.fromEntries(keys.filter((k) => k in r.values).map((k) => [k, r.values[k]!]));
  return { values: { ...pick(ra, keysA), ...pick(rb, keysB) }, errors: ra.errors + rb.errors, firstError: ra.firstError ?? rb.firstError };
}

const sServerNote = 'Upstream: `openssl s_server -Verify 1 -verify_return_error -rev` (OpenSSL\'s own server; client certificate from client-ca required; `-no_cache -num_tickets 0`).';

export async function handshakeScenario(ctx: BenchContext): Promise<ScenarioResult> {
  const s = ctx.sizes;
  const { rows, skipped } = await measured(ctx, {
    upstream: () => startSServer(ctx.pki, ctx.dir),
    names: SPLIT,
    tag: 'handshake',
    rounds: s.rounds,
    warmup: (c) => handshakes(c.target, SNI, 20),
    once: (c) => handshakeRound(c, SNI, s.handshakes),
  });
  return {
    id: 'handshake',
    title: 'New handshakes: rate and proxy CPU per connection',
    setup: `${s.handshakes} new connections per contender per round, one at a time, ${rounds(s.rounds)} (order rotating), after 20 unmeasured ones. Each connection: TCP connect, full TLS 1.3 handshake (ECDSA P-256; the client offers no session), \`ping\` → one line back, close_notify, close. ${sServerNote} Rate = connections / wall time of the round. Proxy CPU = utime + stime of the proxy's processes over the round (/proc), per connection. Latency p50/p99: connect → answer, over the round.`,
    metrics: [M.rate, M.cpuMs, M.p50, M.p99],
    rows,
    refs: ['haproxy', 'direct'],
    notes: skipped,
  };
}

export async function latencyScenario(ctx: BenchContext): Promise<ScenarioResult> {
  const s = ctx.sizes;
  const { rows, skipped } = await measured(ctx, {
    upstream: () => startSServer(ctx.pki, ctx.dir),
    names: SPLIT,
    tag: 'latency',
    rounds: Math.max(1, Math.ceil(s.rounds / 2)),
    warmup: (c) => handshakes(c.target, SNI, 10),
    once: (c) => handshakeRound(c, SNI, s.latencyCount, { rate: s.latencyRate }),
  });
  // Added latency: each round's p50/p99 minus direct's of the same round.
  const direct = rows.find((r) => r.name === 'direct');
  for (const r of rows) {
    delete r.values.rate;
    delete r.values.cpuMs;
    delete r.values.helperCpuMs;
    if (!direct || r === direct) continue;
    for (const k of ['p50', 'p99'] as const) {
      const mine = r.values[k] ?? [];
      const base = direct.values[k] ?? [];
      r.values[`added_${k}`] = mine.length === base.length ? mine.map((v, i) => v - base[i]!) : [med(mine) - med(base)];
    }
  }
  const metrics: Metric[] = [
    { ...M.p50, chart: true },
    { ...M.p99, chart: true },
    { key: 'added_p50', label: 'added p50 (vs direct)', unit: 'ms', digits: 2, better: 'lower', ratios: true },
    { key: 'added_p99', label: 'added p99 (vs direct)', unit: 'ms', digits: 2, better: 'lower' },
  ];
  return {
    id: 'latency',
    title: 'Latency at a fixed low rate',
    setup: `${s.latencyCount} new connections per contender per round at ${s.latencyRate} per second (one at a time, on a fixed schedule), ${rounds(Math.max(1, Math.ceil(s.rounds / 2)))}; same connection and upstream as above. ${sServerNote} Latency: connect → answer. *Added* = the contender's p50 (p99) minus direct's in the same round.`,
    metrics,
    rows,
    refs: ['haproxy'],
    notes: [...skipped, 'Target (issue 13): added p50 ≤ HAProxy\'s + 1 ms; p99 ≤ 3 × p50.'],
  };
}

export async function resumptionScenario(ctx: BenchContext, full: ScenarioResult | undefined): Promise<ScenarioResult> {
  const s = ctx.sizes;
  const names = SPLIT.filter((n) => n !== 'direct');
  const { rows, skipped } = await measured(ctx, {
    upstream: () => startSServer(ctx.pki, ctx.dir, { resumption: true }),
    names: names,
    tag: 'resumption',
    rounds: Math.max(1, Math.ceil(s.rounds / 2)),
    warmup: (c) => handshakes(c.target, SNI, 20),
    once: (c) => handshakeRound(c, SNI, s.resumption),
    start: { upstreamResumption: true },
  });
  for (const r of rows) {
    delete r.values.helperCpuMs;
    const fullCpu = med(full?.rows.find((f) => f.name === r.name)?.values.cpuMs);
    r.values.vsFull = (r.values.cpuMs ?? []).map((v) => v / fullCpu);
    if (r.name === 'ca-proxy') r.note = 'not supported: ca-proxy has no upstream TLS session resumption yet; these are full handshakes against the same ticket-issuing server';
  }
  return {
    id: 'resumption',
    title: 'With upstream TLS resumption',
    setup: `The handshake scenario again, ${s.resumption} connections per round, with the proxies allowed to resume their upstream sessions: HAProxy without \`no-ssl-reuse\` (its default), nginx \`proxy_ssl_session_reuse on\`, stunnel \`sessionResume = yes\`; the upstream \`openssl s_server -Verify 1 -verify_return_error -rev\` with its session cache and tickets on. The workload side still never resumes. *CPU vs full* = this CPU per connection / the handshake scenario's median${full ? '' : ' (not measured in this run)'}.`,
    metrics: [M.rate, M.cpuMs, { key: 'vsFull', label: 'CPU vs full handshakes', unit: '×', digits: 2, better: 'lower' }, M.p50],
    rows,
    refs: ['haproxy'],
    notes: skipped,
  };
}

async function transferScenario(ctx: BenchContext, parallel: number): Promise<ScenarioResult> {
  const s = ctx.sizes;
  const totalBytes = s.transferMiB * 2 ** 20;
  const per = Math.floor(totalBytes / parallel);
  const id = parallel === 1 ? 'transfer' : 'transfer-parallel';
  const { rows, skipped } = await measured(ctx, {
    upstream: () => startFastUpstream(ctx.pki),
    names: SPLIT,
    tag: id,
    rounds: Math.max(1, Math.ceil(s.rounds / 2)),
    warmup: (c) => bulk(c.target, SNI, Math.min(per, 16 * 2 ** 20), Math.min(parallel, 8)),
    once: (c) => bulkRound(c, SNI, per, parallel),
  });
  for (const r of rows) delete r.values.helperCpuPerGiB;
  const what = parallel === 1 ? `one transfer of ${s.transferMiB} MiB` : `${parallel} parallel transfers of ${(per / 2 ** 20).toFixed(0)} MiB each (${s.transferMiB} MiB in all)`;
  return {
    id,
    title: parallel === 1 ? `One long transfer (${s.transferMiB} MiB)` : `${parallel} parallel transfers`,
    setup: `Per contender per round: ${what} from the server to the client over TLS 1.3 (TLS_AES_256_GCM_SHA384), ${rounds(Math.max(1, Math.ceil(s.rounds / 2)))}. The connections handshake first; time runs from the first request to the last byte (no handshake, no teardown). Upstream: tlsbench server (bench/tlsbench.c, thread per connection, client certificate required; 64 KiB writes) — \`s_server\` serves one connection at a time and would be the bottleneck. MB/s = 10^6 bytes/s. Proxy CPU per GiB: /proc utime + stime over the run / GiB moved.`,
    metrics: [M.mbps, M.cpuPerGiB],
    rows,
    refs: ['haproxy', 'direct'],
    notes: [...skipped, 'Target (issue 13): relay CPU per GiB ≤ 1.75 × HAProxy\'s, throughput ≥ 0.75 × HAProxy\'s.'],
  };
}

export const longTransferScenario = (ctx: BenchContext): Promise<ScenarioResult> => transferScenario(ctx, 1);
export const parallelTransferScenario = (ctx: BenchContext): Promise<ScenarioResult> => transferScenario(ctx, ctx.sizes.parallel);

/** Handshakes then one transfer per round, for the path comparisons (inspect, ext_proc). */
function pathRound(ctx: BenchContext, c: Running): Promise<RoundValues> {
  const s = ctx.sizes;
  return both(
    () => handshakeRound(c, SNI, s.pathHandshakes),
    () => bulkRound(c, SNI, s.pathMiB * 2 ** 20, 1),
    ['rate', 'cpuMs', 'helperCpuMs'],
    ['mbps', 'cpuPerGiB', 'helperCpuPerGiB'],
  );
}

export async function inspectScenario(ctx: BenchContext): Promise<ScenarioResult> {
  const s = ctx.sizes;
  const names: ContenderName[] = ['direct', 'tcp-relay-node', 'tcp-relay-haproxy', 'ca-proxy-inspect'];
  const { rows, skipped } = await measured(ctx, {
    upstream: () => startFastUpstream(ctx.pki, { tls: '1.2' }),
    names: names,
    tag: 'inspect',
    rounds: Math.max(1, Math.ceil(s.rounds / 2)),
    warmup: (c) => handshakes(c.target, SNI, 10),
    once: (c) => pathRound(ctx, c),
  });
  for (const r of rows) {
    delete r.values.helperCpuMs;
    delete r.values.helperCpuPerGiB;
  }
  return {
    id: 'inspect',
    title: 'Inspect vs a plain TCP relay',
    setup: `The workload's TLS goes end to end to the server (the client presents the proxy identity itself). TLS 1.2, so that ca-proxy's \`inspect\` checks the server's Certificate (chain, host name, CRLs) from the wire before forwarding it; afterwards it relays unread. Plain TCP relays: HAProxy \`mode tcp\` and a Node \`pipe\` relay (bench/support.ts; the floor of a relay written in Node). Per round: ${s.pathHandshakes} new connections one at a time, then one ${s.pathMiB} MiB transfer; ${rounds(Math.max(1, Math.ceil(s.rounds / 2)))}. Upstream: tlsbench server (TLS 1.2, ECDHE-ECDSA-AES256-GCM-SHA384 or what it negotiates).`,
    metrics: [M.rate, { ...M.cpuMs, label: 'relay CPU per connection' }, M.mbps, { ...M.cpuPerGiB, label: 'relay CPU per GiB' }],
    rows,
    refs: ['tcp-relay-node', 'tcp-relay-haproxy'],
    notes: [...skipped, 'Target (issue 13): inspect ≥ 0.9 × a plain TCP relay.'],
  };
}

export async function extprocScenario(ctx: BenchContext): Promise<ScenarioResult> {
  const s = ctx.sizes;
  const { rows, skipped } = await measured(ctx, {
    upstream: () => startFastUpstream(ctx.pki),
    names: ['ca-proxy', 'ca-proxy-extproc'],
    tag: 'ext_proc',
    rounds: Math.max(1, Math.ceil(s.rounds / 2)),
    warmup: (c) => handshakes(c.target, SNI, 10),
    once: (c) => pathRound(ctx, c),
  });
  for (const r of rows) r.label = r.name === 'ca-proxy' ? 'ca-proxy standalone (SNI listener)' : r.label;
  return {
    id: 'extproc',
    title: 'gRPC ext_proc path (Envoy stand-in) vs the standalone listener',
    setup: `**A stand-in measurement**: Envoy cannot run on this machine, so the ext_proc path is ca-proxy's \`serve-extproc\` (its own process, gRPC over loopback TCP) driven by the Envoy stand-in of the tests (test/support/envoy.ts, Node, its own process; the lockstep of Envoy's network ext_proc filter, \`message_timeout\` 2 s). A real Envoy costs other CPU than the stand-in; the stand-in's CPU is reported apart (*stand-in CPU*), the proxy CPU columns are ca-proxy's alone. Standalone: \`ca-proxy run\` with its SNI listener. Per round: ${s.pathHandshakes} new connections one at a time, then one ${s.pathMiB} MiB transfer, TLS 1.3; ${rounds(Math.max(1, Math.ceil(s.rounds / 2)))}. Upstream: tlsbench server.`,
    metrics: [
      M.rate,
      M.cpuMs,
      { key: 'helperCpuMs', label: 'stand-in CPU per connection', unit: 'ms', digits: 2, better: 'lower' },
      M.mbps,
      M.cpuPerGiB,
      { key: 'helperCpuPerGiB', label: 'stand-in CPU per GiB', unit: 's', digits: 2, better: 'lower' },
    ],
    rows,
    refs: ['ca-proxy'],
    notes: [...skipped, 'Target (issue 13): gRPC path relay ≥ 0.6 × the standalone listener.'],
  };
}
