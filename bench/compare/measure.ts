/**
 * The measuring loop every side-by-side scenario shares: rounds × contenders (the order rotating
 * each round so background load hits all of them alike), one unmeasured warm-up per contender,
 * and per round one value of each metric. The proxy's CPU time is read from /proc around each
 * run of the load generator (bench/compare/procstat.ts), never derived from wall time.
 */
import { median, percentile } from '../support';
import type { Running } from './contenders';
import { cpuSeconds } from './procstat';
import { bulk, handshakes } from './tlsbench';

export interface Metric {
  key: string;
  label: string;
  unit: string;
  /** Decimals shown. */
  digits: number;
  better: 'higher' | 'lower';
  /** Drawn in the scenario's chart. */
  chart?: boolean;
  /** Compared against the scenario's reference rows (ratio columns). */
  ratios?: boolean;
}

export interface Row {
  /** Contender name (or a size, for the CRL scale rows). */
  name: string;
  label: string;
  /** Metric key → one value per round (NaN where it does not apply). */
  values: Record<string, number[]>;
  errors: number;
  firstError?: string;
  /** Said in the table instead of numbers, or beside them ("not supported"). */
  note?: string;
}

export interface ScenarioResult {
  id: string;
  title: string;
  /** What was measured and how (Markdown). */
  setup: string;
  metrics: Metric[];
  rows: Row[];
  /** Rows the ratio columns divide by (e.g. HAProxy and direct). */
  refs: string[];
  /** Lines below the table: targets, observations. */
  notes: string[];
  /** Table with a column per row and a line per metric (many metrics, few rows). */
  transpose?: boolean;
  /** Chart file written for this scenario (relative to docs/), if any. */
  chart?: string;
}

/** One round's values and failures for one contender. */
export type RoundValues = { values: Record<string, number>; errors: number; firstError?: string };

export interface RoundsOptions {
  contenders: Running[];
  rounds: number;
  log: (line: string) => void;
  warmup: (c: Running) => Promise<unknown>;
  once: (c: Running) => Promise<RoundValues>;
  /** Progress prefix, e.g. the scenario id. */
  tag: string;
}

export async function measureRounds(o: RoundsOptions): Promise<Row[]> {
  const rows = new Map<string, Row>(o.contenders.map((c) => [c.name, { name: c.name, label: c.label, values: {}, errors: 0 }]));
  for (const c of o.contenders) await o.warmup(c).catch((err) => o.log(`  ${o.tag}: warm-up of ${c.label} failed: ${(err as Error).message}`));
  for (let round = 0; round < o.rounds; round++) {
    const order = o.contenders.map((_, i) => o.contenders[(i + round) % o.contenders.length]!);
    for (const c of order) {
      const row = rows.get(c.name)!;
      let r: RoundValues;
      try {
        r = await o.once(c);
      } catch (err) {
        r = { values: {}, errors: 1, firstError: (err as Error).message.split('\n')[0] };
      }
      for (const [k, v] of Object.entries(r.values)) (row.values[k] ??= []).push(v);
      row.errors += r.errors;
      if (r.firstError && !row.firstError) row.firstError = r.firstError;
      const shown = Object.entries(r.values)
        .filter(([, v]) => Number.isFinite(v))
        .map(([k, v]) => `${k} ${v.toFixed(v >= 100 ? 0 : 2)}`)
        .join(', ');
      o.log(`  ${o.tag} round ${round + 1}/${o.rounds} ${c.label.padEnd(26)} ${shown}${r.errors ? `  (${r.errors} errors: ${r.firstError})` : ''}`);
    }
  }
  return [...rows.values()];
}

/** CPU seconds of the contender's proxy processes (NaN for direct) and of its helpers. */
function cpuNow(c: Running): { proxy: number; helper: number } {
  return { proxy: c.pids.length ? cpuSeconds(c.pids) : NaN, helper: c.helperPids?.length ? cpuSeconds(c.helperPids) : NaN };
}

/**
 * `count` new connections one after the other (or at `rate` per second): handshakes/s, proxy CPU
 * ms per connection (and the helper's, e.g. the Envoy stand-in), latency p50/p99 in ms.
 */
export async function handshakeRound(c: Running, sni: string, count: number, o: { rate?: number; concurrency?: number } = {}): Promise<RoundValues> {
  const c0 = cpuNow(c);
  const r = await handshakes(c.target, sni, count, o);
  const c1 = cpuNow(c);
  const n = Math.max(1, r.ok);
  return {
    values: {
      rate: r.ok / r.elapsedS,
      cpuMs: ((c1.proxy - c0.proxy) * 1000) / n,
      helperCpuMs: ((c1.helper - c0.helper) * 1000) / n,
      p50: percentile(r.latMs, 50),
      p99: percentile(r.latMs, 99),
    },
    errors: r.errors,
    firstError: r.firstError || undefined,
  };
}

/** `parallel` transfers of `bytesPerConnection` at once: MB/s (10^6 B/s) and proxy CPU s per GiB. */
export async function bulkRound(c: Running, sni: string, bytesPerConnection: number, parallel: number): Promise<RoundValues> {
  const c0 = cpuNow(c);
  const r = await bulk(c.target, sni, bytesPerConnection, parallel);
  const c1 = cpuNow(c);
  const bytes = r.ok * r.bytesPerConnection;
  const gib = bytes / 2 ** 30;
  return {
    values: r.ok ? { mbps: bytes / 1e6 / r.elapsedS, cpuPerGiB: (c1.proxy - c0.proxy) / gib, helperCpuPerGiB: (c1.helper - c0.helper) / gib } : {},
    errors: r.errors,
    firstError: r.firstError || undefined,
  };
}

/** `n round(s)`, for set-up texts. */
export const rounds = (n: number): string => `${n} round${n === 1 ? '' : 's'}`;

/** Median of the finite values, NaN if none. */
export function med(xs: number[] | undefined): number {
  const f = (xs ?? []).filter(Number.isFinite);
  return f.length ? median(f) : NaN;
}

/** Min and max of the finite values. */
export function range(xs: number[] | undefined): [number, number] {
  const f = (xs ?? []).filter(Number.isFinite);
  return f.length ? [Math.min(...f), Math.max(...f)] : [NaN, NaN];
}
