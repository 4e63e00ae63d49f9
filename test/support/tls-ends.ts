/**
 * Python's ssl (test/support/tls-ends.py) as server and workload for the stream-integrity tests:
 * a second TLS stack that reports how the peer's stream ended — `CLEAN` (close_notify), `RAGGED`
 * (TCP end without close_notify: `ssl.SSLEOFError` under `suppress_ragged_eofs=False`) or `RESET`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { repoRoot } from './root';
import { runCmd } from './world';
import type { LeafHandle } from './pki';

const SCRIPT = path.join(repoRoot(), 'test', 'support', 'tls-ends.py');

/** How a Python peer saw the other side's stream end. */
export type SeenEnd = 'CLEAN' | 'RAGGED' | 'RESET' | string;

/** What the server does after the request line: end cleanly, truncate (FIN, no close_notify), reset; or read the workload's end. */
export type ServerMode = 'clean' | 'truncate' | 'reset' | 'read';

export interface EndsServer {
  port: number;
  /** Resolves with the next "END how bytes" line (a `read` connection's view of the workload's end). */
  nextEnd(ms?: number): Promise<{ how: SeenEnd; bytes: number }>;
  /** Everything the server printed. */
  output(): string;
  stop(): Promise<void>;
}

/** The number of bytes the server sends before it ends a connection (tls-ends.py BODY). */
export const BODY_BYTES = 5000;

export async function startEndsServer(leaf: LeafHandle, chainPath: string, dir: string, opts: { tls12?: boolean } = {}): Promise<EndsServer> {
  const chain = path.join(dir, `${path.basename(leaf.certPath)}.chain.pem`);
  fs.writeFileSync(chain, fs.readFileSync(leaf.certPath, 'latin1') + fs.readFileSync(chainPath, 'latin1'));
  const child = spawn('python3', [SCRIPT, 'server', chain, leaf.keyPath, ...(opts.tls12 ? ['--tls12'] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let consumed = 0;
  let wake: (() => void) | null = null;
  const onData = (d: Buffer) => {
    out += d.toString('latin1');
    wake?.();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const waitFor = async (re: RegExp, ms: number): Promise<RegExpExecArray> => {
    const end = Date.now() + ms;
    for (;;) {
      const m = re.exec(out.slice(consumed));
      if (m) {
        consumed += m.index + m[0].length;
        return m;
      }
      const left = end - Date.now();
      if (left <= 0 || child.exitCode !== null) throw new Error(`tls-ends server: no ${re} within ${ms} ms; output:\n${out}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        wake = () => (clearTimeout(t), r());
      });
    }
  };
  const port = Number((await waitFor(/PORT (\d+)\n/, 10_000))[1]);
  return {
    port,
    nextEnd: async (ms = 10_000) => {
      const m = await waitFor(/END (\S+) (\d+)\n/, ms);
      return { how: m[1]!, bytes: Number(m[2]) };
    },
    output: () => out,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  };
}

export interface ClientSeen {
  /** The server's stream as the workload saw it (server modes). */
  end?: SeenEnd;
  bytes?: number;
  /** `read` mode: how the workload ended its own stream. */
  sent?: string;
  /** Set when the CONNECT or the handshake failed. */
  connect?: string;
  handshake?: string;
}

/**
 * Runs the Python workload: through the CONNECT listener (`via.proxy` + `via.target`) or straight
 * to a TLS front door (`via.direct`: the SNI listener, the Envoy stand-in).
 */
export async function runEndsClient(
  via: { proxy: string; target: string } | { direct: string },
  opts: { servername: string; cafile: string; mode: ServerMode; end?: 'clean' | 'truncate' },
): Promise<ClientSeen> {
  const where = 'direct' in via ? ['--direct', via.direct] : ['--proxy', via.proxy, '--target', via.target];
  const res = await runCmd('python3', [SCRIPT, 'client', ...where, '--servername', opts.servername, '--cafile', opts.cafile, '--mode', opts.mode, '--end', opts.end ?? 'clean'], { ms: 20_000 });
  const line = res.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as ClientSeen;
  } catch {
    throw new Error(`tls-ends client printed no result (exit ${res.code}): ${res.stdout}\n${res.stderr}`);
  }
}

/**
 * GnuTLS (`gnutls-cli`, an independent TLS stack) as the workload, straight to a TLS front door:
 * sends the mode line and keeps stdin open until the server's end closes the session. Resolves
 * with everything it printed: "Peer has closed the GnuTLS connection" after a close_notify,
 * "The TLS connection was non-properly terminated" after a TCP end without one.
 */
export function runGnutlsCli(port: number, opts: { servername: string; cafile: string; mode: ServerMode; ms?: number }): Promise<string> {
  return new Promise((resolve) => {
    const args = ['-p', String(port), '--x509cafile', opts.cafile, '--sni-hostname', opts.servername, '--verify-hostname', opts.servername, '127.0.0.1'];
    const child = spawn('gnutls-cli', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
    child.stderr.on('data', (d: Buffer) => (out += d.toString('latin1')));
    child.stdin.on('error', () => undefined);
    child.stdin.write(`MODE ${opts.mode}\n`);
    const t = setTimeout(() => child.kill('SIGKILL'), opts.ms ?? 15_000);
    child.on('close', () => {
      clearTimeout(t);
      resolve(out);
    });
  });
}
