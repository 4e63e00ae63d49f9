/**
 * The CRL watcher of a processor: CRL ConfigMaps (docs/kubernetes.md "CRL ConfigMap format") →
 * reassembled DER → the `RevocationStore`, which validates every CRL exactly as it does a CRL file
 * (signature, thisUpdate, critical extensions, cRLNumber rollback) and swaps the whole set in
 * atomically. A refused or incomplete update keeps the last good CRL of its set; a set whose
 * ConfigMaps are all gone is dropped.
 *
 * Two sources, one pipeline:
 * - `api`: an @kubernetes/client-node informer (`ListWatch`: list, then watch from the list's
 *   resourceVersion; `410 Gone` → relist) on ConfigMaps by label selector in one namespace. Watches
 *   ask for bookmarks and a server-side `timeoutSeconds` (jittered, as client-go does), with a
 *   client-side deadline a little later so a silently dead connection is noticed; a failed list or
 *   watch restarts with jittered exponential backoff. Needs RBAC get/list/watch on configmaps.
 * - `volume`: ConfigMap volume mounts (one folder per set, or a projected volume holding every part
 *   of a set). kubelet updates a mount by writing a new timestamped folder and swapping the `..data`
 *   symlink; the watcher polls that link (and fs.watch for speed), and reads only the files the
 *   swap exposes. Without annotations there is no SHA-256 to check: gzip's CRC and the store's
 *   signature check catch a torn or mixed read.
 *
 * Why a spool folder: the store reads CRL files, parsing large ones in a worker thread (a
 * million-entry CRL costs the event loop a few ms, crl-worker.ts). The watcher writes each set's
 * DER to `<spoolDir>/<set>.der` (write + rename, so a load never sees half a file), adds the spool to
 * every store load (`store.include`) and reloads the store with `paths`, the processor's other CRL
 * files (a store load takes its paths as the whole truth, so they are named again).
 *
 * Events: `'applied'` ({ report, sets }) after a store load the watcher caused; `'refused'`
 * ({ set, code, message }) when a set cannot be used (incomplete, malformed, refused by the store);
 * `'error'` never — list/watch failures are logged and retried.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { CoreV1Api, ListWatch, Watch, type KubeConfig, type V1ConfigMap } from '@kubernetes/client-node';
import type { LoadReport, RevocationStore } from '../pki/store';
import type { KubernetesCrlSource } from '../config/types';
import { loadKubeConfig } from './kubeconfig';
import { CRL_LABEL_SELECTOR, CrlConfigMapError, decodeCrlSet, groupCrlSets, type CrlConfigMap } from './crl-configmap';
import { errText } from '../pki/errors';

const gunzip = promisify(zlib.gunzip);

/** What the watcher logs through (a pino Logger fits). */
export interface WatcherLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export type CrlWatcherSource =
  | {
      kind: 'api';
      kubeConfig: KubeConfig;
      namespace: string;
      /** Default `ca-proxy.io/crl=true`. */
      labelSelector?: string;
      /** Server-side watch timeout, seconds, jittered up to 2× (default 300, as client-go's 5–10 min). */
      watchTimeoutSeconds?: number;
    }
  | {
      kind: 'volume';
      /** Mounted ConfigMap (or projected) volume folders, one CRL set each (set name = folder name). */
      dirs: string[];
      /** Poll period of the `..data` links, ms (default 1000). */
      pollMs?: number;
    };

export interface CrlWatcherOptions {
  store: RevocationStore;
  source: CrlWatcherSource;
  /** Other CRL files/folders of this processor, loaded beside the spool (config `revocation.crlPaths`). */
  paths?: string[];
  /** Where reassembled DERs go (default: a new folder under the OS temp dir, removed by `stop`). */
  spoolDir?: string;
  /** Coalesce bursts of ConfigMap events (a publisher writing n parts), ms (default 50). */
  debounceMs?: number;
  /** Largest DER accepted after gunzip, bytes (default 256 MiB, the store's default). */
  maxCrlBytes?: number;
  /** Backoff after a failed list/watch: first delay and cap, ms (default 500 and 30 000). */
  backoffMs?: { initial: number; max: number };
  logger?: WatcherLogger;
}

export interface SetRefusal {
  set: string;
  code: 'incomplete' | 'malformed' | 'too_large' | string;
  message: string;
}

interface AppliedSet {
  sha256: string;
  file: string;
}

const quiet: WatcherLogger = { info: () => undefined, warn: () => undefined };

export class CrlWatcher extends EventEmitter {
  private readonly store: RevocationStore;
  private readonly source: CrlWatcherSource;
  private readonly paths: string[];
  private readonly ownSpool: boolean;
  private spoolDir: string;
  private readonly debounceMs: number;
  private readonly maxCrlBytes: number;
  private readonly backoff: { initial: number; max: number };
  private readonly log: WatcherLogger;

  private informer: ListWatch<V1ConfigMap> | null = null;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private fsWatchers: fs.FSWatcher[] = [];
  private delay: number;
  private chain: Promise<void> = Promise.resolve();
  /** Sets currently in the spool (what the store was last given). */
  private readonly applied = new Map<string, AppliedSet>();
  /** Per set, the identity (names + resourceVersions, or volume fingerprint) last reconciled. */
  private readonly seen = new Map<string, string>();
  private volumePrint = new Map<string, string>();
  private syncedOnce = false;
  private firstSync: { promise: Promise<void>; resolve: () => void };

  constructor(opts: CrlWatcherOptions) {
    super();
    this.store = opts.store;
    this.source = opts.source;
    this.paths = opts.paths ?? [];
    this.ownSpool = opts.spoolDir === undefined;
    this.spoolDir = opts.spoolDir ?? '';
    this.debounceMs = opts.debounceMs ?? 50;
    this.maxCrlBytes = opts.maxCrlBytes ?? 256 * 1024 * 1024;
    this.backoff = opts.backoffMs ?? { initial: 500, max: 30_000 };
    this.delay = this.backoff.initial;
    this.log = opts.logger ?? quiet;
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    this.firstSync = { promise, resolve };
  }

  /** True once the first full list (or volume read) has been applied to the store. */
  get synced(): boolean {
    return this.syncedOnce;
  }

  /** Resolves once the first list (or volume read) has been reconciled into the store. */
  whenSynced(): Promise<void> {
    return this.firstSync.promise;
  }

  /** The folder the reassembled CRLs are written to (load it with the store's other paths). */
  get spool(): string {
    return this.spoolDir;
  }

  /** Sets active in the spool: name → SHA-256 of the DER. */
  sets(): Map<string, string> {
    return new Map([...this.applied].map(([k, v]) => [k, v.sha256]));
  }

  /** Starts following the source. Resolves once watching has begun (not once synced: see `whenSynced`). */
  async start(): Promise<void> {
    if (this.ownSpool) this.spoolDir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'ca-proxy-crl-spool-'));
    else await fs.promises.mkdir(this.spoolDir, { recursive: true });
    // Every store load (the store's own file watch included) now reads the spool too.
    this.store.include([this.spoolDir]);
    if (this.source.kind === 'api') this.startInformer(this.source);
    else this.startVolume(this.source);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of [this.timer, this.retryTimer]) if (t) clearTimeout(t);
    if (this.pollTimer) clearInterval(this.pollTimer);
    for (const w of this.fsWatchers) w.close();
    this.fsWatchers = [];
    if (this.informer) await this.informer.stop();
    await this.chain.catch(() => undefined);
    if (this.ownSpool && this.spoolDir) await fs.promises.rm(this.spoolDir, { recursive: true, force: true });
  }

  // --- API source ----------------------------------------------------------------------------

  private startInformer(src: Extract<CrlWatcherSource, { kind: 'api' }>): void {
    const core = src.kubeConfig.makeApiClient(CoreV1Api);
    const selector = src.labelSelector ?? CRL_LABEL_SELECTOR;
    const timeoutBase = src.watchTimeoutSeconds ?? 300;
    const inner = new Watch(src.kubeConfig);
    // ListWatch passes only resourceVersion and the selectors; add bookmarks (fewer 410s after quiet
    // periods) and a server-side timeout, plus a client-side deadline for a connection gone silent.
    const watch = {
      watch: async (p: string, q: Record<string, unknown>, cb: (phase: string, obj: unknown, w: unknown) => void, done: (err: unknown) => void) => {
        const timeoutSeconds = Math.round(timeoutBase * (1 + Math.random()));
        let deadline: NodeJS.Timeout | null = null;
        const ctl = await inner.watch(p, { ...q, allowWatchBookmarks: true, timeoutSeconds }, cb, (err: unknown) => {
          if (deadline) clearTimeout(deadline);
          done(err);
        });
        deadline = setTimeout(() => ctl.abort(), (timeoutSeconds + 30) * 1000);
        deadline.unref();
        return ctl;
      },
    } as unknown as Watch;
    const informer = new ListWatch<V1ConfigMap>(
      `/api/v1/namespaces/${encodeURIComponent(src.namespace)}/configmaps`,
      watch,
      () => core.listNamespacedConfigMap({ namespace: src.namespace, labelSelector: selector }),
      false,
      selector,
    );
    this.informer = informer;
    const changed = (): void => {
      this.delay = this.backoff.initial;
      this.schedule();
    };
    informer.on('add', changed);
    informer.on('update', changed);
    informer.on('delete', changed);
    informer.on('error', (err: unknown) => {
      if (this.stopped) return;
      const wait = Math.round(this.delay * (0.5 + Math.random()));
      this.delay = Math.min(this.delay * 2, this.backoff.max);
      this.log.warn({ err: errText(err), retryMs: wait }, 'CRL ConfigMap list/watch failed; retrying');
      if (this.retryTimer) clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        if (!this.stopped) void informer.start().then(() => this.afterList(), () => undefined);
      }, wait);
      this.retryTimer.unref();
    });
    void informer.start().then(() => this.afterList(), () => undefined);
  }

  /** After a (re)list: reconcile even when the list was empty (no add events would fire). */
  private afterList(): void {
    if (!this.stopped) this.schedule(0);
  }

  private apiSets(): Map<string, CrlConfigMap[]> {
    return groupCrlSets(this.informer ? (this.informer.list() as CrlConfigMap[]) : []);
  }

  // --- volume source -------------------------------------------------------------------------

  private startVolume(src: Extract<CrlWatcherSource, { kind: 'volume' }>): void {
    const check = async (): Promise<void> => {
      let changed = false;
      for (const dir of src.dirs) {
        const print = await volumeFingerprint(dir);
        if (this.volumePrint.get(dir) !== print) {
          this.volumePrint.set(dir, print);
          changed = true;
        }
      }
      if (changed || !this.syncedOnce) this.schedule(0);
    };
    for (const dir of src.dirs) {
      try {
        const w = fs.watch(dir, { persistent: false }, () => void check());
        w.on('error', () => w.close());
        this.fsWatchers.push(w);
      } catch {
        // not mounted (yet): the poll notices
      }
    }
    let polling = false;
    this.pollTimer = setInterval(() => {
      if (polling) return;
      polling = true;
      void check().finally(() => (polling = false));
    }, src.pollMs ?? 1000);
    this.pollTimer.unref();
    void check();
  }

  // --- reconcile -----------------------------------------------------------------------------

  private schedule(ms = this.debounceMs): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.chain = this.chain.then(() => this.reconcile()).catch((e) => this.log.warn({ err: errText(e) }, 'CRL reconcile failed'));
    }, ms);
  }

  /**
   * One pass: decode every set that changed since the last pass, write the good ones to the
   * spool, drop vanished sets, and reload the store once when anything changed. Idempotent.
   */
  private async reconcile(): Promise<void> {
    if (this.stopped) return;
    const changedSets: string[] = [];
    const present = new Set<string>();
    const inputs = this.source.kind === 'api' ? this.apiInputs() : await this.volumeInputs(this.source.dirs);
    for (const input of inputs) {
      present.add(input.set);
      if (this.seen.get(input.set) === input.identity) continue;
      this.seen.set(input.set, input.identity);
      let der: Buffer;
      let sha256: string;
      try {
        ({ der, sha256 } = await input.decode());
      } catch (e) {
        const code = e instanceof CrlConfigMapError ? e.code : 'malformed';
        this.refuse({ set: input.set, code, message: (e as Error).message });
        continue;
      }
      if (this.applied.get(input.set)?.sha256 === sha256) continue;
      const file = path.join(this.spoolDir, `${safeName(input.set)}.der`);
      const tmp = path.join(this.spoolDir, `.${safeName(input.set)}.${process.pid}.tmp`);
      await fs.promises.writeFile(tmp, der);
      await fs.promises.rename(tmp, file);
      this.applied.set(input.set, { sha256, file });
      changedSets.push(input.set);
    }
    for (const [set, a] of [...this.applied]) {
      if (present.has(set)) continue;
      await fs.promises.rm(a.file, { force: true });
      this.applied.delete(set);
      this.seen.delete(set);
      changedSets.push(set);
      this.log.info({ set }, 'CRL set removed (its ConfigMaps are gone)');
    }
    for (const set of [...this.seen.keys()]) if (!present.has(set)) this.seen.delete(set);

    if (changedSets.length > 0 || !this.syncedOnce) {
      const report = await this.store.loadPaths(this.paths);
      const files = new Map([...this.applied].map(([set, a]) => [a.file, set]));
      for (const r of report.refused) {
        const set = files.get(r.source.replace(/#\d+$/, ''));
        if (set !== undefined && changedSets.includes(set)) this.refuse({ set, code: r.code, message: r.message }, true);
      }
      this.emit('applied', { report, sets: changedSets } satisfies { report: LoadReport; sets: string[] });
    }
    if (!this.syncedOnce) {
      this.syncedOnce = true;
      this.firstSync.resolve();
    }
  }

  private refuse(r: SetRefusal, byStore = false): void {
    const msg = r.code === 'incomplete'
      ? 'CRL set incomplete (a publisher may be mid-update); keeping its last good CRL'
      : `CRL set refused${byStore ? ' by the store' : ''}; keeping its last good CRL`;
    (r.code === 'incomplete' ? this.log.info : this.log.warn).call(this.log, { set: r.set, code: r.code, detail: r.message }, msg);
    this.emit('refused', r);
  }

  private apiInputs(): SetInput[] {
    return [...this.apiSets()].map(([set, cms]) => ({
      set,
      identity: cms.map((c) => `${c.metadata?.name}@${c.metadata?.resourceVersion}`).sort().join(','),
      decode: async () => {
        const d = await decodeCrlSet(cms, { maxDerBytes: this.maxCrlBytes });
        return { der: d.der, sha256: d.meta.sha256 };
      },
    }));
  }

  private async volumeInputs(dirs: string[]): Promise<SetInput[]> {
    const out: SetInput[] = [];
    for (const dir of dirs) {
      let names: string[];
      try {
        names = (await fs.promises.readdir(dir)).filter((n) => !n.startsWith('.'));
      } catch {
        continue; // not mounted: no set
      }
      if (!names.some((n) => VOLUME_KEY_RE.test(n))) continue;
      out.push({
        set: path.basename(dir),
        identity: this.volumePrint.get(dir) ?? String(Date.now()),
        decode: () => readVolumeSet(dir, names, this.maxCrlBytes),
      });
    }
    return out;
  }
}

interface SetInput {
  set: string;
  /** Changes whenever the set's content may have changed. */
  identity: string;
  decode(): Promise<{ der: Buffer; sha256: string }>;
}

const VOLUME_KEY_RE = /^crl\.der(\.gz)?(?:\.part-([1-9][0-9]*)-of-([1-9][0-9]*))?$/;

/**
 * Reads one mounted set: `crl.der`, `crl.der.gz` or the parts `crl.der[.gz].part-<i>-of-<n>`.
 * Reads through the `..data` link once, so every file comes from the same kubelet snapshot.
 * @throws CrlConfigMapError
 */
async function readVolumeSet(dir: string, names: string[], maxBytes: number): Promise<{ der: Buffer; sha256: string }> {
  let base = dir;
  try {
    // Resolve `..data` once: a swap during the read then cannot mix two snapshots.
    base = path.join(dir, await fs.promises.readlink(path.join(dir, '..data')));
  } catch {
    // a plain folder (not a kubelet mount)
  }
  const keys = names.map((n) => ({ n, m: VOLUME_KEY_RE.exec(n) })).filter((k) => k.m !== null);
  const gz = new Set(keys.map((k) => Boolean(k.m![1])));
  const counts = new Set(keys.map((k) => (k.m![3] ? Number(k.m![3]) : 1)));
  if (gz.size !== 1 || counts.size !== 1) throw new CrlConfigMapError('malformed', `${dir}: mixed CRL keys ${keys.map((k) => k.n).join(', ')}`);
  const n = [...counts][0]!;
  const byIndex = new Map(keys.map((k) => [k.m![2] ? Number(k.m![2]) : 1, k.n]));
  const chunks: Buffer[] = [];
  for (let i = 1; i <= n; i++) {
    const name = byIndex.get(i);
    if (!name) throw new CrlConfigMapError('incomplete', `${dir}: part ${i} of ${n} missing`);
    chunks.push(await fs.promises.readFile(path.join(base, name)));
  }
  let der = Buffer.concat(chunks);
  if ([...gz][0]) {
    try {
      der = await gunzip(der, { maxOutputLength: maxBytes });
    } catch (e) {
      throw new CrlConfigMapError(e instanceof RangeError ? 'too_large' : 'malformed', `${dir}: gzip: ${(e as Error).message}`);
    }
  }
  return { der, sha256: createHash('sha256').update(der).digest('hex') };
}

/** Changes when kubelet swaps `..data`, or (plain folders) when a file changes. */
async function volumeFingerprint(dir: string): Promise<string> {
  try {
    return `data:${await fs.promises.readlink(path.join(dir, '..data'))}`;
  } catch {
    // not a kubelet mount
  }
  try {
    const names = (await fs.promises.readdir(dir)).filter((n) => !n.startsWith('.')).sort();
    const parts: string[] = [];
    for (const n of names) {
      const s = await fs.promises.stat(path.join(dir, n)).catch(() => null);
      parts.push(s ? `${n}:${s.ino}:${s.size}:${s.mtimeMs}` : `${n}:-`);
    }
    return parts.join('|');
  } catch {
    return '-';
  }
}

function safeName(set: string): string {
  return set.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\./, '_');
}

/**
 * Builds and starts the watcher for a `revocation.kubernetes` config section. `mode` `auto` uses the
 * API when a kubeconfig is configured or the process runs in a pod, else `volumePaths`.
 * @throws Error when neither source can be used
 */
export async function startCrlWatcherFromConfig(
  cfg: KubernetesCrlSource, store: RevocationStore, opts: { paths?: string[]; logger?: WatcherLogger } = {},
): Promise<CrlWatcher> {
  const mode = cfg.mode ?? 'auto';
  const volume = cfg.volumePaths ?? [];
  const apiPossible = (cfg.kubeconfig ?? null) !== null || Boolean(process.env.KUBERNETES_SERVICE_HOST);
  let source: CrlWatcherSource;
  if (mode === 'volume' || (mode === 'auto' && !apiPossible && volume.length > 0)) {
    if (volume.length === 0) throw new Error('revocation.kubernetes: mode volume needs volumePaths');
    source = { kind: 'volume', dirs: volume };
  } else {
    source = { kind: 'api', kubeConfig: loadKubeConfig(cfg.kubeconfig ?? null), namespace: cfg.namespace, labelSelector: cfg.labelSelector };
  }
  const w = new CrlWatcher({ store, source, paths: opts.paths, logger: opts.logger });
  await w.start();
  opts.logger?.info({ source: source.kind, namespace: cfg.namespace }, 'CRL ConfigMap watcher started');
  return w;
}
