/**
 * `make bench`: ca-proxy side by side with HAProxy, nginx (stream) and stunnel on the same job,
 * direct connections as the baseline (issue 13), then docs/benchmarks.md and docs/bench/*.png.
 *
 *   node dist/bench/run.js [--quick] [--transfer-mib N] [--rounds N] [--only id,id]
 *                          [--no-install] [--no-docs] [--provisional | --final]
 *
 * 1. installs what is missing (bench/compare/packages.ts; a contender that cannot be had is
 *    skipped with the reason printed), compiles the load generator (bench/tlsbench.c) and builds
 *    a PKI with openssl (bench/compare/pki.ts);
 * 2. runs the scenarios (bench/compare/scenarios.ts, crl-scale.ts, memory.ts), printing progress;
 *    a scenario that fails is reported as failed and the others still run;
 * 3. draws one chart per scenario (gnuplot) and writes the report (bench/compare/report.ts).
 *
 * Everything it starts is stopped on the way out, on Ctrl-C and by a watchdog (WATCHDOG_MS).
 * Benchmarks measure and report; they never fail on a number. A run is marked provisional when it
 * is `--quick`, `--provisional`, or the machine was busy at the start (1-minute load average > 1),
 * unless `--final`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { machineInfo } from './support';
import { writeChart } from './compare/chart';
import { NEEDS, type ContenderName } from './compare/contenders';
import { runCrlScale } from './compare/crl-scale';
import type { ScenarioResult } from './compare/measure';
import { runMemory } from './compare/memory';
import { ensureTools, opensslVersion } from './compare/packages';
import { makeBenchPki } from './compare/pki';
import { stopAll, stopOnSignals } from './compare/processes';
import { writeReport, type RunInfo } from './compare/report';
import {
  extprocScenario, handshakeScenario, inspectScenario, latencyScenario, longTransferScenario, parallelTransferScenario, resumptionScenario,
  sizesFor, SPLIT, type BenchContext,
} from './compare/scenarios';
import { buildTlsbench } from './compare/tlsbench';

const DOCS = path.resolve(__dirname, '..', '..', 'docs');
const WATCHDOG_MS = 25 * 60_000;

/** Scenario ids in report order. */
export const SCENARIOS = ['handshake', 'latency', 'resumption', 'transfer', 'transfer-parallel', 'inspect', 'extproc', 'crl-scale', 'memory'] as const;

interface Args {
  quick: boolean;
  transferMiB?: number;
  rounds?: number;
  only: Set<string> | null;
  install: boolean;
  docs: boolean;
  provisional: boolean;
  final: boolean;
}

function parseArgs(argv: string[]): Args {
  const value = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const num = (name: string): number | undefined => {
    const v = value(name);
    if (v === undefined || v === '') return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`${name}: a positive whole number, got ${JSON.stringify(v)}`);
    return n;
  };
  const only = value('--only');
  const ids = only ? only.split(',').map((s) => s.trim()).filter(Boolean) : null;
  for (const id of ids ?? []) if (!(SCENARIOS as readonly string[]).includes(id)) throw new Error(`--only: unknown scenario ${id} (one of ${SCENARIOS.join(', ')})`);
  return {
    quick: argv.includes('--quick'),
    transferMiB: num('--transfer-mib'),
    rounds: num('--rounds'),
    only: ids ? new Set(ids) : null,
    install: !argv.includes('--no-install'),
    docs: !argv.includes('--no-docs'),
    provisional: argv.includes('--provisional'),
    final: argv.includes('--final'),
  };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const t0 = Date.now();
  const log = (line: string): void => void process.stdout.write(line + '\n');
  const m = machineInfo();
  log(`ca-proxy side-by-side benchmark — ${m.nproc} × ${m.cpu}, node ${m.node}, ${m.openssl}, ${m.date}, load ${m.loadavg.toFixed(2)}${args.quick ? ' (QUICK)' : ''}`);
  stopOnSignals(log);
  const watchdog = setTimeout(() => {
    log(`bench: still running after ${WATCHDOG_MS / 60_000} min; stopping everything`);
    void stopAll().finally(() => process.exit(2));
  }, WATCHDOG_MS);
  watchdog.unref();

  log('\n== tools');
  const tools = ensureTools({ install: args.install, log });
  for (const [name, why] of tools.missing) log(`  ${name}: ${why}`);
  if (tools.missing.has('cc')) throw new Error(`the load generator cannot be built: ${tools.missing.get('cc')}`);
  buildTlsbench();
  log('  load generator: dist/bench/tlsbench (bench/tlsbench.c) built');

  const sizes = sizesFor(args.quick);
  if (args.transferMiB) sizes.transferMiB = args.transferMiB;
  if (args.rounds) sizes.rounds = args.rounds;
  const pki = makeBenchPki();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-bench-'));
  const cleanup = (): void => {
    pki.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', cleanup);
  const unavailable = (name: ContenderName): string | null => {
    const tool = NEEDS[name];
    return tool ? (tools.missing.get(tool) ?? null) : null;
  };
  const ctx: BenchContext = { pki, dir, sizes, log, unavailable };
  const results = new Map<string, ScenarioResult>();
  const failed: string[] = [];
  const runners: Record<(typeof SCENARIOS)[number], () => Promise<ScenarioResult>> = {
    handshake: () => handshakeScenario(ctx),
    latency: () => latencyScenario(ctx),
    resumption: () => resumptionScenario(ctx, results.get('handshake')),
    transfer: () => longTransferScenario(ctx),
    'transfer-parallel': () => parallelTransferScenario(ctx),
    inspect: () => inspectScenario(ctx),
    extproc: () => extprocScenario(ctx),
    'crl-scale': () => runCrlScale({ pki, dir, sizes: sizes.crlSizes, runs: sizes.crlRuns, reloadRate: 40, reloadSeconds: 4, log }),
    memory: () => runMemory({ pki, dir, contenders: SPLIT.filter((n) => n !== 'direct' && !unavailable(n)), held: sizes.held, log }),
  };
  const loadStart = m.loadavg;
  try {
    for (const id of SCENARIOS) {
      if (args.only && !args.only.has(id)) continue;
      const ts = Date.now();
      log(`\n== ${id}`);
      try {
        const r = await runners[id]();
        results.set(id, r);
        log(`  ${id}: done in ${((Date.now() - ts) / 1000).toFixed(0)} s`);
      } catch (err) {
        failed.push(id);
        log(`  ${id} FAILED: ${(err as Error).stack ?? err}`);
        await stopAll();
      }
    }
  } finally {
    await stopAll();
  }

  const loadEnd = os.loadavg()[0]!;
  if (args.docs) {
    const scratch = path.join(dir, 'charts');
    fs.mkdirSync(scratch, { recursive: true });
    for (const r of results.values()) {
      const rel = `bench/${r.id}.png`;
      const why = tools.missing.has('gnuplot') ? `gnuplot: ${tools.missing.get('gnuplot')}` : writeChart(r, path.join(DOCS, rel), scratch);
      if (why) log(`  chart ${r.id}: not drawn (${why})`);
      else r.chart = rel;
    }
    const reasons: string[] = [];
    if (args.quick) reasons.push('This is a QUICK run (small counts, one or two rounds).');
    if (args.provisional) reasons.push('It was marked provisional when it was run.');
    if (loadStart > 1) reasons.push(`The machine was busy: 1-minute load average ${loadStart.toFixed(2)} at the start (other work shared the ${m.nproc} cores), which skews every number.`);
    if (failed.length) reasons.push(`Scenario(s) ${failed.join(', ')} failed in this run (their sections are from an earlier run, if any).`);
    const info: RunInfo = {
      date: m.date,
      durationS: (Date.now() - t0) / 1000,
      provisional: args.final || !reasons.length ? null : reasons.join(' '),
      machine: `${m.nproc} × ${m.cpu}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${os.release()}`,
      versions: [
        ['Node.js (ca-proxy, the Envoy stand-in)', m.node],
        ['openssl (PKI, s_server upstream)', opensslVersion()],
        ...(['haproxy', 'nginx', 'stunnel', 'gnuplot', 'cc'] as const).map((t): [string, string] => [t === 'cc' ? 'cc (tlsbench)' : t, tools.versions.get(t) ?? `missing: ${tools.missing.get(t)}`]),
      ],
      loadStart,
      loadEnd,
      command: `node dist/bench/run.js ${process.argv.slice(2).join(' ')}`.trim(),
      skipped: (['haproxy', 'nginx', 'stunnel'] as const).filter((t) => tools.missing.has(t)).map((t) => `${t}: ${tools.missing.get(t)}.`),
    };
    writeReport(path.join(DOCS, 'benchmarks.md'), info, results, [...SCENARIOS]);
    log(`\nwrote docs/benchmarks.md and ${results.size} chart(s) under docs/bench/ in ${((Date.now() - t0) / 60_000).toFixed(1)} min`);
  }
  clearTimeout(watchdog);
  if (failed.length) process.exitCode = 1;
}

main().catch(async (err) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
  await stopAll();
  process.exit(1);
});
