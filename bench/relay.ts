/**
 * Bulk relay throughput: one connection carrying `bytes` (default 256 MiB) from the server to
 * the client, over TLS 1.3 (or 1.2 with `tls: 'TLSv1.2'`), four ways:
 * - direct: client ↔ server TLS (the client presents the proxy identity itself);
 * - tcp-relay: the same TLS session end to end through a plain CONNECT relay that only copies
 *   bytes (bench/support.ts) — the floor of any relay written in Node;
 * - inspect: the same end-to-end TLS session through ca-proxy's `inspect` action: the handshake
 *   is parsed (for TLS 1.2 the server's Certificate is chain- and CRL-checked before it is
 *   forwarded; TLS 1.3 is relayed under `tls13: allowUnchecked`), then bytes pass unread;
 * - proxy: through ca-proxy in intercept mode, which decrypts and re-encrypts every byte.
 *
 * Time runs from the request (`bulk N\n`, written once the handshake is done) to the last
 * byte; the handshake is not counted, nor the teardown (the server does not close; the client
 * closes once it has counted N bytes). The paths rotate over several rounds so background noise
 * hits all of them; reported is the median MB/s (10^6 bytes/s) and the ratios to direct.
 *
 * Run alone: `node dist/bench/relay.js [--mib N] [--rounds N] [--tls 1.2|1.3]`.
 */
import tls from 'node:tls';
import { performance } from 'node:perf_hooks';
import { cpuMsNow, median, shortError, mdTable, openTunnel, benchCli, numArg, type BenchPeers } from './support';

export type RelayPath = 'direct' | 'tcp-relay' | 'inspect' | 'proxy';
export const RELAY_PATHS: RelayPath[] = ['direct', 'tcp-relay', 'inspect', 'proxy'];

export interface RelayOptions {
  /** Bytes per transfer (default 256 MiB). */
  bytes?: number;
  /** Rounds; each runs every path once, in a rotated order (default 6). */
  rounds?: number;
  /** Per-transfer limit, ms (default 60 000): a slower transfer is abandoned and counted as an error. */
  timeoutMs?: number;
  /** TLS version of every path (default TLSv1.3). */
  tls?: 'TLSv1.2' | 'TLSv1.3';
}

export interface RelayPathResult {
  /** MB/s of each run, in round order. */
  mbps: number[];
  medianMBps: number;
  errors: number;
  firstError?: string;
  cipher?: string;
  /** CPU time per transfer of each process, ms (median over the runs); `middle` is the relay or ca-proxy. */
  cpuMsPerTransfer: { client: number; middle: number; server: number };
}

export interface RelayResult {
  options: Required<RelayOptions>;
  byPath: Record<RelayPath, RelayPathResult>;
}

/** One transfer on `path`; resolves with elapsed ms (request → last byte) and the cipher. */
function transfer(peers: BenchPeers, path: RelayPath, bytes: number, timeoutMs: number, version: 'TLSv1.2' | 'TLSv1.3' = 'TLSv1.3'): Promise<{ ms: number; cipher: string }> {
  return new Promise((resolve, reject) => {
    const tls12 = version === 'TLSv1.2';
    const port = peers.servers.ports[path === 'inspect' ? (tls12 ? 'bulk12-inspect' : 'bulk-inspect') : tls12 ? 'bulk12' : 'bulk']!;
    let sock: tls.TLSSocket | null = null;
    const fail = (err: Error): void => {
      clearTimeout(timer);
      sock?.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error(`${path}: not done within ${timeoutMs} ms`)), timeoutMs);
    const start = (s: tls.TLSSocket): void => {
      sock = s;
      let got = 0;
      let t0 = 0;
      s.once('secureConnect', () => {
        t0 = performance.now();
        s.write(`bulk ${bytes}\n`);
      });
      s.on('data', (d: Buffer) => {
        got += d.length;
        if (got < bytes) return;
        const ms = performance.now() - t0;
        clearTimeout(timer);
        const cipher = s.getCipher().standardName;
        s.destroy();
        if (got !== bytes) reject(new Error(`${path}: received ${got} bytes, expected ${bytes}`));
        else resolve({ ms, cipher });
      });
      s.once('error', fail);
      s.once('close', () => fail(new Error(`${path}: closed after ${got} of ${bytes} bytes`)));
    };
    const direct = { servername: 'localhost', minVersion: version, maxVersion: version, ca: peers.serverCaPem, cert: peers.identity.cert, key: peers.identity.key };
    if (path === 'direct') start(tls.connect({ ...direct, host: '127.0.0.1', port }));
    else if (path === 'tcp-relay') openTunnel(peers.relay.ports.relay!, 'localhost', port).then((socket) => start(tls.connect({ ...direct, socket })), fail);
    // inspect relays the server's own chain and presents no identity: the client trusts the server's CA and brings its certificate.
    else if (path === 'inspect') openTunnel(peers.proxy.ports.connect!, 'localhost', port).then((socket) => start(tls.connect({ ...direct, socket })), fail);
    else openTunnel(peers.proxy.ports.connect!, 'localhost', port).then((socket) => start(tls.connect({ servername: 'localhost', minVersion: version, maxVersion: version, socket, ca: peers.interceptionCaPem })), fail);
  });
}

/** Runs the relay benchmark against running peers. */
export async function runRelayBench(peers: BenchPeers, opts: RelayOptions = {}, log: (line: string) => void = console.log): Promise<RelayResult> {
  const o: Required<RelayOptions> = { bytes: opts.bytes ?? 256 * 1024 * 1024, rounds: opts.rounds ?? 6, timeoutMs: opts.timeoutMs ?? 60_000, tls: opts.tls ?? 'TLSv1.3' };
  const acc = Object.fromEntries(RELAY_PATHS.map((p) => [p, { mbps: [] as number[], errors: 0 } as RelayPathResult])) as Record<RelayPath, RelayPathResult>;
  const cpu = Object.fromEntries(RELAY_PATHS.map((p) => [p, { client: [] as number[], middle: [] as number[], server: [] as number[] }])) as Record<RelayPath, Record<'client' | 'middle' | 'server', number[]>>;
  const cpuNow = async (p: RelayPath) => ({
    client: cpuMsNow(),
    middle: p === 'proxy' || p === 'inspect' ? await peers.proxy.cpuMs() : p === 'tcp-relay' ? await peers.relay.cpuMs() : 0,
    server: await peers.servers.cpuMs(),
  });
  // Warm-up: a small transfer per path (JIT, the proxy's minted-leaf cache).
  for (const p of RELAY_PATHS) await transfer(peers, p, 4 * 1024 * 1024, o.timeoutMs, o.tls).catch(() => undefined);
  for (let round = 0; round < o.rounds; round++) {
    const order = RELAY_PATHS.map((_, i) => RELAY_PATHS[(i + round) % RELAY_PATHS.length]!);
    for (const p of order) {
      const a = acc[p];
      try {
        const c0 = await cpuNow(p);
        const { ms, cipher } = await transfer(peers, p, o.bytes, o.timeoutMs, o.tls);
        const c1 = await cpuNow(p);
        for (const k of ['client', 'middle', 'server'] as const) cpu[p][k].push(c1[k] - c0[k]);
        const mbps = o.bytes / 1e6 / (ms / 1000);
        a.mbps.push(mbps);
        a.cipher = cipher;
        log(`  relay round ${round + 1}/${o.rounds} ${p.padEnd(9)} ${mbps.toFixed(0).padStart(5)} MB/s  (${(ms / 1000).toFixed(2)} s)`);
      } catch (err) {
        a.errors++;
        a.firstError ??= shortError((err as Error).message);
        log(`  relay round ${round + 1}/${o.rounds} ${p.padEnd(9)} error: ${shortError((err as Error).message)}`);
      }
    }
  }
  for (const p of RELAY_PATHS) {
    acc[p].medianMBps = median(acc[p].mbps);
    acc[p].cpuMsPerTransfer = { client: median(cpu[p].client), middle: median(cpu[p].middle), server: median(cpu[p].server) };
  }
  return { options: o, byPath: acc };
}

const LABELS: Record<RelayPath, string> = {
  direct: 'direct TLS (client ↔ server)',
  'tcp-relay': 'TLS through a plain TCP relay (floor)',
  inspect: 'through ca-proxy (inspect: handshake parsed, then relayed unread)',
  proxy: 'through ca-proxy (intercept: decrypt + re-encrypt)',
};

/** The results as a Markdown table: one row per path. */
export function relayTable(r: RelayResult): string {
  const direct = r.byPath.direct.medianMBps;
  const relay = r.byPath['tcp-relay'].medianMBps;
  const rows = RELAY_PATHS.map((p) => {
    const s = r.byPath[p];
    return [
      LABELS[p],
      s.medianMBps.toFixed(0),
      s.mbps.map((x) => x.toFixed(0)).join(', '),
      `${((s.medianMBps / direct) * 100).toFixed(0)}%`,
      p === 'proxy' || p === 'inspect' ? `${((s.medianMBps / relay) * 100).toFixed(0)}%` : '',
      [s.cpuMsPerTransfer.client, p === 'direct' ? NaN : s.cpuMsPerTransfer.middle, s.cpuMsPerTransfer.server].map((x) => (Number.isNaN(x) ? '–' : (x / 1000).toFixed(2))).join(' / '),
      s.errors ? `${s.errors} (${s.firstError})` : '0',
    ];
  });
  return mdTable(['path', 'MB/s (median)', 'per run', '/ direct', '/ tcp-relay', 'CPU s per transfer: client / middle / server', 'errors'], rows);
}

if (require.main === module) {
  benchCli(async (peers) => {
    const mib = numArg('--mib');
    const r = await runRelayBench(peers, { bytes: mib === undefined ? undefined : mib * 1024 * 1024, rounds: numArg('--rounds'), tls: numArg('--tls') === 1.2 ? 'TLSv1.2' : 'TLSv1.3' });
    console.log(`\nTLS ${r.options.tls}, ${r.options.bytes / (1024 * 1024)} MiB per transfer, ${r.options.rounds} rounds`);
    console.log('\n' + relayTable(r));
  });
}
