/**
 * New-handshake rate, direct vs through ca-proxy, TLS 1.2 and TLS 1.3 separately.
 *
 * Each connection is a full handshake (the client never offers a session to resume), one
 * request/response of 5 bytes each (`ping\n` → `pong\n`), then close. The upstream server
 * (bench/support.ts, its own process) requires a client certificate issued by client-ca.
 * - direct: the client connects to the server and presents the proxy identity itself;
 * - proxy: the client sends CONNECT to ca-proxy (its own process) and runs TLS over the tunnel
 *   trusting the interception CA; ca-proxy opens its own TLS to the server, checks the chain
 *   and the CRLs, presents the identity, then answers the client with a minted leaf (cached
 *   per SNI, so after the warm-up this is the steady state of one busy destination).
 *
 * Each side runs a fixed number of connections at a fixed concurrency; the sides alternate over
 * several rounds (the order flips each round) so background noise hits both. Reported: median
 * handshakes/s over the rounds, the ratio proxy/direct, and p50/p99 connection latency (TCP
 * connect, CONNECT, handshake and the request/response) over all measured connections.
 *
 * Run alone: `node dist/bench/handshake.js [--connections N] [--concurrency N] [--rounds N]`.
 */
import tls from 'node:tls';
import { performance } from 'node:perf_hooks';
import { cpuMsNow, median, shortError, percentile, mdTable, openTunnel, benchCli, numArg, type BenchPeers } from './support';

export type HandshakeSide = 'direct' | 'proxy';
export type HandshakeVersion = 'TLSv1.2' | 'TLSv1.3';

export interface HandshakeOptions {
  /** Connections per side per round (default 300). */
  connections?: number;
  /** Connections open at once (default 8). */
  concurrency?: number;
  /** Rounds; the side that goes first alternates (default 5). */
  rounds?: number;
  /** Unmeasured connections per side and version before the rounds (default 40). */
  warmup?: number;
  versions?: HandshakeVersion[];
  /** Per-connection limit, ms (default 10 000): a connection that takes longer counts as an error. */
  timeoutMs?: number;
}

export interface HandshakeSideResult {
  /** Handshakes per second of each round, in round order. */
  rates: number[];
  medianRate: number;
  /** Connection latency over all rounds, ms. */
  p50Ms: number;
  p99Ms: number;
  errors: number;
  /** First error message, if any. */
  firstError?: string;
  /** Cipher suite the client negotiated (last connection). */
  cipher?: string;
  /** CPU time per connection of each process, ms (measured rounds only). */
  cpuMsPerConnection: { client: number; proxy: number; server: number };
}

export interface HandshakeResult {
  options: Required<HandshakeOptions>;
  byVersion: Record<HandshakeVersion, Record<HandshakeSide, HandshakeSideResult>>;
}

/** One connection: connect, full handshake, `ping\n` → `pong\n`, close. Resolves with its cipher. */
function oneConnection(peers: BenchPeers, side: HandshakeSide, version: HandshakeVersion, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let sock: tls.TLSSocket | null = null;
    const timer = setTimeout(() => {
      sock?.destroy();
      reject(new Error(`${side} ${version}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const port = peers.servers.ports[version === 'TLSv1.2' ? 'tls1.2' : 'tls1.3']!;
    const common: tls.ConnectionOptions = { servername: 'localhost', minVersion: version, maxVersion: version };
    const start = (s: tls.TLSSocket): void => {
      sock = s;
      let got = '';
      s.setNoDelay(true);
      s.once('secureConnect', () => {
        if (s.getProtocol() !== version) s.destroy(new Error(`negotiated ${s.getProtocol()}, wanted ${version}`));
        else s.write('ping\n');
      });
      s.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (got === 'pong\n') {
          clearTimeout(timer);
          const cipher = s.getCipher().standardName;
          s.end();
          resolve(cipher);
        }
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      s.once('close', () => {
        clearTimeout(timer);
        reject(new Error(`${side} ${version}: closed before the answer (got ${JSON.stringify(got)})`));
      });
    };
    if (side === 'direct') {
      start(tls.connect({ ...common, host: '127.0.0.1', port, ca: peers.serverCaPem, cert: peers.identity.cert, key: peers.identity.key }));
    } else {
      openTunnel(peers.proxy.ports.connect!, 'localhost', port, timeoutMs).then(
        (socket) => start(tls.connect({ ...common, socket, ca: peers.interceptionCaPem })),
        (err) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    }
  });
}

interface Batch {
  elapsedMs: number;
  latencies: number[];
  errors: number;
  firstError?: string;
  cipher?: string;
}

/** `count` connections, `concurrency` at a time. Never rejects: failures are counted. */
async function batch(peers: BenchPeers, side: HandshakeSide, version: HandshakeVersion, count: number, concurrency: number, timeoutMs: number): Promise<Batch> {
  const latencies: number[] = [];
  let next = 0;
  let errors = 0;
  let firstError: string | undefined;
  let cipher: string | undefined;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      const t0 = performance.now();
      try {
        cipher = await oneConnection(peers, side, version, timeoutMs);
        latencies.push(performance.now() - t0);
      } catch (err) {
        errors++;
        firstError ??= shortError((err as Error).message);
      }
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return { elapsedMs: performance.now() - t0, latencies, errors, firstError, cipher };
}

/** Runs the handshake benchmark against running peers. */
export async function runHandshakeBench(peers: BenchPeers, opts: HandshakeOptions = {}, log: (line: string) => void = console.log): Promise<HandshakeResult> {
  const o: Required<HandshakeOptions> = {
    connections: opts.connections ?? 300,
    concurrency: opts.concurrency ?? 8,
    rounds: opts.rounds ?? 5,
    warmup: opts.warmup ?? 40,
    versions: opts.versions ?? ['TLSv1.3', 'TLSv1.2'],
    timeoutMs: opts.timeoutMs ?? 10_000,
  };
  const byVersion = {} as HandshakeResult['byVersion'];
  for (const version of o.versions) {
    type Acc = { rates: number[]; lat: number[]; errors: number; firstError?: string; cipher?: string; cpu: { client: number; proxy: number; server: number } };
    const fresh = (): Acc => ({ rates: [], lat: [], errors: 0, cpu: { client: 0, proxy: 0, server: 0 } });
    const acc: Record<HandshakeSide, Acc> = { direct: fresh(), proxy: fresh() };
    const cpuNow = async () => ({ client: cpuMsNow(), proxy: await peers.proxy.cpuMs(), server: await peers.servers.cpuMs() });
    for (const side of ['direct', 'proxy'] as const) await batch(peers, side, version, o.warmup, o.concurrency, o.timeoutMs);
    for (let round = 0; round < o.rounds; round++) {
      const order: HandshakeSide[] = round % 2 === 0 ? ['direct', 'proxy'] : ['proxy', 'direct'];
      for (const side of order) {
        const c0 = await cpuNow();
        const b = await batch(peers, side, version, o.connections, o.concurrency, o.timeoutMs);
        const c1 = await cpuNow();
        const a = acc[side];
        for (const k of ['client', 'proxy', 'server'] as const) a.cpu[k] += c1[k] - c0[k];
        const rate = b.latencies.length / (b.elapsedMs / 1000);
        a.rates.push(rate);
        a.lat.push(...b.latencies);
        a.errors += b.errors;
        a.firstError ??= b.firstError;
        a.cipher = b.cipher ?? a.cipher;
        log(`  handshake ${version} round ${round + 1}/${o.rounds} ${side.padEnd(6)} ${rate.toFixed(0).padStart(5)} /s  (${b.latencies.length} ok, ${b.errors} errors, ${(b.elapsedMs / 1000).toFixed(1)} s)`);
      }
    }
    const summarise = (side: HandshakeSide): HandshakeSideResult => {
      const a = acc[side];
      const n = Math.max(1, a.lat.length);
      return {
        rates: a.rates,
        medianRate: median(a.rates),
        p50Ms: percentile(a.lat, 50),
        p99Ms: percentile(a.lat, 99),
        errors: a.errors,
        firstError: a.firstError,
        cipher: a.cipher,
        cpuMsPerConnection: { client: a.cpu.client / n, proxy: a.cpu.proxy / n, server: a.cpu.server / n },
      };
    };
    byVersion[version] = { direct: summarise('direct'), proxy: summarise('proxy') };
  }
  return { options: o, byVersion };
}

/** The results as a Markdown table: one row per version and side. */
export function handshakeTable(r: HandshakeResult): string {
  const rows: string[][] = [];
  for (const version of r.options.versions) {
    const v = r.byVersion[version];
    for (const side of ['direct', 'proxy'] as const) {
      const s = v[side];
      rows.push([
        version,
        side === 'direct' ? 'direct (client presents the identity)' : 'through ca-proxy (intercept)',
        s.medianRate.toFixed(0),
        s.rates.map((x) => x.toFixed(0)).join(', '),
        side === 'proxy' ? `${((s.medianRate / v.direct.medianRate) * 100).toFixed(0)}%` : '',
        s.p50Ms.toFixed(1),
        s.p99Ms.toFixed(1),
        [s.cpuMsPerConnection.client, side === 'proxy' ? s.cpuMsPerConnection.proxy : NaN, s.cpuMsPerConnection.server].map((x) => (Number.isNaN(x) ? '–' : x.toFixed(2))).join(' / '),
        s.errors ? `${s.errors} (${s.firstError})` : '0',
      ]);
    }
  }
  return mdTable(['TLS', 'path', 'handshakes/s (median)', 'per round', 'proxy / direct', 'p50 ms', 'p99 ms', 'CPU ms per connection: client / proxy / server', 'errors'], rows);
}

if (require.main === module) {
  benchCli(async (peers) => {
    const r = await runHandshakeBench(peers, { connections: numArg('--connections'), concurrency: numArg('--concurrency'), rounds: numArg('--rounds') });
    console.log('\n' + handshakeTable(r));
  });
}
