/**
 * The CRL publisher (`ca-proxy publish-crl`): CA → validated CRL → ConfigMaps (docs/kubernetes.md,
 * "CRL ConfigMap format" and "Publisher").
 *
 * One reconcile loop per source URL, run only by the replica holding the Lease (lease.ts):
 *
 *   fetch (fetch.ts: timeout, size limit, ETag / If-Modified-Since, jittered retries)
 *   → validate as a processor does (crl-worker.ts `loadCrlFile`: DER or PEM, parse, critical
 *     extensions, signature by a trusted key — off the main thread for large CRLs; then
 *     thisUpdate not in the future, a decodable issuingDistributionPoint, and the cRLNumber
 *     (or thisUpdate) never below the one already published for the source)
 *   → write the set (crl-configmap.ts: plain / gzip / parts), each ConfigMap with a
 *     `resourceVersion` precondition, then delete leftover ConfigMaps of the set
 *   → schedule the next round at `intervalMs`, and in any case before nextUpdate − margin.
 *
 * A refused CRL is never written: what is published stays, a Warning Event (`CRLRefused`) goes on
 * the set's ConfigMap and `ca_proxy_publisher_refusals_total{code}` counts it. A CRL past its
 * nextUpdate is treated as the processor treats it: accepted when it is the newest there is
 * (processors answer `stale` with it, and its revoked entries still count), with a Warning.
 * Within `marginMs` of the published CRL's nextUpdate and no newer CRL: a Warning Event
 * `CRLNextUpdateSoon` (`CRLExpired` once past it).
 *
 * The floor for rollback comes from the API server (the newest CRL the set's annotations
 * announce), read when this replica becomes leader, so a new leader never publishes a CRL older
 * than its predecessor did. Before every write the publisher checks `isLeader()`; on a `409
 * Conflict` it re-reads, and gives up the write when the stored object already announces a CRL
 * at least as new.
 */
import crypto, { type X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CoreV1Api, setHeaderOptions, type KubeConfig, type V1ConfigMap } from '@kubernetes/client-node';
import { certInfo, formatName } from '../pki/certinfo';
import type { ParsedCrl } from '../pki/crl';
import { crlTimeStatus } from '../pki/crl-verify';
import type { CrlErrorCode } from '../pki/errors';
import { loadCrlFile } from '../pki/crl-worker';
import { parseDistributionPoints } from '../pki/names';
import { crlRecord } from '../pki/revocation';
import { initSourceMetrics, type FetchResultLabel, type PublisherMetrics } from '../metrics/publisher';
import { ANN, LABEL_SET, encodeCrlConfigMaps, readCrlMeta, sourceIdFor, summarizeCrlSet, type CrlConfigMap, type CrlMeta } from './crl-configmap';
import { FetchError, fetchCrlWithRetry } from './fetch';
import { statusOf } from './lease';
import { errText } from '../pki/errors';

export interface PublisherLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** What the publisher needs from leader election (a LeaderElector fits). */
export interface Leadership {
  readonly identity: string;
  isLeader(): boolean;
  on(event: 'leading' | 'stopped-leading', fn: () => void): unknown;
  off(event: 'leading' | 'stopped-leading', fn: () => void): unknown;
}

export interface PublisherOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  /** Set name prefix: a source's set is `<configMapName>-<sourceIdFor(url)>`. */
  configMapName: string;
  urls: string[];
  /** Certificates whose keys may sign the CRLs (trust anchors, CRL signers). */
  trust: X509Certificate[];
  leadership: Leadership;
  intervalMs: number;
  /** Fetch again no later than nextUpdate − marginMs; the window for `CRLNextUpdateSoon`. */
  marginMs: number;
  /** Clock skew tolerated for thisUpdate / nextUpdate (the processors' revocation.clockSkewSeconds), ms. */
  skewMs: number;
  fetch: { timeoutMs: number; maxBytes: number; retries: number; baseDelayMs?: number; maxDelayMs?: number };
  /** Most payload bytes per ConfigMap (default: the format's 1,000,000). */
  maxPayloadBytes?: number;
  /** Shortest wait between rounds of one source, ms (default min(intervalMs, 30 s)). */
  minDelayMs?: number;
  metrics?: PublisherMetrics;
  log?: PublisherLogger;
  now?: () => number;
}

/** The state of one source, as `status()` reports it. */
export interface SourceStatus {
  url: string;
  set: string;
  /** The newest CRL published for this source (null: none yet). */
  published: CrlMeta | null;
  lastResult: FetchResultLabel | null;
  lastError: string | null;
  lastSuccessAt: Date | null;
  nextRoundAt: Date | null;
}

interface Source extends SourceStatus {
  etag: string | null;
  lastModified: string | null;
  /** Whether `stored` was read from the API server during this leadership. */
  synced: boolean;
  /**
   * The set's ConfigMaps as last read or written by this replica, as skeletons (metadata and
   * binaryData keys, values emptied): what summarizeCrlSet and the resourceVersion
   * preconditions need, without holding megabytes of base64.
   */
  stored: Map<string, CrlConfigMap>;
  timer: NodeJS.Timeout | null;
  running: Promise<void> | null;
  again: boolean;
}

/** A CRL that passed validation, ready to publish. */
interface Valid {
  der: Buffer;
  meta: CrlMeta;
  crl: ParsedCrl;
  expired: boolean;
}

class Refused extends Error {
  constructor(
    readonly code: CrlErrorCode | 'several_crls',
    message: string,
  ) {
    super(message);
  }
}

/**
 * The http(s) URIs in the cRLDistributionPoints (RFC 5280 §4.2.1.13) of these certificates, in
 * order, without duplicates. Distribution points with a cRLIssuer (indirect CRLs) are included:
 * their CRLs are validated like any other. Certificates whose extension cannot be decoded are
 * reported through `onError` and skipped.
 */
export function distributionPointUrls(certs: readonly X509Certificate[], onError?: (cert: X509Certificate, err: Error) => void): string[] {
  const out: string[] = [];
  for (const c of certs) {
    try {
      const info = certInfo(c);
      if (!info.crlDistributionPoints) continue;
      for (const dp of parseDistributionPoints(info.crlDistributionPoints, info.issuerDer)) {
        for (const gn of dp.name ?? []) if (gn.type === 'uri' && /^https?:\/\//i.test(gn.value) && !out.includes(gn.value)) out.push(gn.value);
      }
    } catch (e) {
      onError?.(c, e as Error);
    }
  }
  return out;
}

export class Publisher {
  private readonly core: CoreV1Api;
  private readonly sources: Source[];
  private readonly now: () => number;
  private readonly workDir: string;
  private readonly events: ConfigMapEvents;
  private started = false;
  private readonly onLeading = (): void => this.kickAll();
  private readonly onStopped = (): void => this.pauseAll();

  constructor(private readonly o: PublisherOptions) {
    this.core = o.kubeConfig.makeApiClient(CoreV1Api);
    this.now = o.now ?? Date.now;
    this.workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-publisher-'));
    this.events = new ConfigMapEvents(this.core, o.namespace, o.leadership.identity, this.now, o.log);
    this.sources = [...new Set(o.urls)].map((url) => ({
      url,
      set: `${o.configMapName}-${sourceIdFor(url)}`,
      published: null,
      lastResult: null,
      lastError: null,
      lastSuccessAt: null,
      nextRoundAt: null,
      etag: null,
      lastModified: null,
      synced: false,
      stored: new Map(),
      timer: null,
      running: null,
      again: false,
    }));
    for (const s of this.sources) if (o.metrics) initSourceMetrics(o.metrics, s.url);
  }

  /** Begin reconciling whenever this replica leads (the Leadership object is started by the caller). */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.o.leadership.on('leading', this.onLeading);
    this.o.leadership.on('stopped-leading', this.onStopped);
    if (this.o.leadership.isLeader()) this.kickAll();
  }

  /** Stop: no new rounds; waits for rounds in flight. */
  async stop(): Promise<void> {
    this.started = false;
    this.o.leadership.off('leading', this.onLeading);
    this.o.leadership.off('stopped-leading', this.onStopped);
    this.pauseAll();
    await Promise.all(this.sources.map((s) => s.running));
    fs.rmSync(this.workDir, { recursive: true, force: true });
  }

  status(): SourceStatus[] {
    return this.sources.map(({ url, set, published, lastResult, lastError, lastSuccessAt, nextRoundAt }) => ({ url, set, published, lastResult, lastError, lastSuccessAt, nextRoundAt }));
  }

  /** nextUpdate of each source's published CRL (the metrics' seconds-until gauge). */
  nextUpdates(): Map<string, Date | null> {
    return new Map(this.sources.filter((s) => s.published).map((s) => [s.url, s.published!.nextUpdate]));
  }

  /** Run a round of every source now (when leading). Resolves when those rounds are done. */
  async runOnce(): Promise<void> {
    await Promise.all(this.sources.map((s) => this.kick(s)));
  }

  private kickAll(): void {
    if (this.o.metrics) this.o.metrics.leader.set(1);
    for (const s of this.sources) void this.kick(s);
  }

  private pauseAll(): void {
    if (this.o.metrics) this.o.metrics.leader.set(0);
    for (const s of this.sources) {
      if (s.timer) clearTimeout(s.timer);
      s.timer = null;
      s.nextRoundAt = null;
      // The next leadership re-reads what is published: another replica may have written since.
      s.synced = false;
      s.etag = s.lastModified = null;
    }
  }

  private kick(s: Source): Promise<void> {
    if (s.running) {
      s.again = true;
      return s.running;
    }
    if (s.timer) clearTimeout(s.timer);
    s.timer = null;
    s.running = (async () => {
      do {
        s.again = false;
        await this.round(s);
      } while (s.again && this.started && this.o.leadership.isLeader());
    })().finally(() => {
      s.running = null;
      this.schedule(s);
    });
    return s.running;
  }

  private schedule(s: Source): void {
    if (!this.started || !this.o.leadership.isLeader()) return;
    const now = this.now();
    let delay = this.o.intervalMs;
    const nu = s.published?.nextUpdate;
    if (nu) delay = Math.min(delay, nu.getTime() - this.o.marginMs - now);
    delay = Math.max(delay, this.o.minDelayMs ?? Math.min(this.o.intervalMs, 30_000));
    s.nextRoundAt = new Date(now + delay);
    s.timer = setTimeout(() => {
      s.timer = null;
      void this.kick(s);
    }, delay);
    s.timer.unref?.();
  }

  /** One fetch → validate → publish round of a source. Never throws. */
  private async round(s: Source): Promise<void> {
    if (!this.o.leadership.isLeader()) return;
    let result: FetchResultLabel;
    try {
      result = await this.reconcile(s);
      s.lastError = null;
    } catch (e) {
      if (e instanceof Refused) {
        result = 'refused';
        s.lastError = `${e.code}: ${e.message}`;
        this.o.metrics?.refusals.inc({ source: s.url, code: e.code });
        this.o.log?.warn({ source: s.url, code: e.code, err: e.message, published: s.published?.crlNumber ?? null }, 'CRL refused; the published CRL stays');
        await this.events.warn(s, 'CRLRefused', `CRL from ${s.url} refused (${e.code}): ${e.message}. Still published: ${describe(s.published)}.`);
      } else if (e instanceof FetchError) {
        result = 'fetch_failed';
        s.lastError = `${e.code}: ${e.message}`;
        this.o.metrics?.refusals.inc({ source: s.url, code: `fetch_${e.code}` });
        this.o.log?.warn({ source: s.url, code: e.code, err: e.message }, 'CRL fetch failed; the published CRL stays');
      } else {
        result = 'write_failed';
        s.lastError = errText(e);
        this.o.log?.warn({ source: s.url, err: s.lastError }, 'publishing the CRL failed; will retry');
      }
    }
    s.lastResult = result;
    this.o.metrics?.fetches.inc({ source: s.url, result });
    if ((result === 'published' || result === 'unchanged' || result === 'not_modified') && s.published) {
      s.lastSuccessAt = new Date(this.now());
      this.o.metrics?.lastSuccess.set({ source: s.url }, this.now() / 1000);
    }
    if (s.published?.crlNumber && this.o.metrics) this.o.metrics.publishedCrlNumber.set({ source: s.url }, Number(s.published.crlNumber));
    await this.warnIfNearNextUpdate(s, result);
  }

  private async reconcile(s: Source): Promise<FetchResultLabel> {
    if (!s.synced) {
      s.stored = new Map((await this.listSet(s)).map((cm) => [cm.metadata?.name ?? '', skeleton(cm)]));
      s.published = summarizeCrlSet([...s.stored.values()]).newest;
      s.synced = true;
    }
    const f = await fetchCrlWithRetry(
      s.url,
      { timeoutMs: this.o.fetch.timeoutMs, maxBytes: this.o.fetch.maxBytes, etag: s.etag, lastModified: s.lastModified },
      {
        retries: this.o.fetch.retries,
        baseDelayMs: this.o.fetch.baseDelayMs,
        maxDelayMs: this.o.fetch.maxDelayMs,
        onRetry: (attempt, err, delayMs) => this.o.log?.info({ source: s.url, attempt, err: err.message, delayMs }, 'CRL fetch failed; retrying'),
      },
    );
    if (f.status === 'not_modified') return 'not_modified';
    // Validators only describe a body we have dealt with; a refused body is fetched again in full.
    s.etag = s.lastModified = null;
    const v = await this.validate(s, f.body);
    const sum = summarizeCrlSet([...s.stored.values()]);
    if (sum.newest && isLower(v.meta, sum.newest)) {
      s.published = sum.newest;
      throw new Refused('rollback', `cRLNumber ${v.meta.crlNumber ?? 'none'} / thisUpdate ${v.meta.thisUpdate.toISOString()} is older than the published ${describe(sum.newest)}`);
    }
    if (sum.clean && sum.complete?.sha256 === v.meta.sha256) {
      s.published = sum.complete;
      [s.etag, s.lastModified] = [f.etag, f.lastModified];
      return 'unchanged';
    }
    const written = await this.write(s, v);
    if (!written) return 'write_failed';
    s.published = v.meta;
    [s.etag, s.lastModified] = [f.etag, f.lastModified];
    this.o.log?.info(
      { source: s.url, set: s.set, crlNumber: v.meta.crlNumber, entries: v.crl.entryCount, bytes: v.der.length, configMaps: written, nextUpdate: v.meta.nextUpdate?.toISOString() ?? null },
      'CRL published',
    );
    if (v.expired) await this.events.warn(s, 'CRLExpired', `CRL from ${s.url} published past its nextUpdate (${v.meta.nextUpdate?.toISOString()}): it is the newest the CA serves; processors answer "stale" with it.`);
    return 'published';
  }

  /** Validate a fetched body as the processor's RevocationStore would. @throws Refused */
  private async validate(s: Source, body: Buffer): Promise<Valid> {
    const file = path.join(this.workDir, `${s.set}.crl`);
    await fs.promises.writeFile(file, body);
    let res;
    try {
      res = await loadCrlFile(file, { maxBytes: this.o.fetch.maxBytes, trust: this.o.trust });
    } finally {
      await fs.promises.rm(file, { force: true });
    }
    if (res.readError !== undefined) throw new Refused('malformed', `could not read the fetched body back: ${res.readError}`);
    if (res.items.length !== 1) throw new Refused('several_crls', `${res.items.length} CRLs at one URL; a source must serve one CRL`);
    const it = res.items[0]!;
    if (!it.ok) throw new Refused(it.code, it.message);
    const crl = it.crl;
    const now = new Date(this.now());
    const t = crlTimeStatus(crl, now, this.o.skewMs);
    if (t === 'not_yet_valid') throw new Refused('not_yet_valid', `thisUpdate ${crl.thisUpdate.toISOString()} is after now (${now.toISOString()}) + ${this.o.skewMs} ms`);
    try {
      crlRecord(crl);
    } catch (e) {
      throw new Refused('malformed', `issuingDistributionPoint: ${(e as Error).message}`);
    }
    let issuer: string;
    try {
      issuer = formatName(crl.issuerDer);
    } catch {
      issuer = `#${crl.issuerDer.toString('hex')}`;
    }
    const der = crl.der;
    return {
      der,
      crl,
      expired: t === 'expired',
      meta: {
        issuer,
        thisUpdate: crl.thisUpdate,
        nextUpdate: crl.nextUpdate,
        crlNumber: crl.crlNumber === null ? null : crl.crlNumber.toString(),
        sha256: crl.sha256,
        source: s.url,
      },
    };
  }

  private async listSet(s: Source): Promise<V1ConfigMap[]> {
    const list = await this.core.listNamespacedConfigMap({ namespace: this.o.namespace, labelSelector: `${LABEL_SET}=${s.set}` });
    return list.items ?? [];
  }

  /**
   * Write the set: every ConfigMap of the new generation (create, or replace under the stored
   * resourceVersion), then delete the set's other ConfigMaps. Returns the number written, or 0
   * when leadership was lost or a newer CRL was found in the way.
   */
  private async write(s: Source, v: Valid): Promise<number> {
    const enc = await encodeCrlConfigMaps({
      set: s.set,
      namespace: this.o.namespace,
      der: v.der,
      meta: v.meta,
      publishedBy: this.o.leadership.identity,
      maxPayloadBytes: this.o.maxPayloadBytes,
      labels: { 'app.kubernetes.io/managed-by': 'ca-proxy-publisher' },
    });
    for (const cm of enc.configMaps) {
      if (!this.o.leadership.isLeader()) {
        this.o.log?.warn({ source: s.url, set: s.set }, 'lost the Lease while writing; the next leader rewrites the set');
        return 0;
      }
      if (!(await this.put(s, cm as V1ConfigMap, v.meta))) return 0;
    }
    const keep = new Set(enc.configMaps.map((c) => c.metadata!.name!));
    for (const [name, cm] of [...s.stored]) {
      if (keep.has(name) || !this.o.leadership.isLeader()) continue;
      try {
        await this.core.deleteNamespacedConfigMap({ name, namespace: this.o.namespace, body: { preconditions: { resourceVersion: cm.metadata?.resourceVersion } } });
        s.stored.delete(name);
        this.o.metrics?.writes.inc({ result: 'ok' });
      } catch (e) {
        const st = statusOf(e);
        if (st === 404) s.stored.delete(name);
        else {
          this.o.metrics?.writes.inc({ result: st === 409 ? 'conflict' : 'error' });
          this.o.log?.warn({ set: s.set, name, err: errText(e) }, 'could not delete a leftover CRL ConfigMap');
        }
      }
    }
    return enc.configMaps.length;
  }

  /** Create or replace one ConfigMap with a resourceVersion precondition; on 409 re-read and retry. */
  private async put(s: Source, cm: V1ConfigMap, meta: CrlMeta): Promise<boolean> {
    const name = cm.metadata!.name!;
    let current: CrlConfigMap | null = s.stored.get(name) ?? null;
    for (let attempt = 0; attempt < 4; attempt++) {
      try {
        let out: V1ConfigMap;
        if (current) {
          cm.metadata!.resourceVersion = current.metadata?.resourceVersion;
          out = await this.core.replaceNamespacedConfigMap({ name, namespace: this.o.namespace, body: cm });
        } else {
          delete cm.metadata!.resourceVersion;
          out = await this.core.createNamespacedConfigMap({ namespace: this.o.namespace, body: cm });
        }
        s.stored.set(name, skeleton(out));
        this.o.metrics?.writes.inc({ result: 'ok' });
        return true;
      } catch (e) {
        const st = statusOf(e);
        if (st !== 409 && !(st === 404 && current)) {
          this.o.metrics?.writes.inc({ result: 'error' });
          throw e;
        }
        this.o.metrics?.writes.inc({ result: 'conflict' });
        try {
          current = skeleton(await this.core.readNamespacedConfigMap({ name, namespace: this.o.namespace }));
          s.stored.set(name, current);
        } catch (re) {
          if (statusOf(re) !== 404) throw re;
          current = null;
          s.stored.delete(name);
        }
        // Someone else (a stale leader, a person) wrote a CRL at least as new: do not go back.
        let theirs: CrlMeta | null = null;
        try {
          if (current) theirs = readCrlMeta(current);
        } catch {
          theirs = null;
        }
        if (theirs && !isLower(theirs, meta) && theirs.sha256 !== meta.sha256) {
          this.o.log?.warn({ set: s.set, name, theirs: theirs.crlNumber, ours: meta.crlNumber }, 'a CRL at least as new is already there; not overwriting it');
          s.published = theirs;
          return false;
        }
      }
    }
    throw new Error(`ConfigMap ${name}: still conflicting after 4 attempts`);
  }

  private async warnIfNearNextUpdate(s: Source, result: FetchResultLabel): Promise<void> {
    const nu = s.published?.nextUpdate;
    if (!nu || result === 'published') return;
    const left = nu.getTime() - this.now();
    if (left > this.o.marginMs) return;
    const why = s.lastError ? ` Last problem: ${s.lastError}.` : '';
    if (left <= 0) await this.events.warn(s, 'CRLExpired', `The published CRL from ${s.url} (${describe(s.published)}) is past its nextUpdate ${nu.toISOString()} and the CA serves no newer one.${why}`);
    // No "in N s" in the message: the same message aggregates into one Event with a count.
    else await this.events.warn(s, 'CRLNextUpdateSoon', `The published CRL from ${s.url} (${describe(s.published)}) reaches its nextUpdate ${nu.toISOString()} (margin ${this.o.marginMs / 1000} s) and the CA serves no newer one yet.${why}`);
  }
}

/** Metadata and binaryData keys of a ConfigMap, values emptied. */
function skeleton(cm: V1ConfigMap | CrlConfigMap): CrlConfigMap {
  return {
    metadata: { ...cm.metadata, labels: { ...cm.metadata?.labels }, annotations: { ...cm.metadata?.annotations } } as CrlConfigMap['metadata'],
    binaryData: Object.fromEntries(Object.keys(cm.binaryData ?? {}).map((k) => [k, ''])),
    ...(cm.data ? { data: Object.fromEntries(Object.keys(cm.data).map((k) => [k, ''])) } : {}),
  };
}

/** `c` is older than the floor: lower cRLNumber, or (without numbers on both) an earlier thisUpdate — the store's rule. */
function isLower(c: CrlMeta, floor: CrlMeta): boolean {
  if (c.crlNumber !== null && floor.crlNumber !== null) return BigInt(c.crlNumber) < BigInt(floor.crlNumber);
  return c.thisUpdate.getTime() < floor.thisUpdate.getTime();
}

function describe(m: CrlMeta | null): string {
  return m ? `cRLNumber ${m.crlNumber ?? 'none'}, thisUpdate ${m.thisUpdate.toISOString()}` : 'nothing';
}

/**
 * Warning Events on a set's ConfigMap, aggregated as client-go's recorder does: one Event per
 * (ConfigMap, reason, message); the first occurrence creates it, later ones raise `count` and
 * `lastTimestamp` with a merge patch, and an Event that expired meanwhile (the API server's event
 * TTL) is created again. RBAC: create + patch on events. Failures are logged, never thrown (an
 * Event is worth less than the publish it describes).
 */
const MAX_EVENT_KEYS = 1000;

class ConfigMapEvents {
  /** key → Event name and the count last written; the oldest keys are forgotten past MAX_EVENT_KEYS. */
  private readonly seen = new Map<string, { name: string; count: number }>();

  constructor(
    private readonly core: CoreV1Api,
    private readonly namespace: string,
    private readonly instance: string,
    private readonly now: () => number,
    private readonly log?: PublisherLogger,
  ) {}

  async warn(s: { set: string; url: string; stored: Map<string, CrlConfigMap> }, reason: string, message: string): Promise<void> {
    // On the set's first ConfigMap (`<set>` whole, `<set>-1` split), with its uid so `kubectl
    // describe configmap` lists it; with nothing published yet, by name only.
    const first = [...s.stored.values()].map((c) => c.metadata!).sort((a, b) => (a.name! < b.name! ? -1 : 1))[0];
    const involved: { name: string; uid?: string } = first ? { name: first.name!, uid: first.uid } : { name: s.set };
    const key = `${involved.name}|${reason}|${message}`;
    const t = new Date(this.now());
    const prev = this.seen.get(key);
    try {
      if (prev) {
        try {
          await this.core.patchNamespacedEvent(
            { name: prev.name, namespace: this.namespace, body: { count: prev.count + 1, lastTimestamp: t } },
            setHeaderOptions('Content-Type', 'application/merge-patch+json'),
          );
          prev.count++;
          return;
        } catch (e) {
          if (statusOf(e) !== 404) throw e;
          this.seen.delete(key); // expired: create it again
        }
      }
      const name = `${involved.name}.${crypto.createHash('sha256').update(`${key}|${t.getTime()}`).digest('hex').slice(0, 16)}`;
      await this.core.createNamespacedEvent({
        namespace: this.namespace,
        body: {
          apiVersion: 'v1',
          kind: 'Event',
          metadata: { name, namespace: this.namespace, annotations: { [ANN.source]: s.url } },
          involvedObject: { apiVersion: 'v1', kind: 'ConfigMap', name: involved.name, namespace: this.namespace, uid: involved.uid },
          reason,
          message: message.slice(0, 1024),
          type: 'Warning',
          count: 1,
          firstTimestamp: t,
          lastTimestamp: t,
          source: { component: 'ca-proxy-publisher', host: this.instance },
          reportingComponent: 'ca-proxy-publisher',
          reportingInstance: this.instance,
        },
      });
      this.seen.set(key, { name, count: 1 });
      if (this.seen.size > MAX_EVENT_KEYS) this.seen.delete(this.seen.keys().next().value!);
    } catch (e) {
      this.log?.warn({ reason, err: errText(e) }, 'could not write the Event');
    }
  }
}

