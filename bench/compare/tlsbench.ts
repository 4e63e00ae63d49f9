/**
 * The C load generator and upstream server (bench/tlsbench.c): compiled at bench time against the
 * system OpenSSL, run as child processes, results read as JSON from their standard output.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../test/support/root';
import { startProcess, type Proc } from './processes';

/** The compiled program (under dist/, rebuilt when bench/tlsbench.c is newer). */
export function tlsbenchPath(): string {
  return path.join(repoRoot(), 'dist', 'bench', 'tlsbench');
}

/** Compiles bench/tlsbench.c if the binary is missing or older than the source; returns its path. Throws with the compiler's output. */
export function buildTlsbench(): string {
  const src = path.join(repoRoot(), 'bench', 'tlsbench.c');
  const bin = tlsbenchPath();
  if (fs.existsSync(bin) && fs.statSync(bin).mtimeMs >= fs.statSync(src).mtimeMs) return bin;
  fs.mkdirSync(path.dirname(bin), { recursive: true });
  try {
    execFileSync('cc', ['-O2', '-Wall', '-o', bin, src, '-lssl', '-lcrypto', '-lpthread'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`cannot compile bench/tlsbench.c (needs cc and libssl-dev): ${e.stderr || e.message}`);
  }
  return bin;
}

/** Where a client connects and what it presents and trusts. */
export interface Target {
  port: number;
  /** Trust anchor for the certificate the client receives. */
  ca: string;
  /** Client certificate (direct connections and inspect present the proxy identity themselves). */
  cert?: string;
  key?: string;
  tls?: '1.2' | '1.3';
}

export interface HandshakeRun {
  ok: number;
  errors: number;
  firstError: string;
  elapsedS: number;
  protocol: string;
  cipher: string;
  /** Connect → answer, ms, of each successful connection in order. */
  latMs: number[];
}

export interface BulkRun {
  ok: number;
  errors: number;
  firstError: string;
  bytesPerConnection: number;
  /** First request → last byte, s. */
  elapsedS: number;
  protocol: string;
  cipher: string;
}

function clientArgs(t: Target, sni: string): string[] {
  return ['client', '--port', String(t.port), '--sni', sni, '--ca', t.ca, ...(t.cert ? ['--cert', t.cert, '--key', t.key!] : []), '--tls', t.tls ?? '1.3'];
}

/** Runs the client to completion and parses its JSON; rejects on a non-zero exit or after `timeoutMs`. */
function runClient<T>(args: string[], timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(tlsbenchPath(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('close', (code, signal) => {
      clearTimeout(t);
      if (code !== 0) return reject(new Error(`tlsbench ${args.slice(-3).join(' ')}: ${signal ? `killed (${signal}) after ${timeoutMs} ms` : `exit ${code}`} ${err.trim()}`));
      try {
        resolve(JSON.parse(out) as T);
      } catch {
        reject(new Error(`tlsbench: unreadable output: ${out.slice(0, 200)}`));
      }
    });
  });
}

interface RawHs {
  ok: number;
  errors: number;
  first_error: string;
  elapsed_s: number;
  protocol: string;
  cipher: string;
  lat_ms: number[];
}

/** `count` full handshakes, `concurrency` at a time (default 1), optionally at a fixed `rate` per second. */
export async function handshakes(t: Target, sni: string, count: number, o: { concurrency?: number; rate?: number; timeoutMs?: number } = {}): Promise<HandshakeRun> {
  const args = [...clientArgs(t, sni), 'hs', String(count), '--concurrency', String(o.concurrency ?? 1), ...(o.rate ? ['--rate', String(o.rate)] : [])];
  const r = await runClient<RawHs>(args, o.timeoutMs ?? 120_000 + count * 100);
  return { ok: r.ok, errors: r.errors, firstError: r.first_error, elapsedS: r.elapsed_s, protocol: r.protocol, cipher: r.cipher, latMs: r.lat_ms };
}

/** `parallel` connections each receiving `bytesPerConnection` from the server, all at once. */
export async function bulk(t: Target, sni: string, bytesPerConnection: number, parallel: number, timeoutMs = 300_000): Promise<BulkRun> {
  const r = await runClient<{ ok: number; errors: number; first_error: string; bytes_per_connection: number; elapsed_s: number; protocol: string; cipher: string }>(
    [...clientArgs(t, sni), 'bulk', String(bytesPerConnection), '--parallel', String(parallel)],
    timeoutMs,
  );
  return { ok: r.ok, errors: r.errors, firstError: r.first_error, bytesPerConnection: r.bytes_per_connection, elapsedS: r.elapsed_s, protocol: r.protocol, cipher: r.cipher };
}

export interface Held {
  ok: number;
  errors: number;
  firstError: string;
  /** Closes the held connections and waits for the client to exit. */
  release(): Promise<void>;
}

/** Opens `count` connections (each answers a ping) and holds them until `release()`. */
export function hold(t: Target, sni: string, count: number, timeoutMs = 180_000): Promise<Held> {
  return new Promise((resolve, reject) => {
    const child = spawn(tlsbenchPath(), [...clientArgs(t, sni), 'hold', String(count)], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const t0 = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const closed = new Promise<void>((r) => child.once('close', () => r()));
    child.stderr.on('data', (d) => (err += d));
    child.stdout.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(t0);
      const r = JSON.parse(out.slice(0, nl)) as { ok: number; errors: number; first_error: string };
      resolve({
        ok: r.ok,
        errors: r.errors,
        firstError: r.first_error,
        release: async () => {
          child.stdin.end();
          const k = setTimeout(() => child.kill('SIGKILL'), 30_000);
          await closed;
          clearTimeout(k);
        },
      });
    });
    void closed.then(() => {
      clearTimeout(t0);
      if (!out.includes('\n')) reject(new Error(`tlsbench hold: exited before holding: ${err.trim()}`));
    });
  });
}

/** Starts `tlsbench server` (thread per connection) on `port`; resolves once it listens. */
export async function startTlsbenchServer(o: { port: number; cert: string; key: string; clientCa: string; tls?: '1.2' | '1.3'; tickets?: boolean }): Promise<Proc> {
  const proc = startProcess('tlsbench server', tlsbenchPath(), [
    'server', '--port', String(o.port), '--cert', o.cert, '--key', o.key, '--client-ca', o.clientCa, '--tls', o.tls ?? '1.3', ...(o.tickets ? ['--tickets'] : []),
  ]);
  const deadline = Date.now() + 10_000;
  while (!/listening \d+/.test(proc.output())) {
    if (proc.child.exitCode !== null || Date.now() > deadline) throw new Error(`tlsbench server did not start: ${proc.output().trim()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return proc;
}
