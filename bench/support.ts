/**
 * Shared pieces of the handshake and relay benchmarks (bench/handshake.ts, bench/relay.ts):
 *
 * - the peers, each in its own Node process so no two of them share an event loop (in a
 *   cluster they do not either): the upstream TLS servers, ca-proxy (started through the same
 *   composition root as `ca-proxy run`, cmd/ca-proxy/runtime.ts) and a plain TCP CONNECT
 *   relay (the floor: bytes copied, no TLS). This file is also the entry point of those child
 *   processes: `node dist/bench/support.js` is forked with an IPC channel and told its role;
 * - a CONNECT client (`openTunnel`), statistics (median, percentiles) and Markdown tables.
 *
 * Everything listens on 127.0.0.1 with ephemeral ports.
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import tls from 'node:tls';
import { Writable } from 'node:stream';
import type { Config } from '../internal/config/types';
import { makeWorld, worldConfig, type World } from '../test/support/world';

// ---- statistics ---------------------------------------------------------------------------------

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank percentile, `p` in [0, 100]; NaN for an empty list. */
export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[Math.min(rank, s.length) - 1]!;
}

/**
 * One line of an error message, fit for a table cell: OpenSSL's `<hex>:error:` prefix and
 * `:<file>:<line>:` suffix dropped, `|` escaped, at most 120 characters.
 */
export function shortError(message: string): string {
  const line = (message.split('\n').find((l) => l.trim()) ?? '').trim();
  const s = line.replace(/^[0-9A-F]{8,}:error:[0-9A-F]+:/, '').replace(/:[^:\s]+\.c:\d+:?$/, '').replace(/\|/g, '\\|');
  return s.length > 120 ? s.slice(0, 117) + '...' : s;
}

/** A Markdown table (also readable as plain text on a terminal). */
export function mdTable(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** The machine facts every result is reported with. */
export interface MachineInfo {
  nproc: number;
  cpu: string;
  node: string;
  openssl: string;
  /** 1-minute load average when asked (other work on the machine skews every number). */
  loadavg: number;
  date: string;
}

export function machineInfo(): MachineInfo {
  const sh = (cmd: string, args: string[]): string => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8' }).trim();
    } catch {
      return 'unknown';
    }
  };
  return {
    nproc: Number(sh('nproc', [])) || os.cpus().length,
    cpu: os.cpus()[0]?.model ?? 'unknown CPU',
    node: process.version,
    openssl: sh('openssl', ['version']),
    loadavg: os.loadavg()[0]!,
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
  };
}

/** This process's CPU time so far (user + system), ms. */
export function cpuMsNow(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

// ---- child processes ----------------------------------------------------------------------------

/** What the parent sends a forked child to start it. */
export type RoleSpec =
  | { role: 'servers'; certPath: string; keyPath: string; chainPath: string; clientCaPath: string }
  | { role: 'proxy'; config: Config }
  | { role: 'relay'; target?: number }
  | { role: 'standin'; target: string; upstreamPort: number; messageTimeoutMs: number };

/** Ports a child listens on, keyed by name (`tls1.2`, `tls1.3`, `bulk`, `bulk12`, `bulk-inspect`, `bulk12-inspect`, `connect`, `relay`, `standin`). */
export type Ports = Record<string, number>;

export interface Peer {
  ports: Ports;
  pid: number;
  /** The child's CPU time so far (user + system), ms (process.cpuUsage). */
  cpuMs(): Promise<number>;
  /** Asks the child to close its listeners and exit; kills it if it has not exited within 5 s. */
  stop(): Promise<void>;
}

/** Forks this file as a child process in `spec.role` and waits until it listens (≤ 30 s). */
export function startPeer(spec: RoleSpec): Promise<Peer> {
  const child: ChildProcess = fork(__filename, [spec.role], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.send({ stop: true });
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  };
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${spec.role}: not listening within 30 s`));
    }, 30_000);
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`${spec.role}: exited early (code ${code})`));
    });
    const cpuWaiters: ((ms: number) => void)[] = [];
    const cpuMs = (): Promise<number> =>
      new Promise((r) => {
        cpuWaiters.push(r);
        child.send({ cpu: true });
      });
    child.on('message', (m: { ports?: Ports; error?: string; cpuMs?: number }) => {
      if (m.cpuMs !== undefined) return void cpuWaiters.shift()?.(m.cpuMs);
      clearTimeout(t);
      if (m.error) {
        void stop();
        reject(new Error(`${spec.role}: ${m.error}`));
      } else if (m.ports) resolve({ ports: m.ports, pid: child.pid!, cpuMs, stop });
    });
    child.send(spec);
  });
}

/** The world (test PKI) and the three peers every benchmark here runs against. */
export interface BenchPeers {
  world: World;
  servers: Peer;
  proxy: Peer;
  relay: Peer;
  /** PEM of the trust anchor of the servers' chain (what a direct client trusts). */
  serverCaPem: string;
  /** PEM of ca-proxy's interception CA (what a client of the proxy trusts). */
  interceptionCaPem: string;
  /** The proxy identity (issued by client-ca), presented by direct clients. */
  identity: { cert: string; key: string };
  close(): Promise<void>;
}

/**
 * Builds the test PKI (test/support/world.ts, `openssl` CLI) and starts the servers, ca-proxy
 * (intercept, CRL checks on, identity "upstream" on CertificateRequest) and the TCP relay.
 */
export async function startBenchPeers(): Promise<BenchPeers> {
  const world = makeWorld();
  const started: Peer[] = [];
  try {
    const servers = await startPeer({
      role: 'servers',
      certPath: world.good.certPath,
      keyPath: world.good.keyPath,
      chainPath: world.chainPath,
      clientCaPath: world.pki.cas.get('client-ca')!.certPath,
    });
    started.push(servers);
    // The CRL watch (fs.watch) is not needed: the files never change during the run.
    const config = worldConfig(world);
    config.revocation = { ...config.revocation, watch: false };
    // The inspect paths of bench/relay.ts: same servers, own ports. TLS 1.3 cannot be checked
    // by inspect; allowUnchecked relays it the same way once decided.
    config.rules = [
      { name: 'bench-inspect-tls12', match: { port: servers.ports['bulk12-inspect']! }, action: 'inspect' },
      { name: 'bench-inspect-tls13', match: { port: servers.ports['bulk-inspect']! }, action: 'inspect', tls13: 'allowUnchecked' },
    ];
    const proxy = await startPeer({ role: 'proxy', config });
    started.push(proxy);
    const relay = await startPeer({ role: 'relay' });
    started.push(relay);
    return {
      world,
      servers,
      proxy,
      relay,
      serverCaPem: world.pki.root.certPem,
      interceptionCaPem: fs.readFileSync(world.interceptionCA.certPath, 'utf8'),
      identity: { cert: world.identity.certPem, key: fs.readFileSync(world.identity.keyPath, 'utf8') },
      close: async () => {
        await Promise.all(started.map((p) => p.stop()));
        world.cleanup();
      },
    };
  } catch (err) {
    await Promise.all(started.map((p) => p.stop()));
    world.cleanup();
    throw err;
  }
}

// ---- CONNECT client -----------------------------------------------------------------------------

/**
 * Opens TCP to an HTTP CONNECT proxy on 127.0.0.1:`proxyPort`, asks for `host:port` and
 * resolves with the socket once the proxy answered 2xx (bytes after the answer are unshifted
 * back into the socket). Rejects on a non-2xx answer, an error or after `timeoutMs`.
 */
export function openTunnel(proxyPort: number, host: string, port: number, timeoutMs = 10_000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port: proxyPort });
    sock.setNoDelay(true);
    let buf = Buffer.alloc(0);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      sock.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error(`CONNECT: no answer within ${timeoutMs} ms`)), timeoutMs);
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buf.length > 8192) fail(new Error('CONNECT: answer header larger than 8 KiB'));
        return;
      }
      sock.off('data', onData);
      sock.off('error', fail);
      sock.pause();
      clearTimeout(timer);
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(buf.subarray(0, end).toString('latin1'));
      if (!status || status[1]![0] !== '2') return fail(new Error(`CONNECT refused: ${buf.subarray(0, end).toString('latin1').split('\r\n')[0]}`));
      const rest = buf.subarray(end + 4);
      if (rest.length) sock.unshift(rest);
      resolve(sock);
    };
    sock.on('data', onData);
    sock.once('error', fail);
    sock.once('connect', () => sock.write(`CONNECT ${host}:${port} HTTP/1.1\r\nhost: ${host}:${port}\r\n\r\n`));
  });
}

// ---- the child roles ----------------------------------------------------------------------------

/** Size of each write of the bulk server, bytes. */
const BULK_CHUNK = 64 * 1024;

/**
 * The upstream servers: `tls1.2` and `tls1.3` answer one request line (`ping\n`) with `pong\n`;
 * `bulk` (TLS 1.3) and `bulk12` (TLS 1.2) answer `bulk N\n` with N bytes; `bulk-inspect` and
 * `bulk12-inspect` are the same servers on ports of their own, which ca-proxy's config routes
 * to the `inspect` action (rules match the destination port). All require a client certificate issued by
 * `clientCaPath` (as the servers ca-proxy is built for do). The client closes once it has the
 * answer (as an HTTP/1.1 keep-alive client would), so no measurement includes the teardown.
 */
async function runServers(spec: Extract<RoleSpec, { role: 'servers' }>): Promise<{ ports: Ports; close(): void }> {
  const cert = fs.readFileSync(spec.certPath, 'utf8') + fs.readFileSync(spec.chainPath, 'utf8');
  const key = fs.readFileSync(spec.keyPath);
  const ca = fs.readFileSync(spec.clientCaPath);
  const base = { cert, key, ca, requestCert: true, rejectUnauthorized: true };
  const servers: tls.Server[] = [];
  const listen = (srv: tls.Server): Promise<number> =>
    new Promise((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => resolve((srv.address() as net.AddressInfo).port));
      servers.push(srv);
    });
  /** Calls `fn` with the first request line; closes connections that send more than 1 KiB without one. */
  const onLine = (s: tls.TLSSocket, fn: (line: string) => void): void => {
    let got = '';
    s.on('error', () => undefined);
    s.setNoDelay(true);
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      const nl = got.indexOf('\n');
      if (nl >= 0) {
        s.removeAllListeners('data');
        fn(got.slice(0, nl));
      } else if (got.length > 1024) s.destroy();
    });
  };
  const ping = (version: tls.SecureVersion): tls.Server =>
    tls.createServer({ ...base, minVersion: version, maxVersion: version }, (s) => onLine(s, (line) => (line === 'ping' ? s.write('pong\n') : s.destroy())));
  const bulk = (version: tls.SecureVersion): tls.Server =>
    tls.createServer({ ...base, minVersion: version, maxVersion: version }, (s) =>
      onLine(s, (line) => {
        const m = /^bulk (\d+)$/.exec(line);
        if (!m) return s.destroy();
        let left = Number(m[1]);
        const block = Buffer.alloc(BULK_CHUNK, 0x61);
        const pump = (): void => {
          while (left > 0) {
            const n = Math.min(left, BULK_CHUNK);
            left -= n;
            if (!s.write(n === BULK_CHUNK ? block : block.subarray(0, n))) return void s.once('drain', pump);
          }
        };
        pump();
      }),
    );
  const ports: Ports = {
    'tls1.2': await listen(ping('TLSv1.2')),
    'tls1.3': await listen(ping('TLSv1.3')),
    bulk: await listen(bulk('TLSv1.3')),
    bulk12: await listen(bulk('TLSv1.2')),
    'bulk-inspect': await listen(bulk('TLSv1.3')),
    'bulk12-inspect': await listen(bulk('TLSv1.2')),
  };
  return { ports, close: () => servers.forEach((s) => s.close()) };
}

/** ca-proxy through cmd/ca-proxy/runtime.ts; its decision log (one JSON line each) is written and discarded. */
async function runProxy(spec: Extract<RoleSpec, { role: 'proxy' }>): Promise<{ ports: Ports; close(): Promise<void> }> {
  const { createRuntime } = await import('../cmd/ca-proxy/runtime');
  const { createLogger } = await import('../internal/metrics/report');
  const discard = new Writable({ write: (_c, _e, cb) => cb() });
  const rt = await createRuntime(spec.config, { logger: createLogger('info', discard) });
  return { ports: { connect: rt.connect!.address.port }, close: () => rt.close() };
}

/** Dials `host`:`port` and, once connected (after `onUp`), pipes `down` ⇄ upstream both ways. */
function pipeTo(down: net.Socket, host: string, port: number, onUp: (up: net.Socket) => void = () => undefined): void {
  const up = net.connect({ host, port }, () => {
    up.setNoDelay(true);
    onUp(up);
    down.pipe(up);
    up.pipe(down);
    down.resume();
  });
  up.on('error', () => down.destroy());
  down.on('close', () => up.destroy());
  up.on('close', () => down.destroySoon());
}

/**
 * The floor: a minimal relay that copies bytes with `pipe` (no TLS, no parsing after the request
 * head). With `target`, every connection goes to 127.0.0.1:`target` at once (a plain TCP relay,
 * as HAProxy `mode tcp`); otherwise it reads an HTTP CONNECT head first. `localhost` is dialled as
 * 127.0.0.1, as ca-proxy does.
 */
async function runRelay(target?: number): Promise<{ ports: Ports; close(): void }> {
  const server = net.createServer((down) => {
    down.setNoDelay(true);
    down.on('error', () => undefined);
    if (target !== undefined) {
      down.pause();
      return pipeTo(down, '127.0.0.1', target);
    }
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return void (head.length > 8192 && down.destroy());
      down.off('data', onData);
      down.pause();
      const m = /^CONNECT (\S+):(\d+) HTTP\/1\.[01]\r\n/.exec(head.toString('latin1'));
      if (!m) return void down.end('HTTP/1.1 400 Bad Request\r\n\r\n');
      const host = /(^|\.)localhost$/i.test(m[1]!) ? '127.0.0.1' : m[1]!;
      pipeTo(down, host, Number(m[2]), (up) => {
        down.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        const rest = head.subarray(end + 4);
        if (rest.length) up.write(rest);
      });
    };
    down.on('data', onData);
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
  return { ports: { relay: port }, close: () => server.close() };
}

/**
 * The Envoy stand-in (test/support/envoy.ts) in a process of its own: one gRPC stream to
 * ca-proxy's ext_proc service per connection, upstream to 127.0.0.1:`upstreamPort`, the
 * destination named to ca-proxy in the stream's request headers.
 */
async function runStandIn(spec: Extract<RoleSpec, { role: 'standin' }>): Promise<{ ports: Ports; close(): Promise<void> }> {
  const { EnvoyStandIn } = await import('../test/support/envoy');
  const { DESTINATION_ADDRESS_HEADER, DESTINATION_PORT_HEADER } = await import('../internal/extproc/stream');
  const envoy = await EnvoyStandIn.start({
    target: spec.target,
    upstream: { host: '127.0.0.1', port: spec.upstreamPort },
    messageTimeoutMs: spec.messageTimeoutMs,
    initialMetadata: { [DESTINATION_PORT_HEADER]: String(spec.upstreamPort), [DESTINATION_ADDRESS_HEADER]: '127.0.0.1' },
  });
  // The stand-in keeps every connection's record (for tests); a benchmark's thousands are dropped once done.
  const prune = setInterval(() => {
    const open = envoy.connections.filter((c) => c.closedBy === null);
    envoy.connections.length = 0;
    envoy.connections.push(...open);
  }, 1000);
  return {
    ports: { standin: envoy.port },
    close: async () => {
      clearInterval(prune);
      await envoy.close();
    },
  };
}

function childMain(): void {
  process.once('message', async (spec: RoleSpec) => {
    try {
      const peer =
        spec.role === 'servers' ? await runServers(spec) : spec.role === 'proxy' ? await runProxy(spec) : spec.role === 'standin' ? await runStandIn(spec) : await runRelay(spec.target);
      process.on('message', async (m: { stop?: boolean; cpu?: boolean }) => {
        if (m.cpu) return void process.send!({ cpuMs: cpuMsNow() });
        if (!m.stop) return;
        await Promise.race([peer.close(), new Promise((r) => setTimeout(r, 2000))]);
        process.exit(0);
      });
      process.send!({ ports: peer.ports });
    } catch (err) {
      process.send!({ error: (err as Error).stack ?? String(err) });
    }
  });
  // The parent going away (crash, Ctrl-C) ends the child too: nothing is left listening.
  process.on('disconnect', () => process.exit(0));
}

/** `--name N` from the command line, or undefined. */
export function numArg(name: string): number | undefined {
  const args = process.argv.slice(2);
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : undefined;
}

/** Runs a benchmark's CLI body with the bench peers started, stopping them afterwards. */
export function benchCli(body: (peers: BenchPeers) => Promise<void>): void {
  (async () => {
    const peers = await startBenchPeers();
    try {
      await body(peers);
    } finally {
      await peers.close();
    }
  })().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}

if (require.main === module) childMain();
