/**
 * CPU time and memory of a process and everything it started, read from /proc (Linux, proc(5)),
 * so every contender — HAProxy's threads, nginx's master and workers, stunnel's thread per
 * connection, ca-proxy's worker threads — is measured the same way, by the kernel, not by wall time.
 *
 * CPU = utime + stime of the root process (all its threads, live and exited) + cutime + cstime
 * (children it has reaped) + utime + stime of every live descendant. A child that exits between
 * two samples moves from "live descendant" into its parent's cutime, so a difference of two
 * samples counts it once. Resolution: one clock tick (`getconf CLK_TCK`, 100 Hz here = 10 ms);
 * the scenarios measure over seconds of work.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

let tickHz: number | undefined;

/** Clock ticks per second (`getconf CLK_TCK`; 100 on Linux unless it says otherwise). */
export function clockTicks(): number {
  if (tickHz === undefined) {
    try {
      tickHz = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      tickHz = 100;
    }
  }
  return tickHz;
}

interface Stat {
  pid: number;
  ppid: number;
  /** utime, stime, cutime, cstime in clock ticks. */
  utime: number;
  stime: number;
  cutime: number;
  cstime: number;
}

/** /proc/PID/stat (proc(5): the command is in parentheses and may hold spaces); null once gone. */
function readStat(pid: number): Stat | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state): field n of proc(5) is f[n - 3].
  return { pid, ppid: Number(f[1]), utime: Number(f[11]), stime: Number(f[12]), cutime: Number(f[13]), cstime: Number(f[14]) };
}

/** The live descendants of `root` (children, grandchildren, …), by walking every /proc/PID/stat once. */
export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(Number(name));
    if (!s) continue;
    const list = children.get(s.ppid) ?? [];
    list.push(s.pid);
    children.set(s.ppid, list);
  }
  const out: number[] = [];
  const todo = [...(children.get(root) ?? [])];
  while (todo.length) {
    const pid = todo.pop()!;
    out.push(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** CPU seconds (user + system) used so far by `root` and its descendants; NaN if `root` is gone. */
export function treeCpuSeconds(root: number): number {
  const r = readStat(root);
  if (!r) return NaN;
  let ticks = r.utime + r.stime + r.cutime + r.cstime;
  for (const pid of descendants(root)) {
    const s = readStat(pid);
    if (s) ticks += s.utime + s.stime;
  }
  return ticks / clockTicks();
}

/** CPU seconds of several process trees together (e.g. ca-proxy's gRPC service and the Envoy stand-in). */
export function cpuSeconds(roots: number[]): number {
  return roots.reduce((sum, pid) => sum + treeCpuSeconds(pid), 0);
}

/** `VmRSS` and `VmHWM` (peak RSS) of /proc/PID/status, bytes; null once gone. */
function statusMemory(pid: number): { rss: number; hwm: number } | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/**
 * Resident memory of the tree rooted at `roots`, bytes: the sum of every process's VmRSS (what
 * `ps` shows added up; pages shared between an nginx master and its workers count once per
 * process) and the sum of their VmHWM peaks.
 */
export function treeMemory(roots: number[]): { rssBytes: number; peakBytes: number } {
  let rssBytes = 0;
  let peakBytes = 0;
  for (const root of roots) {
    for (const pid of [root, ...descendants(root)]) {
      const m = statusMemory(pid);
      if (!m) continue;
      rssBytes += m.rss;
      peakBytes += m.hwm;
    }
  }
  return { rssBytes, peakBytes };
}
