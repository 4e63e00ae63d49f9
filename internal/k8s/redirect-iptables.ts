/**
 * The iptables backends as `ca-proxy redirect` drives them: finding the binaries, reading a table
 * (`*-save`), writing one transaction (`*-restore --noflush`), and choosing nft or legacy.
 *
 * Binaries, per mode and family: `iptables-nft-save`/`-restore` and `ip6tables-nft-*` (or, failing
 * those, the unsuffixed `iptables-save` when its `--version` says `nf_tables`); likewise
 * `*-legacy-*` (or an unsuffixed binary without `nf_tables`). Debian's `iptables` package ships all
 * of them. Only `PATH` is searched.
 *
 * Failures are `RedirectError`s whose message says what to do: binary missing (install iptables),
 * no CAP_NET_ADMIN (the init container's securityContext), kernel without the table, anything else
 * with the tool's own stderr.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { foreignRules, hasOurs, parseNatSave, type Family } from './redirect-plan';

export type Mode = 'nft' | 'legacy';

export class RedirectError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RedirectError';
  }
}

/** The two binaries for one (mode, family). */
export interface Tools {
  mode: Mode;
  family: Family;
  save: string;
  restore: string;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program with stdin; never throws for a non-zero exit (ENOENT and the like do throw). */
export type Runner = (file: string, args: string[], stdin?: string) => Promise<RunResult>;

/** Time allowed for one iptables invocation (a legacy one may wait for the xtables lock). */
const RUN_TIMEOUT_MS = 30_000;

export const runProgram: Runner = (file, args, stdin) =>
  new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], timeout: RUN_TIMEOUT_MS, killSignal: 'SIGKILL' });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr: signal ? `${stderr}killed by ${signal} after ${RUN_TIMEOUT_MS} ms` : stderr }));
    child.stdin.on('error', () => undefined); // a tool that exits before reading; its exit code says why
    child.stdin.end(stdin ?? '');
  });

/** The first executable named `name` on PATH, or null. */
export function which(name: string, pathVar = process.env.PATH ?? ''): string | null {
  for (const dir of pathVar.split(path.delimiter)) {
    if (!dir) continue;
    const file = path.join(dir, name);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      if (fs.statSync(file).isFile()) return file;
    } catch {
      // not here
    }
  }
  return null;
}

function prefix(family: Family): string {
  return family === 4 ? 'iptables' : 'ip6tables';
}

/**
 * The binaries for (mode, family), or null when neither the suffixed nor a matching unsuffixed
 * pair is installed. The unsuffixed binary's flavour is read from its `--version`.
 */
export async function findTools(mode: Mode, family: Family, run: Runner = runProgram, pathVar?: string): Promise<Tools | null> {
  const p = prefix(family);
  const save = which(`${p}-${mode}-save`, pathVar);
  const restore = which(`${p}-${mode}-restore`, pathVar);
  if (save && restore) return { mode, family, save, restore };
  const plainSave = which(`${p}-save`, pathVar);
  const plainRestore = which(`${p}-restore`, pathVar);
  if (!plainSave || !plainRestore) return null;
  const v = await run(plainSave, ['--version']).catch(() => null);
  if (!v || v.code !== 0) return null;
  const isNft = /nf_tables/.test(v.stdout + v.stderr);
  return isNft === (mode === 'nft') ? { mode, family, save: plainSave, restore: plainRestore } : null;
}

/** What to install when the binaries of `mode` are missing. */
export function missingToolsMessage(mode: Mode | 'any', family: Family): string {
  const p = prefix(family);
  const names = mode === 'any' ? `${p}-nft-restore, ${p}-legacy-restore or ${p}-restore` : `${p}-${mode}-save/${p}-${mode}-restore (or ${p}-save/${p}-restore reporting ${mode === 'nft' ? 'nf_tables' : 'legacy'})`;
  return `iptables is not installed: none of ${names} found on PATH (${process.env.PATH ?? ''}); the image needs Debian's iptables package`;
}

const PERMISSION = /permission denied|operation not permitted|you must be root/i;

/** Turn a failed run into the error a user can act on. */
export function explainFailure(tools: Tools, file: string, what: string, r: RunResult): RedirectError {
  const tool = path.basename(file);
  const said = r.stderr.trim().split('\n').filter((l) => l && !/^Try `/.test(l)).join('; ') || `exit code ${r.code}`;
  if (PERMISSION.test(r.stderr)) {
    return new RedirectError(`${what}: ${tool} was refused (${said}): the process lacks CAP_NET_ADMIN in this network namespace; run it as root with capabilities NET_ADMIN and NET_RAW (the injected init container's securityContext)`);
  }
  if (/table does not exist|can't initialize|protocol not supported|address family not supported/i.test(r.stderr)) {
    return new RedirectError(`${what}: ${tool} cannot use the ${tools.family === 4 ? 'IPv4' : 'IPv6'} nat table in ${tools.mode} mode (${said}); the node's kernel lacks it: try --iptables-mode ${tools.mode === 'nft' ? 'legacy' : 'nft'}${tools.family === 6 ? ' or --ipv6 off if the pod has no IPv6' : ''}`);
  }
  return new RedirectError(`${what}: ${tool} failed (${said})`);
}

async function runTool(tools: Tools, file: string, args: string[], stdin: string | undefined, run: Runner, what: string): Promise<RunResult> {
  let r: RunResult;
  try {
    r = await run(file, args, stdin);
  } catch (e) {
    throw new RedirectError(`${what}: cannot run ${file}: ${(e as Error).message}`);
  }
  if (r.code !== 0) throw explainFailure(tools, file, what, r);
  return r;
}

/**
 * Every table that exists, as `*-save` prints it. Deliberately without `-t nat`: naming a table
 * makes legacy iptables create (and hook into the kernel) a table that did not exist, so a
 * dry run, a survey or a cleanup would change the namespace; without `-t` only existing tables
 * are listed. A missing nat table therefore reads as no `*nat` section.
 */
export async function readAll(tools: Tools, run: Runner = runProgram): Promise<string> {
  return (await runTool(tools, tools.save, [], undefined, run, `read the ${label(tools)} tables`)).stdout;
}

/**
 * Apply one restore script as one transaction. `--noflush` keeps everything the script does not
 * name; `--wait` takes the xtables lock (legacy) instead of failing when another writer holds it.
 */
export async function writeNat(tools: Tools, script: string, run: Runner = runProgram): Promise<void> {
  const args = ['--noflush'];
  if (tools.mode === 'legacy') args.push('--wait=10');
  await runTool(tools, tools.restore, args, script, run, `write the ${label(tools)} nat table`);
}

export function label(t: { mode: Mode; family: Family }): string {
  return `${t.family === 4 ? 'IPv4' : 'IPv6'} ${t.mode}`;
}

/** What one backend holds in this network namespace, for the auto choice. */
export interface BackendSurvey {
  mode: Mode;
  /** Whether the binaries are installed (for every family surveyed). */
  installed: boolean;
  /** Whether ca-proxy's chains or jump exist there (any family). */
  ours: boolean;
  /** Rules of others (`-A` lines outside ours, every table, every family). */
  foreign: number;
  /** Why the tables could not be read, when they could not (installed but unreadable). */
  unreadable?: string;
}

/** Read what each backend holds (every existing table, for each family in `families`). */
export async function surveyBackend(mode: Mode, families: Family[], run: Runner = runProgram, pathVar?: string): Promise<BackendSurvey> {
  const s: BackendSurvey = { mode, installed: true, ours: false, foreign: 0 };
  for (const family of families) {
    const tools = await findTools(mode, family, run, pathVar);
    if (!tools) {
      s.installed = false;
      continue;
    }
    try {
      const text = await readAll(tools, run);
      s.ours ||= hasOurs(parseNatSave(text));
      s.foreign += foreignRules(text);
    } catch (e) {
      // No permission is the same in every backend: say so now, not as "no backend".
      if (PERMISSION.test((e as Error).message) || /CAP_NET_ADMIN/.test((e as Error).message)) throw e;
      s.unreadable = (e as Error).message;
    }
  }
  return s;
}

/**
 * The backend for `--iptables-mode auto`, as Istio's istio-iptables chooses it (its
 * `DetectIptablesVersion`: the variant whose save binary shows rules in this network namespace,
 * nft first; otherwise the default), with one addition: a backend already holding ca-proxy's rules
 * wins, so a re-run or `--cleanup` finds what an earlier run installed.
 *
 *   1. ours in exactly one backend → that one (in both: nft, and the legacy copy is reported);
 *   2. others' rules in nft → nft;  3. others' rules in legacy → legacy;
 *   4. none anywhere → nft (the iptables default since Debian 10 / RHEL 8), or legacy if only legacy is installed.
 *
 * Pure: decides from the two surveys. Returns null when neither backend is installed.
 */
export function chooseBackend(nft: BackendSurvey, legacy: BackendSurvey): { mode: Mode; why: string } | null {
  const usable = (s: BackendSurvey) => s.installed && !s.unreadable;
  if (usable(nft) && nft.ours) return { mode: 'nft', why: legacy.ours ? 'ca-proxy rules found in nft (and in legacy too)' : 'ca-proxy rules found in nft' };
  if (usable(legacy) && legacy.ours) return { mode: 'legacy', why: 'ca-proxy rules found in legacy' };
  if (usable(nft) && nft.foreign > 0) return { mode: 'nft', why: `${nft.foreign} existing rules in nft` };
  if (usable(legacy) && legacy.foreign > 0) return { mode: 'legacy', why: `${legacy.foreign} existing rules in legacy, none in nft` };
  if (usable(nft)) return { mode: 'nft', why: 'no rules in either backend: the default' };
  if (usable(legacy)) return { mode: 'legacy', why: nft.installed ? `nft unusable (${nft.unreadable})` : 'only legacy is installed' };
  return null;
}
