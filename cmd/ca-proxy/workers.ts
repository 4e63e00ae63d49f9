/**
 * Several worker processes behind one `ca-proxy run` or `serve-extproc` (config `workers`,
 * default one per CPU, like HAProxy's `nbthread`), with node:cluster:
 *
 * - **Connections**: for `run` the listening socket is shared and every worker accepts from it,
 *   the kernel choosing (`SCHED_NONE`: round-robin through the primary would cost the primary a
 *   handle transfer per connection). For `serve-extproc` the primary accepts and hands the
 *   connections out in turn (`SCHED_RR`): each is an Envoy's long-lived HTTP/2 connection that
 *   carries all of that Envoy's streams, so there are few and the hand-over costs nothing that
 *   matters; with the kernel choosing, half of the streams over a shared Unix socket failed in
 *   test/integration/workers.test.ts (not understood yet; round-robin has not failed there).
 * - **One admin port**: the primary serves /metrics (the workers' registries aggregated by
 *   prom-client's AggregatorRegistry, plus the primary's own `ca_proxy_workers*` metrics),
 *   /healthz and /readyz (ready when every worker is up and ready).
 * - **One log**: workers send their log lines to the primary, which alone writes stdout, so
 *   lines never interleave whatever their length.
 * - **CRL reloads reach every worker together**: each worker loads and validates a changed set
 *   itself, then waits at the store's gate (RevocationStore.gate) with the digest of what it
 *   would swap in. The primary asks the other workers to reload too; when every live worker has
 *   staged the same digest it lets all of them swap, otherwise none swaps and all retry.
 *   The CRL index is held once per worker (measured in docs/benchmarks.md).
 * - **Workers are restarted** when they die (backoff from 1 s up to 30 s while they keep dying
 *   young); a worker that fails at its first start fails the whole command.
 * - **SIGTERM/SIGINT** on the primary stop every worker (each drains as a single process does),
 *   then the primary exits.
 *
 * Messages between the primary and the workers are objects with a `ca_proxy` key (prom-client
 * uses the same IPC channel for its own messages).
 */
import cluster, { type Worker } from 'node:cluster';
import os from 'node:os';
import { Writable } from 'node:stream';
import { AggregatorRegistry, Counter, Gauge, Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { Readiness } from '../../internal/metrics/admin';
import { startAdminServer, type AdminServer } from '../../internal/metrics/admin';
import { parseHostPort } from '../../internal/proxy/listeners';
import type { RevocationStore } from '../../internal/pki/store';

/** Environment variable that marks a ca-proxy worker, and tells it the primary's admin address. */
const WORKER_ENV = 'CA_PROXY_WORKER';
const ADMIN_ENV = 'CA_PROXY_PRIMARY_ADMIN';

type ToPrimary =
  | { ca_proxy: 'log'; line: string }
  | { ca_proxy: 'up'; where: string[]; ready: Readiness }
  | { ca_proxy: 'status'; ready: Readiness; rss: number; heapUsed: number; external: number }
  | { ca_proxy: 'crl-staged'; digest: string };
type ToWorker = { ca_proxy: 'crl-commit' } | { ca_proxy: 'crl-abort' } | { ca_proxy: 'crl-reload' } | { ca_proxy: 'stop' };

/** The worker count a `workers` setting means: `auto` is `os.availableParallelism()`. */
export function workerCount(setting: number | 'auto'): number {
  return setting === 'auto' ? Math.max(1, os.availableParallelism()) : setting;
}

/** True in a process forked by `superviseWorkers`. */
export function isWorker(): boolean {
  return cluster.isWorker && process.env[WORKER_ENV] === '1';
}

// ───────────────────────────── worker side ─────────────────────────────

/** What a worker's command wires to its primary. */
export interface WorkerLink {
  /** A log destination (pino) whose lines the primary writes. */
  log: Writable;
  /** The primary's admin address, `host:port` (a CONNECT to it is a forwarding loop), or null. */
  primaryAdmin: string | null;
  /**
   * Connect the store, the readiness and the metrics registry to the primary, and say where
   * this worker listens. `onStop` runs when the primary stops the workers.
   */
  up(opts: { where: string[]; readiness: () => Readiness; registry: Registry; store: RevocationStore | null; reloadPaths: string[]; onStop: () => void }): void;
}

export function workerLink(): WorkerLink {
  const send = (m: ToPrimary): void => {
    if (process.connected) process.send!(m);
  };
  const log = new Writable({
    write(chunk: Buffer, _enc, cb) {
      send({ ca_proxy: 'log', line: chunk.toString('utf8') });
      cb();
    },
  });
  return {
    log,
    primaryAdmin: process.env[ADMIN_ENV] || null,
    up({ where, readiness, registry, store, reloadPaths, onStop }) {
      // Constructing one installs prom-client's answer to the primary's metric requests.
      new AggregatorRegistry();
      AggregatorRegistry.setRegistries([registry]);
      let verdict: ((ok: boolean) => void) | null = null;
      store?.gate(
        (digest) =>
          new Promise<boolean>((resolve) => {
            verdict = resolve;
            send({ ca_proxy: 'crl-staged', digest });
          }),
      );
      process.on('message', (m: ToWorker) => {
        if (!m || typeof m !== 'object' || !('ca_proxy' in m)) return;
        if (m.ca_proxy === 'crl-commit' || m.ca_proxy === 'crl-abort') {
          const v = verdict;
          verdict = null;
          v?.(m.ca_proxy === 'crl-commit');
        } else if (m.ca_proxy === 'crl-reload') {
          if (!verdict && store) void store.loadPaths(reloadPaths).catch(() => undefined);
        } else if (m.ca_proxy === 'stop') onStop();
      });
      // The primary is gone (killed): a worker must not live on without it.
      process.on('disconnect', onStop);
      const status = (): void => {
        const mem = process.memoryUsage();
        let ready: Readiness;
        try {
          ready = readiness();
        } catch (err) {
          ready = { ready: false, detail: `readiness check failed: ${(err as Error).message}` };
        }
        send({ ca_proxy: 'status', ready, rss: mem.rss, heapUsed: mem.heapUsed, external: mem.external });
      };
      send({ ca_proxy: 'up', where, ready: readiness() });
      status();
      setInterval(status, 1000).unref();
    },
  };
}

// ───────────────────────────── primary side ─────────────────────────────

/** A worker died before its start completed; it printed its own error (exit code `code`). */
export class WorkerStartError extends Error {
  constructor(
    readonly index: number,
    readonly code: number | null,
    readonly signal: string | null,
  ) {
    super(`worker ${index} exited during start-up (${signal ?? `exit code ${code}`})`);
  }
}

export interface SuperviseOptions {
  count: number;
  /** The primary's logger (stdout); workers' lines are written beside its own. */
  logger: Logger;
  /** The admin listener `host:port`, or null. */
  admin: string | null;
  /** Called once, when every worker is up, with where they listen (the same for all). */
  onUp(where: string[], ready: Readiness, admin: AdminServer | null): void;
  /** How long workers may drain on stop, ms (then they are killed). */
  graceMs: number;
  /** Who picks the worker for a new connection: the kernel (`SCHED_NONE`) or the primary in turn (`SCHED_RR`). */
  scheduling: 'kernel' | 'round-robin';
}

interface Member {
  worker: Worker;
  index: number;
  up: boolean;
  ready: Readiness;
  memory: { rss: number; heapUsed: number; external: number } | null;
  startedAt: number;
}

/**
 * Forks `count` workers running this same command line and supervises them until SIGTERM/SIGINT.
 * @throws (rejects) when a worker dies before its first start completes, or the admin port fails
 */
export async function superviseWorkers(opts: SuperviseOptions): Promise<void> {
  const { logger } = opts;
  cluster.schedulingPolicy = opts.scheduling === 'kernel' ? cluster.SCHED_NONE : cluster.SCHED_RR;
  const aggregator = new AggregatorRegistry();
  /** The primary's own metrics (and the admin server's ca_proxy_ready), then every worker's, aggregated. */
  const own = new (class extends Registry {
    override async metrics(): Promise<string> {
      const [mine, workers] = await Promise.all([super.metrics(), aggregator.clusterMetrics()]);
      return `${mine}\n${workers}`;
    }
  })();
  const members = new Map<number, Member>();
  let stopping = false;
  let allUp = false;

  new Gauge({ name: 'ca_proxy_workers', help: 'Worker processes configured (config workers).', registers: [own] }).set(opts.count);
  new Gauge({
    name: 'ca_proxy_workers_up',
    help: 'Worker processes running and past their start.',
    registers: [own],
    collect() {
      this.set([...members.values()].filter((m) => m.up).length);
    },
  });
  const restarts = new Counter({ name: 'ca_proxy_worker_restarts_total', help: 'Workers restarted after they died.', registers: [own] });
  new Gauge({
    name: 'ca_proxy_worker_memory_bytes',
    help: 'Memory of each worker process, bytes, by kind: rss, heap_used, external (Buffers, e.g. CRL indexes held outside the heap).',
    labelNames: ['worker', 'kind'] as const,
    registers: [own],
    collect() {
      this.reset();
      for (const m of members.values()) {
        if (!m.memory) continue;
        this.set({ worker: String(m.index), kind: 'rss' }, m.memory.rss);
        this.set({ worker: String(m.index), kind: 'heap_used' }, m.memory.heapUsed);
        this.set({ worker: String(m.index), kind: 'external' }, m.memory.external);
      }
    },
  });

  const readiness = (): Readiness => {
    const list = [...members.values()];
    if (stopping) return { ready: false, detail: 'shutting down' };
    const notUp = opts.count - list.filter((m) => m.up).length;
    if (notUp > 0) return { ready: false, detail: `${notUp} of ${opts.count} workers not running` };
    const notReady = list.find((m) => !m.ready.ready);
    if (notReady) return { ready: false, detail: `worker ${notReady.index}: ${notReady.ready.detail}` };
    return { ready: true, detail: `${opts.count} workers: ${list[0]?.ready.detail ?? 'ready'}` };
  };

  let admin: AdminServer | null = null;
  if (opts.admin) {
    const { host, port } = parseHostPort(opts.admin, 'admin');
    admin = await startAdminServer({ host, port, registry: own, ready: readiness });
  }
  const adminAddress = admin ? `${admin.address.family === 'IPv6' ? `[${admin.address.address}]` : admin.address.address}:${admin.address.port}` : '';

  const broadcast = (m: ToWorker, except?: number): void => {
    for (const [id, mem] of members) if (id !== except && mem.up && mem.worker.isConnected()) mem.worker.send(m);
  };
  const barrier = new CrlBarrier({
    members: () => [...members].filter(([, m]) => m.up).map(([id]) => id),
    send: (id, m) => members.get(id)?.worker.send(m),
    reloadOthers: (except) => broadcast({ ca_proxy: 'crl-reload' }, except),
    warn: (obj, msg) => logger.warn(obj, msg),
  });

  let firstWhere: string[] | null = null;
  let failStart: ((err: Error) => void) | null = null;
  let upResolve: (() => void) | null = null;
  let backoffMs = 1000;

  const fork = (index: number): void => {
    const worker = cluster.fork({ [WORKER_ENV]: '1', [ADMIN_ENV]: adminAddress });
    const member: Member = { worker, index, up: false, ready: { ready: false, detail: 'starting' }, memory: null, startedAt: Date.now() };
    members.set(worker.id, member);
    worker.on('message', (m: ToPrimary) => {
      if (!m || typeof m !== 'object' || !('ca_proxy' in m)) return;
      switch (m.ca_proxy) {
        case 'log':
          process.stdout.write(m.line);
          break;
        case 'up':
          member.up = true;
          member.ready = m.ready;
          firstWhere ??= m.where;
          if (!allUp && [...members.values()].filter((x) => x.up).length === opts.count) {
            allUp = true;
            upResolve?.();
          }
          barrier.settle();
          break;
        case 'status':
          member.ready = m.ready;
          member.memory = { rss: m.rss, heapUsed: m.heapUsed, external: m.external };
          break;
        case 'crl-staged':
          barrier.staged(worker.id, m.digest);
          break;
      }
    });
    worker.on('exit', (code, signal) => {
      members.delete(worker.id);
      barrier.settle();
      if (stopping) return;
      if (!member.up && !allUp) {
        failStart?.(new WorkerStartError(index, code, signal));
        return;
      }
      backoffMs = Date.now() - member.startedAt < 10_000 ? Math.min(backoffMs * 2, 30_000) : 1000;
      logger.error({ worker: index, pid: worker.process.pid, code, signal, restartInMs: backoffMs }, 'worker died; restarting it');
      restarts.inc();
      setTimeout(() => {
        if (!stopping) fork(index);
      }, backoffMs).unref();
    });
  };

  const stopAll = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, workers: members.size, graceMs: opts.graceMs }, 'shutting down: stopping the workers (each drains its connections)');
    const exits = [...members.values()].map((m) => new Promise<void>((r) => (m.worker.isDead() ? r() : m.worker.once('exit', () => r()))));
    broadcast({ ca_proxy: 'stop' });
    const killer = setTimeout(() => {
      for (const m of members.values()) m.worker.process.kill('SIGKILL');
    }, opts.graceMs + 5000);
    killer.unref();
    await Promise.all(exits);
    clearTimeout(killer);
    await admin?.close();
  };

  try {
    // The first worker alone, then the others: a start-up error (a missing file, a port in use)
    // is printed once, by that worker, and the primary exits with its code.
    let firstUp!: () => void;
    const first = new Promise<void>((resolve) => (firstUp = resolve));
    const all = new Promise<void>((resolve, reject) => {
      upResolve = resolve;
      failStart = reject;
    });
    const onFirst = (w: Worker, m: ToPrimary): void => {
      if (m && typeof m === 'object' && m.ca_proxy === 'up') firstUp();
      else return;
      cluster.off('message', onFirst);
    };
    cluster.on('message', onFirst);
    fork(0);
    await Promise.race([first, all]);
    for (let i = 1; i < opts.count; i++) fork(i);
    await all;
  } catch (err) {
    stopping = true;
    for (const m of members.values()) m.worker.process.kill('SIGTERM');
    await admin?.close();
    throw err;
  }
  failStart = null;
  opts.onUp(firstWhere ?? [], readiness(), admin);

  await new Promise<void>((resolve) => {
    const on = (signal: string) => void stopAll(signal).then(resolve);
    process.once('SIGINT', () => on('SIGINT'));
    process.once('SIGTERM', () => on('SIGTERM'));
    process.on('SIGHUP', () => logger.warn('SIGHUP ignored: CRLs reload on their own; restart ca-proxy to apply a changed configuration'));
  });
}

/**
 * The primary's half of the CRL reload barrier (see the file docstring). A round opens when a
 * worker stages a set: every other worker is asked to reload; when every live worker has staged,
 * all are told to commit if their digests agree, else all abort and reload again after
 * `retryMs`. A round that does not complete within `timeoutMs` (a worker stuck or dying) aborts
 * the same way. Nobody swaps unless everybody swaps the same set.
 */
export class CrlBarrier {
  private round: { staged: Map<number, string>; timer: NodeJS.Timeout } | null = null;

  constructor(
    private readonly io: {
      /** The ids of the workers that are up. */
      members(): number[];
      send(id: number, m: { ca_proxy: 'crl-commit' } | { ca_proxy: 'crl-abort' }): void;
      /** Ask every up worker but `except` (all when undefined) to reload its CRLs. */
      reloadOthers(except?: number): void;
      warn(obj: object, msg: string): void;
    },
    private readonly timing = { retryMs: 500, timeoutMs: 10_000 },
  ) {}

  /** Worker `id` has loaded a set with `digest` and waits for the verdict. */
  staged(id: number, digest: string): void {
    if (!this.round) {
      const timer = setTimeout(() => this.abort('not every worker staged the new set in time'), this.timing.timeoutMs);
      timer.unref();
      this.round = { staged: new Map(), timer };
      this.io.reloadOthers(id);
    }
    this.round.staged.set(id, digest);
    this.settle();
  }

  /** Re-examine the open round (a worker came up or died). */
  settle(): void {
    const r = this.round;
    if (!r) return;
    const up = this.io.members();
    if (!up.every((id) => r.staged.has(id))) return;
    const digests = new Set(up.map((id) => r.staged.get(id)));
    if (digests.size > 1) return this.abort(`the workers read ${digests.size} different CRL sets`);
    clearTimeout(r.timer);
    this.round = null;
    for (const id of r.staged.keys()) this.io.send(id, { ca_proxy: 'crl-commit' });
  }

  private abort(why: string): void {
    const r = this.round;
    if (!r) return;
    clearTimeout(r.timer);
    this.round = null;
    this.io.warn({ staged: r.staged.size }, `CRL reload held on every worker: ${why}; all read again`);
    for (const id of r.staged.keys()) this.io.send(id, { ca_proxy: 'crl-abort' });
    setTimeout(() => this.io.reloadOthers(), this.timing.retryMs).unref();
  }
}
