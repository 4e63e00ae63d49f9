/**
 * Every process the side-by-side benchmark starts goes through `startProcess`, which keeps a list,
 * so that everything is stopped on the way out — normal end, an exception, Ctrl-C (SIGINT),
 * SIGTERM, or the watchdog — by pid: SIGTERM, then SIGKILL to the process group after a grace
 * period. Children are started in a process group of their own (`detached`) so a contender's
 * workers go with it.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';

export interface Proc {
  name: string;
  pid: number;
  child: ChildProcess;
  /** Resolves with the exit code (or signal) once the process has exited. */
  exited: Promise<string>;
  /** Output collected so far (stdout + stderr, when piped), for error messages. */
  output(): string;
  /** SIGTERM, then SIGKILL to its process group after `graceMs` (default 3000). */
  stop(graceMs?: number): Promise<void>;
}

const running = new Set<Proc>();

/** Starts `cmd args`; output goes to `logFile` when given, else it is collected (last 64 KiB). */
export function startProcess(name: string, cmd: string, args: string[], opts: SpawnOptions & { logFile?: string } = {}): Proc {
  const { logFile, ...spawnOpts } = opts;
  const fd = logFile ? fs.openSync(logFile, 'a') : null;
  const child = spawn(cmd, args, { detached: true, stdio: ['ignore', fd ?? 'pipe', fd ?? 'pipe'], ...spawnOpts });
  if (fd !== null) fs.closeSync(fd);
  let out = '';
  const collect = (d: Buffer): void => {
    out = (out + d.toString('latin1')).slice(-65536);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => resolve(signal ? `signal ${signal}` : `exit code ${code}`));
    child.once('error', (err) => resolve(`failed to start: ${err.message}`));
  });
  const proc: Proc = {
    name,
    pid: child.pid ?? -1,
    child,
    exited,
    output: () => out + (logFile && fs.existsSync(logFile) ? fs.readFileSync(logFile, 'latin1').slice(-4096) : ''),
    stop: async (graceMs = 3000) => {
      running.delete(proc);
      if (child.exitCode !== null || child.signalCode !== null || proc.pid < 0) return;
      try {
        process.kill(proc.pid, 'SIGTERM');
      } catch {
        return;
      }
      const t = setTimeout(() => killGroup(proc.pid), graceMs);
      await exited;
      clearTimeout(t);
      killGroup(proc.pid); // leftovers of its group (workers that outlive their master)
    },
  };
  running.add(proc);
  void exited.then(() => running.delete(proc));
  return proc;
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Stops every process still running (newest first). */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].reverse().map((p) => p.stop(1500)));
}

/** Synchronous last resort for `process.on('exit')`: SIGKILL every group still listed. */
export function killAllNow(): void {
  for (const p of running) killGroup(p.pid);
  running.clear();
}

/**
 * Stops everything on SIGINT/SIGTERM (then exits 130/143) and on exit. Returns a function that
 * removes the handlers.
 */
export function stopOnSignals(log: (line: string) => void): () => void {
  const handler = (signal: NodeJS.Signals): void => {
    log(`\n${signal}: stopping everything the benchmark started ...`);
    void stopAll().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  process.on('exit', killAllNow);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
    process.off('exit', killAllNow);
  };
}

/** A TCP port that was free a moment ago on 127.0.0.1 (for programs that need a port in their config). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Resolves once 127.0.0.1:`port` accepts a TCP connection; rejects after `ms`, or when `proc`
 * exits first, with its output.
 */
export async function waitForPort(port: number, proc: Proc, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  let gone: string | null = null;
  void proc.exited.then((how) => (gone = how));
  for (;;) {
    if (gone) throw new Error(`${proc.name} ${gone} before it listened on ${port}:\n${proc.output().trim().slice(-2000)}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${proc.name} did not listen on ${port} within ${ms} ms:\n${proc.output().trim().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
