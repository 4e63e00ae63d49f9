/**
 * The contenders of the side-by-side benchmark, each started as its own process(es) on loopback,
 * configured for the same job:
 *
 * - **split** (the job ca-proxy exists for): terminate the workload's TLS with a certificate for
 *   the SNI, originate mutual TLS to the server with the proxy identity, verify the server's chain
 *   (to the root, host name `localhost`) with the CRLs of every CA in it. TLS 1.3 (or the
 *   scenario's version) on both sides; ECDSA P-256 keys; no session reuse on either side unless
 *   the scenario turns upstream resumption on.
 *   HAProxy 2.6 (`bind … ssl crt` / `server … ssl crt … ca-file … crl-file … verify required`),
 *   nginx (stream module: `listen … ssl` / `proxy_ssl_*`), stunnel (two services in one process:
 *   server mode → loopback → client mode, the way stunnel originates TLS after terminating it),
 *   ca-proxy (`ca-proxy run`, SNI listener, intercept) and ca-proxy's gRPC ext_proc service
 *   (`ca-proxy serve-extproc`) behind the Envoy stand-in (test/support/envoy.ts: **not Envoy**).
 * - **relay**: the workload's TLS goes end to end to the server (the client presents the
 *   identity itself): a plain TCP relay (HAProxy `mode tcp`, a Node `pipe`) or ca-proxy `inspect`.
 * - **direct**: the client talks to the server itself (the baseline).
 *
 * Each contender runs with its own multi-core default: HAProxy `nbthread` = CPUs, nginx
 * `worker_processes auto`, stunnel a thread per connection, ca-proxy `workers: auto` (a worker
 * process per CPU, each one event loop plus its CRL worker thread). Only ca-proxy writes a log line per connection (its decision record, to a file);
 * the others are configured without per-connection logs.
 */
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../test/support/root';
import { startPeer, type Peer } from '../support';
import { NGINX_STREAM_MODULE } from './packages';
import type { BenchPki } from './pki';
import { freePort, startProcess, waitForPort, type Proc } from './processes';
import type { Target } from './tlsbench';

export type ContenderName = 'direct' | 'haproxy' | 'nginx' | 'stunnel' | 'ca-proxy' | 'ca-proxy-extproc' | 'tcp-relay-node' | 'tcp-relay-haproxy' | 'ca-proxy-inspect';

export const LABELS: Record<ContenderName, string> = {
  direct: 'direct',
  haproxy: 'HAProxy',
  nginx: 'nginx',
  stunnel: 'stunnel',
  'ca-proxy': 'ca-proxy',
  'ca-proxy-extproc': 'ca-proxy ext_proc (Envoy stand-in)',
  'tcp-relay-node': 'TCP relay (Node pipe)',
  'tcp-relay-haproxy': 'TCP relay (HAProxy mode tcp)',
  'ca-proxy-inspect': 'ca-proxy inspect',
};

/** Which Debian tool (bench/compare/packages.ts) a contender needs, if any. */
export const NEEDS: Partial<Record<ContenderName, 'haproxy' | 'nginx' | 'stunnel'>> = {
  haproxy: 'haproxy',
  nginx: 'nginx',
  stunnel: 'stunnel',
  'tcp-relay-haproxy': 'haproxy',
};

export interface Upstream {
  port: number;
  tls: '1.2' | '1.3';
}

export interface StartOptions {
  pki: BenchPki;
  upstream: Upstream;
  /** Scratch folder for configuration and log files. */
  dir: string;
  /** Let the proxy resume its upstream TLS sessions (HAProxy's default, nginx `proxy_ssl_session_reuse on`, stunnel `sessionResume yes`). */
  upstreamResumption?: boolean;
  /** ca-proxy: override `revocation.crlPaths` / watch them (CRL scale). */
  crlPaths?: string[];
  watchCrls?: boolean;
  /** ca-proxy: a CRL signer beside the intermediate (CRL scale). */
  extraCrlSigners?: string[];
}

export interface Running {
  name: ContenderName;
  label: string;
  /** Where the load generator connects, what it trusts and presents. */
  target: Target;
  /** Roots of the process trees whose CPU and memory count as "the proxy". */
  pids: number[];
  /** ca-proxy's admin address (`http://127.0.0.1:PORT`), for /metrics and /readyz. */
  adminUrl?: string;
  /** Pids of helpers that are not the proxy but are on its path (the Envoy stand-in), reported apart. */
  helperPids?: number[];
  /** Whether the contender resumes upstream sessions in this run (false where it cannot). */
  upstreamResumption: boolean;
  stop(): Promise<void>;
}

const tlsVersion = (v: '1.2' | '1.3'): string => `TLSv${v}`;

/** The target of a client that talks TLS end to end with the server (direct, relays, inspect). */
function endToEnd(pki: BenchPki, port: number, tls: '1.2' | '1.3'): Target {
  return { port, ca: pki.serverRoot, cert: pki.identityCert, key: pki.identityKey, tls };
}

/** The target of a client of a split-TLS proxy: it trusts the interception CA and presents nothing. */
function splitTarget(pki: BenchPki, port: number, tls: '1.2' | '1.3'): Target {
  return { port, ca: pki.interceptionCa, tls };
}

function fromProcs(name: ContenderName, target: Target, procs: Proc[], extra: Partial<Running> = {}): Running {
  return {
    name,
    label: LABELS[name],
    target,
    pids: procs.map((p) => p.pid),
    upstreamResumption: false,
    stop: async () => {
      await Promise.all(procs.map((p) => p.stop()));
    },
    ...extra,
  };
}

// ---- HAProxy ------------------------------------------------------------------------------------

export function haproxyConfig(o: StartOptions, port: number, split: boolean): string {
  const { pki, upstream } = o;
  const v = tlsVersion(upstream.tls);
  const lines = [
    'global',
    '    maxconn 8000',
    // No downstream session cache: every workload connection is a full handshake anyway.
    '    tune.ssl.cachesize 0',
    '    ssl-server-verify required',
    'defaults',
    '    mode tcp',
    '    timeout connect 5s',
    '    timeout client 300s',
    '    timeout server 300s',
    'frontend bench',
    split ? `    bind 127.0.0.1:${port} ssl crt ${pki.sniBundle} ssl-min-ver ${v} ssl-max-ver ${v} no-tls-tickets` : `    bind 127.0.0.1:${port}`,
    '    default_backend upstream',
    'backend upstream',
    split
      ? `    server s1 127.0.0.1:${upstream.port} ssl crt ${pki.identityBundle} ca-file ${pki.serverRoot} crl-file ${pki.crlBundle} verify required verifyhost localhost sni str(localhost) ssl-min-ver ${v} ssl-max-ver ${v}${o.upstreamResumption ? '' : ' no-ssl-reuse'}`
      : `    server s1 127.0.0.1:${upstream.port}`,
    '',
  ];
  return lines.join('\n');
}

async function startHaproxy(o: StartOptions, split: boolean): Promise<Running> {
  const port = await freePort();
  const cfg = path.join(o.dir, `haproxy-${split ? 'split' : 'tcp'}-${port}.cfg`);
  fs.writeFileSync(cfg, haproxyConfig(o, port, split));
  const proc = startProcess('haproxy', 'haproxy', ['-db', '-f', cfg]);
  await waitForPort(port, proc);
  const name = split ? 'haproxy' : 'tcp-relay-haproxy';
  const target = split ? splitTarget(o.pki, port, o.upstream.tls) : endToEnd(o.pki, port, o.upstream.tls);
  return fromProcs(name, target, [proc], { upstreamResumption: split && !!o.upstreamResumption });
}

// ---- nginx --------------------------------------------------------------------------------------

export function nginxConfig(o: StartOptions, port: number, dir: string): string {
  const { pki, upstream } = o;
  const v = tlsVersion(upstream.tls);
  return [
    'daemon off;',
    'master_process on;',
    'worker_processes auto;',
    'worker_rlimit_nofile 65536;',
    `pid ${path.join(dir, 'nginx.pid')};`,
    `error_log ${path.join(dir, 'nginx-error.log')} warn;`,
    `load_module ${NGINX_STREAM_MODULE};`,
    'events { worker_connections 16384; }',
    'stream {',
    '    server {',
    `        listen 127.0.0.1:${port} ssl;`,
    `        ssl_certificate ${pki.sniChain};`,
    `        ssl_certificate_key ${pki.sniKey};`,
    `        ssl_protocols ${v};`,
    '        ssl_session_cache off;',
    '        ssl_session_tickets off;',
    `        proxy_pass 127.0.0.1:${upstream.port};`,
    '        proxy_ssl on;',
    `        proxy_ssl_protocols ${v};`,
    `        proxy_ssl_certificate ${pki.identityCert};`,
    `        proxy_ssl_certificate_key ${pki.identityKey};`,
    `        proxy_ssl_trusted_certificate ${pki.serverRoot};`,
    '        proxy_ssl_verify on;',
    '        proxy_ssl_verify_depth 4;',
    `        proxy_ssl_crl ${pki.crlBundle};`,
    '        proxy_ssl_server_name on;',
    '        proxy_ssl_name localhost;',
    `        proxy_ssl_session_reuse ${o.upstreamResumption ? 'on' : 'off'};`,
    '        proxy_timeout 300s;',
    '    }',
    '}',
    '',
  ].join('\n');
}

async function startNginx(o: StartOptions): Promise<Running> {
  const port = await freePort();
  const dir = path.join(o.dir, `nginx-${port}`);
  fs.mkdirSync(dir, { recursive: true });
  const cfg = path.join(dir, 'nginx.conf');
  fs.writeFileSync(cfg, nginxConfig(o, port, dir));
  const proc = startProcess('nginx', 'nginx', ['-p', dir, '-c', cfg, '-e', path.join(dir, 'nginx-error.log')]);
  await waitForPort(port, proc);
  return fromProcs('nginx', splitTarget(o.pki, port, o.upstream.tls), [proc], { upstreamResumption: !!o.upstreamResumption });
}

// ---- stunnel ------------------------------------------------------------------------------------

export function stunnelConfig(o: StartOptions, port: number, mid: number): string {
  const { pki, upstream } = o;
  const v = tlsVersion(upstream.tls);
  return [
    'foreground = yes',
    'pid =',
    'debug = 3',
    '[workload]',
    `accept = 127.0.0.1:${port}`,
    `cert = ${pki.sniChain}`,
    `key = ${pki.sniKey}`,
    `sslVersionMin = ${v}`,
    `sslVersionMax = ${v}`,
    'options = NO_TICKET',
    'socket = l:TCP_NODELAY=1',
    'socket = r:TCP_NODELAY=1',
    `connect = 127.0.0.1:${mid}`,
    '[upstream]',
    'client = yes',
    `accept = 127.0.0.1:${mid}`,
    `connect = 127.0.0.1:${upstream.port}`,
    `cert = ${pki.identityCert}`,
    `key = ${pki.identityKey}`,
    `CAfile = ${pki.serverRoot}`,
    `CRLfile = ${pki.crlBundle}`,
    'verifyChain = yes',
    'checkHost = localhost',
    'sni = localhost',
    `sslVersionMin = ${v}`,
    `sslVersionMax = ${v}`,
    `sessionResume = ${o.upstreamResumption ? 'yes' : 'no'}`,
    'socket = l:TCP_NODELAY=1',
    'socket = r:TCP_NODELAY=1',
    '',
  ].join('\n');
}

async function startStunnel(o: StartOptions): Promise<Running> {
  const port = await freePort();
  const mid = await freePort();
  const cfg = path.join(o.dir, `stunnel-${port}.conf`);
  fs.writeFileSync(cfg, stunnelConfig(o, port, mid));
  const proc = startProcess('stunnel', 'stunnel4', [cfg]);
  await waitForPort(port, proc);
  await waitForPort(mid, proc);
  return fromProcs('stunnel', splitTarget(o.pki, port, o.upstream.tls), [proc], { upstreamResumption: !!o.upstreamResumption });
}

// ---- ca-proxy -----------------------------------------------------------------------------------

/** The YAML (as JSON, which YAML reads) of `ca-proxy run` / `serve-extproc` for the job. */
export function caProxyConfig(o: StartOptions, listen: { sni?: string; extproc?: string; admin: string }, action: 'intercept' | 'inspect'): string {
  const { pki, upstream } = o;
  const config = {
    // serve-extproc opens neither listener, but the schema wants one named.
    listen: { connect: listen.sni ? null : '127.0.0.1:0', sni: listen.sni ?? null, sniUpstreamPort: upstream.port },
    admin: listen.admin,
    interceptionCA: { cert: pki.interceptionCa, key: pki.world.interceptionCA.keyPath },
    trust: { caFiles: [pki.serverRoot], systemRoots: false },
    revocation: { crlPaths: o.crlPaths ?? [pki.crlDir], crlSigners: [pki.intermediate, ...(o.extraCrlSigners ?? [])], watch: !!o.watchCrls },
    identities: [{ name: 'upstream', cert: pki.identityCert, key: pki.identityKey }],
    // Every contender's upstream is on loopback, which the destination policy refuses by default.
    destinations: { allow: ['127.0.0.0/8'], deny: [] },
    limits: { handshakeTimeoutMs: 30000, maxConnectionsPerSource: 100000 },
    defaults: { action, identity: 'upstream', revocation: 'hardFail', clientAuth: 'none', ...(action === 'inspect' ? { tls13: 'allowUnchecked' } : {}) },
    log: { level: 'info' },
    ...(listen.extproc ? { extproc: { listen: listen.extproc } } : {}),
  };
  return JSON.stringify(config, null, 2) + '\n';
}

function caProxyCli(): string {
  return path.join(repoRoot(), 'dist', 'cmd', 'ca-proxy', 'main.js');
}

/** GET `url` until it answers 200 (ca-proxy's /readyz); rejects after `ms` or when `proc` exits. */
async function waitReady(url: string, proc: Proc, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (proc.child.exitCode !== null) throw new Error(`${proc.name} exited: ${proc.output().trim().slice(-2000)}`);
    const ok = await fetch(url).then((r) => r.ok, () => false);
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${proc.name}: ${url} not ready within ${ms} ms:\n${proc.output().trim().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function startCaProxy(o: StartOptions, action: 'intercept' | 'inspect'): Promise<Running> {
  const port = await freePort();
  const admin = await freePort();
  const cfg = path.join(o.dir, `ca-proxy-${port}.yaml`);
  fs.writeFileSync(cfg, caProxyConfig(o, { sni: `127.0.0.1:${port}`, admin: `127.0.0.1:${admin}` }, action));
  const log = path.join(o.dir, `ca-proxy-${port}.log`);
  const proc = startProcess('ca-proxy run', process.execPath, [caProxyCli(), 'run', '--config', cfg], { logFile: log });
  await waitForPort(port, proc, 120_000);
  await waitReady(`http://127.0.0.1:${admin}/readyz`, proc);
  const name = action === 'inspect' ? 'ca-proxy-inspect' : 'ca-proxy';
  const target = action === 'inspect' ? endToEnd(o.pki, port, o.upstream.tls) : splitTarget(o.pki, port, o.upstream.tls);
  return fromProcs(name, target, [proc], { adminUrl: `http://127.0.0.1:${admin}` });
}

/** `ca-proxy serve-extproc` and, in front of it, the Envoy stand-in in a process of its own. */
async function startCaProxyExtproc(o: StartOptions): Promise<Running> {
  const grpcPort = await freePort();
  const admin = await freePort();
  const cfg = path.join(o.dir, `ca-proxy-extproc-${grpcPort}.yaml`);
  fs.writeFileSync(cfg, caProxyConfig(o, { extproc: `127.0.0.1:${grpcPort}`, admin: `127.0.0.1:${admin}` }, 'intercept'));
  const proc = startProcess('ca-proxy serve-extproc', process.execPath, [caProxyCli(), 'serve-extproc', '--config', cfg], { logFile: path.join(o.dir, `ca-proxy-extproc-${grpcPort}.log`) });
  let standIn: Peer | null = null;
  try {
    await waitForPort(grpcPort, proc, 120_000);
    await waitReady(`http://127.0.0.1:${admin}/readyz`, proc);
    // Envoy's message_timeout default is 200 ms; 2 s keeps a busy shared machine from failing transfers.
    standIn = await startPeer({ role: 'standin', target: `127.0.0.1:${grpcPort}`, upstreamPort: o.upstream.port, messageTimeoutMs: 2000 });
  } catch (err) {
    await proc.stop();
    throw err;
  }
  const peer = standIn;
  return {
    name: 'ca-proxy-extproc',
    label: LABELS['ca-proxy-extproc'],
    target: splitTarget(o.pki, peer.ports.standin!, o.upstream.tls),
    pids: [proc.pid],
    helperPids: [peer.pid],
    adminUrl: `http://127.0.0.1:${admin}`,
    upstreamResumption: false,
    stop: async () => {
      await Promise.all([peer.stop(), proc.stop()]);
    },
  };
}

// ---- relays and direct --------------------------------------------------------------------------

async function startNodeRelay(o: StartOptions): Promise<Running> {
  const peer = await startPeer({ role: 'relay', target: o.upstream.port });
  return {
    name: 'tcp-relay-node',
    label: LABELS['tcp-relay-node'],
    target: endToEnd(o.pki, peer.ports.relay!, o.upstream.tls),
    pids: [peer.pid],
    upstreamResumption: false,
    stop: () => peer.stop(),
  };
}

function direct(o: StartOptions): Running {
  return { name: 'direct', label: LABELS.direct, target: endToEnd(o.pki, o.upstream.port, o.upstream.tls), pids: [], upstreamResumption: false, stop: async () => undefined };
}

/** Starts `name` for the job against `o.upstream`; resolves once it accepts connections. */
export async function startContender(name: ContenderName, o: StartOptions): Promise<Running> {
  switch (name) {
    case 'direct':
      return direct(o);
    case 'haproxy':
      return startHaproxy(o, true);
    case 'tcp-relay-haproxy':
      return startHaproxy(o, false);
    case 'nginx':
      return startNginx(o);
    case 'stunnel':
      return startStunnel(o);
    case 'ca-proxy':
      return startCaProxy(o, 'intercept');
    case 'ca-proxy-inspect':
      return startCaProxy(o, 'inspect');
    case 'ca-proxy-extproc':
      return startCaProxyExtproc(o);
    case 'tcp-relay-node':
      return startNodeRelay(o);
  }
}
