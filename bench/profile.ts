/**
 * `node dist/bench/profile.js [--handshakes N] [--mib M] [--out FILE]`: where ca-proxy's CPU goes.
 * Runs `ca-proxy run` (SNI listener, intercept) under `node --cpu-prof` on the benchmarks' job —
 * the tlsbench load generator through ca-proxy to the tlsbench server with the proxy's
 * certificate and a CRL — first N new handshakes one at a time, then one M MiB transfer, and
 * prints the self time by function and by file (the summary kept in docs/benchmarks.md). The raw
 * `.cpuprofile` is left in the temporary folder it names (open it in Chrome DevTools for the flame graph).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeBenchPki } from './compare/pki';
import { caProxyConfig } from './compare/contenders';
import { startFastUpstream } from './compare/upstreams';
import { buildTlsbench, bulk, handshakes } from './compare/tlsbench';
import { freePort, startProcess, stopAll, waitForPort } from './compare/processes';
import { SNI } from './compare/pki';
import { repoRoot } from '../test/support/root';
import { numArg } from './support';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Self time per function and per file, in ms, from a V8 CPU profile. */
export function summarizeProfile(p: CpuProfile, root = repoRoot()): { total: number; byFunction: [string, number][]; byFile: [string, number][] } {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0) / 1000);
  const fn = new Map<string, number>();
  const file = new Map<string, number>();
  let total = 0;
  for (const [id, ms] of self) {
    const n = byId.get(id)!;
    const url = n.callFrame.url.replace(`file://${root}/`, '').replace(/^node:/, 'node:');
    const where = url || (n.callFrame.functionName.startsWith('(') ? n.callFrame.functionName : '(native)');
    if (n.callFrame.functionName === '(idle)') continue;
    total += ms;
    const name = `${n.callFrame.functionName || '(anonymous)'} ${where}${url ? `:${n.callFrame.lineNumber + 1}` : ''}`;
    fn.set(name, (fn.get(name) ?? 0) + ms);
    file.set(where, (file.get(where) ?? 0) + ms);
  }
  const top = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]);
  return { total, byFunction: top(fn), byFile: top(file) };
}

async function main(): Promise<void> {
  const args = { handshakes: numArg('--handshakes') ?? 500, mib: numArg('--mib') ?? 256, out: process.argv.includes('--out') ? process.argv[process.argv.indexOf('--out') + 1]! : '' };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-profile-'));
  const pki = makeBenchPki();
  buildTlsbench();
  const upstream = await startFastUpstream(pki);
  const port = await freePort();
  const admin = await freePort();
  const cfg = path.join(dir, 'ca-proxy.yaml');
  // One process: --cpu-prof profiles the process it starts, and with workers that is the primary.
  const config = { ...JSON.parse(caProxyConfig({ pki, upstream, dir }, { sni: `127.0.0.1:${port}`, admin: `127.0.0.1:${admin}` }, 'intercept')), workers: 1 };
  fs.writeFileSync(cfg, JSON.stringify(config, null, 2) + '\n');
  const profDir = path.join(dir, 'prof');
  const cli = path.join(repoRoot(), 'dist', 'cmd', 'ca-proxy', 'main.js');
  const proc = startProcess('ca-proxy run', process.execPath, ['--cpu-prof', '--cpu-prof-dir', profDir, cli, 'run', '--config', cfg], { logFile: path.join(dir, 'ca-proxy.log') });
  try {
    await waitForPort(port, proc, 120_000);
    const target = { port, ca: pki.interceptionCa, tls: '1.3' as const };
    await handshakes(target, SNI, 20);
    const hs = await handshakes(target, SNI, Number(args.handshakes));
    const bk = Number(args.mib) > 0 ? await bulk(target, SNI, Number(args.mib) * 1048576, 1) : null;
    if (hs.errors) process.stderr.write(`handshake errors: ${hs.errors}, first: ${hs.firstError}\n`);
    process.stderr.write(`${hs.ok} handshakes in ${hs.elapsedS.toFixed(2)} s; ${bk ? `${args.mib} MiB in ${bk.elapsedS.toFixed(2)} s` : 'no transfer'}\n`);
  } finally {
    proc.child.kill('SIGINT');
    await new Promise((r) => proc.child.once('exit', r));
    await upstream.stop();
    await stopAll();
  }
  const file = fs.readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no profile written in ${profDir}`);
  const s = summarizeProfile(JSON.parse(fs.readFileSync(path.join(profDir, file), 'utf8')) as CpuProfile);
  const pct = (ms: number) => `${((100 * ms) / s.total).toFixed(1)} %`;
  const lines = [
    `CPU profile of \`ca-proxy run\` (${args.handshakes} handshakes, then ${args.mib} MiB): ${(s.total / 1000).toFixed(2)} s of samples (idle excluded); ${path.join(profDir, file)}`,
    '',
    '| self time by file | ms | share |',
    '| --- | --- | --- |',
    ...s.byFile.slice(0, 15).map(([k, v]) => `| ${k} | ${v.toFixed(0)} | ${pct(v)} |`),
    '',
    '| self time by function | ms | share |',
    '| --- | --- | --- |',
    ...s.byFunction.slice(0, 25).map(([k, v]) => `| \`${k.replace(/\|/g, '\\|')}\` | ${v.toFixed(0)} | ${pct(v)} |`),
  ];
  const text = lines.join('\n') + '\n';
  if (args.out) fs.writeFileSync(String(args.out), text);
  process.stdout.write(text);
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  });
}
