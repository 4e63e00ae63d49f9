/**
 * Real Linux network namespaces for tests (root only): a "pod" namespace and an "external"
 * namespace joined by a veth pair, with IPv4 and IPv6, and helpers to run commands and small
 * Node listeners/clients inside them. Used by the redirect tests and the full-path test (client
 * in the pod → redirect → sidecar stand-in, sidecar.ts → server in the external namespace).
 *
 *   pod  (eth0 198.18.0.2/24, fd00:ca:1::2/64; default routes via external)
 *     │ veth
 *   external (eth0 198.18.0.1/24, fd00:ca:1::1/64; also 198.18.1.1 and fd00:ca:2::1 on lo:
 *             a second external host, in a network of its own, e.g. for an excluded CIDR)
 *
 * Addresses are from 198.18.0.0/15 (RFC 2544, benchmarking) and fd00::/8 (RFC 4193); the
 * namespaces see only each other, so they never collide with the machine's own networks.
 * Names are unique per process (`<tag>-<pid>-pod`); `destroy()` kills every process the pair
 * started and deletes both namespaces (which removes the veth pair).
 *
 * Prerequisites (`netnsPrerequisites`): root, `ip` (iproute2), `setpriv` (util-linux, to run a
 * client as another uid), `python3` (for SO_ORIGINAL_DST, original-dst.ts). `netnsSuite` fails
 * under `CI` when one is missing and skips with the reason otherwise.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { describe, test } from '@jest/globals';

export const ADDR = {
  podV4: '198.18.0.2',
  extV4: '198.18.0.1',
  /** A second external host, on the external namespace's loopback, in 198.18.1.0/24. */
  ext2V4: '198.18.1.1',
  podV6: 'fd00:ca:1::2',
  extV6: 'fd00:ca:1::1',
  /** A second external host, in fd00:ca:2::/64. */
  ext2V6: 'fd00:ca:2::1',
} as const;

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Run as this uid (and gid, default the same) via `setpriv`, supplementary groups cleared. */
  uid?: number;
  gid?: number;
  env?: NodeJS.ProcessEnv;
  input?: string;
  /** Extra `setpriv` options before the command (e.g. dropping a capability). */
  setpriv?: string[];
  timeoutMs?: number;
}

export interface Listener {
  host: string;
  port: number;
  /** What the listener says it is, in its answer. */
  says: string;
  /** Also report SO_ORIGINAL_DST of each accepted connection (the destination before NAT). */
  originalDst?: boolean;
}

/** One peer's answer: who answered, on which local address, and (for originalDst listeners) what the client dialled. */
export interface Answer {
  says: string;
  local: string;
  remote: string;
  originalDst?: string;
}

export interface ConnectResult {
  said?: Answer;
  error?: string;
}

/** Absolute path of `name` on this process's PATH, or null. */
function tool(name: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

// Resolved once, so a test that gives a command another PATH (to hide iptables, say) still finds these.
const IP = tool('ip') ?? 'ip';
const SETPRIV = tool('setpriv') ?? 'setpriv';

/** Why namespaces cannot be used here, or null when they can. */
export function netnsPrerequisites(extra: string[] = []): string | null {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return 'not running as root (network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)';
  for (const t of ['ip', 'setpriv', 'python3', ...extra]) if (!tool(t)) return `${t} is not installed (Debian: iproute2, util-linux, python3, iptables)`;
  const name = `cap-probe-${process.pid}`;
  const add = spawnSync('ip', ['netns', 'add', name], { encoding: 'utf8' });
  if (add.status !== 0) return `ip netns add failed: ${add.stderr.trim()}`;
  spawnSync('ip', ['netns', 'del', name]);
  return null;
}

/**
 * `describe` when `reason` is null; otherwise one test in its place that fails under CI
 * (a CI run must not pass while testing nothing) or is skipped with the reason in its name.
 */
export function netnsSuite(name: string, reason: string | null, body: () => void): void {
  if (reason === null) return describe(name, body);
  if (process.env.CI) {
    describe(name, () =>
      test(`${name} (CI: prerequisites required)`, () => {
        throw new Error(`CI is set and ${reason}`);
      }),
    );
    return;
  }
  process.stderr.write(`skipping ${name}: ${reason}\n`);
  describe(name, () => test.skip(`${name} — skipped: ${reason}`, () => undefined));
}

function run(argv: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 60_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** Run a command on the host; throw with its stderr when it fails. */
async function must(argv: string[]): Promise<void> {
  const r = await run(argv);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
}

const AGENT = path.join(__dirname, 'netns-agent.js');

export class NetnsPair {
  readonly pod: string;
  readonly external: string;
  private readonly children = new Set<ChildProcess>();

  private constructor(tag: string) {
    this.pod = `${tag}-${process.pid}-pod`;
    this.external = `${tag}-${process.pid}-ext`;
  }

  /** Create both namespaces, the veth pair, addresses and routes. `tag`: ≤ 12 characters, [a-z0-9-]. */
  static async create(tag: string): Promise<NetnsPair> {
    const p = new NetnsPair(tag);
    await p.destroy(); // a namespace left by a killed run of the same pid is removed first
    const { pod: P, external: E } = p;
    try {
      await must(['ip', 'netns', 'add', P]);
      await must(['ip', 'netns', 'add', E]);
      await must(['ip', '-n', P, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', E]);
      for (const ns of [P, E]) {
        await must(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
        await must(['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
      }
      await must(['ip', '-n', P, 'addr', 'add', `${ADDR.podV4}/24`, 'dev', 'eth0']);
      await must(['ip', '-n', E, 'addr', 'add', `${ADDR.extV4}/24`, 'dev', 'eth0']);
      await must(['ip', '-n', E, 'addr', 'add', `${ADDR.ext2V4}/32`, 'dev', 'lo']);
      await must(['ip', '-n', P, 'route', 'add', 'default', 'via', ADDR.extV4]);
      // nodad: the addresses are usable at once instead of "tentative" for a second or two.
      await must(['ip', '-n', P, '-6', 'addr', 'add', `${ADDR.podV6}/64`, 'dev', 'eth0', 'nodad']);
      await must(['ip', '-n', E, '-6', 'addr', 'add', `${ADDR.extV6}/64`, 'dev', 'eth0', 'nodad']);
      await must(['ip', '-n', E, '-6', 'addr', 'add', `${ADDR.ext2V6}/128`, 'dev', 'lo']);
      await must(['ip', '-n', P, '-6', 'route', 'add', 'default', 'via', ADDR.extV6]);
    } catch (e) {
      await p.destroy();
      throw e;
    }
    return p;
  }

  private argv(ns: string, argv: string[], o: ExecOptions): string[] {
    const priv = o.uid !== undefined || o.setpriv ? [SETPRIV, ...(o.uid !== undefined ? [`--reuid=${o.uid}`, `--regid=${o.gid ?? o.uid}`, '--clear-groups'] : []), ...(o.setpriv ?? []), '--'] : [];
    return [IP, 'netns', 'exec', ns, ...priv, ...argv];
  }

  /** Run `argv` inside namespace `ns` to completion (never throws for a non-zero exit). */
  exec(ns: string, argv: string[], o: ExecOptions = {}): Promise<RunResult> {
    return run(this.argv(ns, argv, o), o);
  }

  /** Run `ca-proxy` (the built CLI) inside `ns`. */
  caProxy(ns: string, args: string[], o: ExecOptions = {}): Promise<RunResult> {
    return this.exec(ns, [process.execPath, path.resolve(__dirname, '../../cmd/ca-proxy/main.js'), ...args], o);
  }

  /** Start `argv` inside `ns` (as `o.uid` when given), stdout and stderr piped; it runs until `destroy()` or `stop(child)`. */
  start(ns: string, argv: string[], o: ExecOptions = {}): ChildProcess {
    const a = this.argv(ns, argv, o);
    const child = spawn(a[0]!, a.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: o.env ?? process.env });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  /** Start listeners inside `ns`; resolves once they all listen. They run until `destroy()` or `stop(child)`. */
  serve(ns: string, listeners: Listener[], timeoutMs = 10_000): Promise<ChildProcess> {
    const child = this.start(ns, [process.execPath, AGENT, 'serve', JSON.stringify(listeners)]);
    return new Promise((resolve, reject) => {
      let out = '';
      let err = '';
      const timer = setTimeout(() => reject(new Error(`listeners in ${ns} not ready after ${timeoutMs} ms: ${err}`)), timeoutMs);
      child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        if (out.includes('ready\n')) {
          clearTimeout(timer);
          resolve(child);
        }
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`listeners in ${ns} exited ${code} before ready: ${err.trim()}`));
      });
    });
  }

  /** Stop listeners started by `serve`. */
  async stop(child: ChildProcess): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise((r) => {
      child.once('exit', r);
      child.kill('SIGTERM');
    });
  }

  /** Connect from inside `ns` (as `o.uid` when given) to each target in turn; one answer or error each. */
  async connect(ns: string, targets: { host: string; port: number }[], o: ExecOptions & { connectTimeoutMs?: number } = {}): Promise<ConnectResult[]> {
    const r = await this.exec(ns, [process.execPath, AGENT, 'connect', JSON.stringify({ targets, timeoutMs: o.connectTimeoutMs ?? 3000 })], o);
    if (r.code !== 0) throw new Error(`client in ${ns} failed (${r.code}): ${r.stderr.trim()}`);
    return JSON.parse(r.stdout) as ConnectResult[];
  }

  /** Kill what this pair started and delete both namespaces (idempotent). */
  async destroy(): Promise<void> {
    await Promise.all([...this.children].map((c) => this.stop(c)));
    for (const ns of [this.pod, this.external]) await run(['ip', 'netns', 'del', ns]);
  }
}
