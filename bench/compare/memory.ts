/**
 * Memory: idle RSS of each contender and RSS per held intercepted connection. Each proxy is
 * started fresh against the thread-per-connection upstream, warmed with 20 connections (so the
 * minted leaf, the JIT and the TLS contexts exist), measured idle, then `held` connections are
 * opened one after the other (each answers a ping, so the relay is set up) and held while the RSS
 * is read again. RSS is the sum of VmRSS over the proxy's processes (bench/compare/procstat.ts).
 */
import { startContender, type ContenderName } from './contenders';
import type { Metric, Row, ScenarioResult } from './measure';
import type { BenchPki } from './pki';
import { SNI } from './pki';
import { treeMemory } from './procstat';
import { handshakes, hold } from './tlsbench';
import { startFastUpstream } from './upstreams';

const METRICS: Metric[] = [
  { key: 'idleMB', label: 'idle RSS', unit: 'MB', digits: 1, better: 'lower', chart: true, ratios: true },
  { key: 'heldMB', label: 'RSS holding the connections', unit: 'MB', digits: 1, better: 'lower' },
  { key: 'perConnKB', label: 'RSS per held connection', unit: 'KB', digits: 1, better: 'lower', chart: true, ratios: true },
];

/** Waits until the RSS stops growing (two reads 200 ms apart within 1 %), at most 3 s. */
async function settledRss(pids: number[]): Promise<number> {
  let last = treeMemory(pids).rssBytes;
  for (let i = 0; i < 15; i++) {
    await new Promise((r) => setTimeout(r, 200));
    const now = treeMemory(pids).rssBytes;
    if (Math.abs(now - last) <= last * 0.01) return now;
    last = now;
  }
  return last;
}

export async function runMemory(o: { pki: BenchPki; dir: string; contenders: ContenderName[]; held: number; log: (l: string) => void }): Promise<ScenarioResult> {
  const upstream = await startFastUpstream(o.pki);
  const rows: Row[] = [];
  try {
    for (const name of o.contenders) {
      const c = await startContender(name, { pki: o.pki, upstream, dir: o.dir });
      try {
        await handshakes(c.target, SNI, 20);
        const idle = await settledRss(c.pids);
        const h = await hold(c.target, SNI, o.held);
        const held = await settledRss(c.pids);
        await h.release();
        const perConnKB = h.ok ? (held - idle) / h.ok / 1024 : NaN;
        rows.push({ name, label: c.label, values: { idleMB: [idle / 1e6], heldMB: [held / 1e6], perConnKB: [perConnKB] }, errors: h.errors, firstError: h.firstError || undefined });
        o.log(`  memory ${c.label.padEnd(26)} idle ${(idle / 1e6).toFixed(1)} MB, ${h.ok} held ${(held / 1e6).toFixed(1)} MB, ${perConnKB.toFixed(1)} KB per connection${h.errors ? ` (${h.errors} failed: ${h.firstError})` : ''}`);
      } finally {
        await c.stop();
      }
    }
  } finally {
    await upstream.stop();
  }
  return {
    id: 'memory',
    title: 'Memory: idle and per held connection',
    setup: `Each proxy fresh, against the thread-per-connection upstream (tlsbench server, TLS 1.3, client certificate required), after 20 warm-up connections: idle RSS, then RSS while holding ${o.held.toLocaleString('en-US')} connections opened one after the other (each answered a ping, so both TLS sessions and the relay are set up). RSS = sum of VmRSS over the proxy's processes (nginx: master + workers, so shared pages count once per process); read once it stops growing. One run.`,
    metrics: METRICS,
    rows,
    refs: ['haproxy'],
    notes: [],
  };
}
