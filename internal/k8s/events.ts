/**
 * Denials as Kubernetes Events on the workload's Pod, so `kubectl describe pod` shows why egress
 * failed.
 *
 * Which API: core/v1 Events. `kubectl describe pod` lists core/v1 Events with the field selector
 * involvedObject.{kind,name,namespace,uid}; events.k8s.io/v1 Events are readable there too, but
 * core/v1 keeps `count`/`lastTimestamp`, which is how describe shows "(x12 over 3m)". Because
 * describe selects on the Pod's UID, the reporter reads the Pod once (GET, cached) to fill
 * `involvedObject.uid`; without RBAC for that the Event is still written, without uid (then only
 * `kubectl get events --field-selector involvedObject.name=<pod>` shows it).
 *
 * Aggregation (as client-go's EventCorrelator does): one Event per (namespace, pod, reason); the
 * first denial creates it, later ones raise `count` and `lastTimestamp` with a merge patch. Rate
 * limit: a token bucket of `ratePerMinute` writes per minute for the whole process; denials that
 * arrive while no token is left are only counted and go out with the next write of their Event.
 * An Event that vanished (TTL, default 1 h) is created again. API failures are logged, never thrown.
 *
 * `report(decision)` does nothing for allowed connections and when the decision does not name
 * the pod (`source.pod`; `source.namespace`, else the configured default namespace).
 * RBAC: create + patch on events (and optionally get on pods) in the workloads' namespaces.
 */
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { CoreV1Api, setHeaderOptions, type CoreV1Event, type KubeConfig } from '@kubernetes/client-node';
import type { Decision } from '../engine/decision';
import type { KubernetesEventsConfig } from '../config/types';
import { loadKubeConfig } from './kubeconfig';

export interface PodEventsOptions {
  kubeConfig: KubeConfig;
  /** Event writes per minute, whole process (token bucket, burst = the same number). */
  ratePerMinute: number;
  /** Namespace assumed when a decision names a pod without a namespace; null = skip those. */
  defaultNamespace?: string | null;
  /** `reportingInstance` / `source.host` (default: the host name, i.e. the pod name in a cluster). */
  instance?: string;
  /** How often pending counts are flushed, ms (default 1000). */
  flushMs?: number;
  /** Most (pod, reason) keys remembered (default 10 000); the least recently denied are forgotten. */
  maxKeys?: number;
  now?: () => Date;
  logger?: { warn(obj: object, msg: string): void };
}

export const REPORTING_COMPONENT = 'ca-proxy';
const MESSAGE_MAX = 1024;

interface Aggregate {
  namespace: string;
  pod: string;
  reason: string;
  /** Event object name once created. */
  name: string | null;
  /** Denials counted (the Event's count once written). */
  count: number;
  /** `count` as last written to the API. */
  written: number;
  first: Date;
  last: Date;
  message: string;
  inFlight: boolean;
}

/** `certificate_revoked` → `CertificateRevoked` (Event reasons are UpperCamelCase). */
export function eventReason(reason: string): string {
  return reason.split(/[_\W]+/).filter(Boolean).map((w) => w[0]!.toUpperCase() + w.slice(1)).join('');
}

/** The human line for a denial, as kubectl shows it under Message. */
export function denialMessage(d: Decision): string {
  const dest = `${d.destination.sni ?? d.destination.address ?? '?'}${d.destination.port ? `:${d.destination.port}` : ''}`;
  const parts = [`ca-proxy denied TLS to ${dest}: ${d.reason}`];
  if (d.revocation?.status === 'revoked') {
    parts.push(`certificate serial ${d.revocation.serial ?? '?'} revoked${d.revocation.reason ? ` (${d.revocation.reason})` : ''}${d.revocation.cRLNumber ? ` by CRL #${d.revocation.cRLNumber}` : ''}`);
  }
  if (d.detail) parts.push(d.detail);
  parts.push(`rule ${d.rule}`);
  const m = parts.join('; ');
  return m.length > MESSAGE_MAX ? m.slice(0, MESSAGE_MAX - 1) + '…' : m;
}

export class PodEventReporter {
  private readonly core: CoreV1Api;
  private readonly rate: number;
  private tokens: number;
  private lastRefill: number;
  private readonly aggregates = new Map<string, Aggregate>();
  private readonly uids = new Map<string, string | null>();
  private readonly timer: NodeJS.Timeout;
  private readonly now: () => Date;
  private readonly instance: string;
  private readonly defaultNamespace: string | null;
  private readonly maxKeys: number;
  private readonly log: { warn(obj: object, msg: string): void };
  private flushing: Promise<void> | null = null;
  private again: Promise<void> | null = null;
  /** Writes done (create + patch), for tests and metrics. */
  writes = 0;

  constructor(opts: PodEventsOptions) {
    this.core = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.rate = Math.max(1, opts.ratePerMinute);
    this.tokens = this.rate;
    this.now = opts.now ?? (() => new Date());
    this.lastRefill = this.now().getTime();
    this.instance = opts.instance ?? os.hostname();
    this.defaultNamespace = opts.defaultNamespace ?? null;
    this.maxKeys = opts.maxKeys ?? 10_000;
    this.log = opts.logger ?? { warn: () => undefined };
    this.timer = setInterval(() => void this.flush(), opts.flushMs ?? 1000);
    this.timer.unref();
  }

  /** Counts a denial against its pod; writes happen on the next flush (at most `flushMs` later). */
  report(d: Decision): void {
    if (d.outcome !== 'deny' || !d.source.pod) return;
    const namespace = d.source.namespace ?? this.defaultNamespace;
    if (!namespace) return;
    const reason = eventReason(d.reason);
    const key = `${namespace}/${d.source.pod}/${reason}`;
    const now = this.now();
    let a = this.aggregates.get(key);
    if (a) this.aggregates.delete(key); // re-insert: Map order is the LRU order
    else a = { namespace, pod: d.source.pod, reason, name: null, count: 0, written: 0, first: now, last: now, message: '', inFlight: false };
    a.count++;
    a.last = now;
    a.message = denialMessage(d);
    this.aggregates.set(key, a);
    while (this.aggregates.size > this.maxKeys) {
      const oldest = this.aggregates.keys().next().value as string;
      this.aggregates.delete(oldest);
    }
    if (a.written === 0 && !a.inFlight) void this.flush(); // the first denial of a pod shows at once
  }

  /** Writes every pending aggregate the rate limit allows. Resolves when those writes are done. */
  flush(): Promise<void> {
    // A flush asked for during another one runs once more after it (it may have new work).
    if (this.flushing) return (this.again ??= this.flushing.then(() => ((this.again = null), this.flush())));
    this.flushing = this.doFlush().finally(() => (this.flushing = null));
    return this.flushing;
  }

  private async doFlush(): Promise<void> {
    const nowMs = this.now().getTime();
    this.tokens = Math.min(this.rate, this.tokens + ((nowMs - this.lastRefill) / 60_000) * this.rate);
    this.lastRefill = nowMs;
    const jobs: Promise<void>[] = [];
    for (const a of this.aggregates.values()) {
      if (a.count === a.written || a.inFlight) continue;
      if (this.tokens < 1) break;
      this.tokens -= 1;
      a.inFlight = true;
      jobs.push(this.write(a).finally(() => (a.inFlight = false)));
    }
    await Promise.all(jobs);
  }

  private async write(a: Aggregate): Promise<void> {
    const count = a.count;
    try {
      if (a.name !== null) {
        try {
          await this.core.patchNamespacedEvent(
            { name: a.name, namespace: a.namespace, body: { count, lastTimestamp: a.last, message: a.message } },
            setHeaderOptions('Content-Type', 'application/merge-patch+json'),
          );
          this.writes++;
          a.written = count;
          return;
        } catch (e) {
          if (httpCode(e) !== 404) throw e;
          a.name = null; // expired (event TTL): start a new Event
        }
      }
      const uid = await this.podUid(a.namespace, a.pod);
      const name = `${a.pod}.${randomBytes(8).toString('hex')}`;
      const body: CoreV1Event = {
        metadata: { name, namespace: a.namespace },
        involvedObject: { apiVersion: 'v1', kind: 'Pod', name: a.pod, namespace: a.namespace, ...(uid ? { uid } : {}) },
        reason: a.reason,
        message: a.message,
        type: 'Warning',
        count,
        firstTimestamp: a.first,
        lastTimestamp: a.last,
        source: { component: REPORTING_COMPONENT, host: this.instance },
        reportingComponent: REPORTING_COMPONENT,
        reportingInstance: this.instance,
        action: 'DenyEgress',
      };
      await this.core.createNamespacedEvent({ namespace: a.namespace, body });
      this.writes++;
      a.name = name;
      a.written = count;
    } catch (e) {
      this.log.warn({ pod: `${a.namespace}/${a.pod}`, reason: a.reason, err: httpCode(e) ?? String(e) }, 'could not write the denial Event');
    }
  }

  /** The Pod's UID (cached; null when it cannot be read, e.g. no RBAC for pods). */
  private async podUid(namespace: string, pod: string): Promise<string | null> {
    const key = `${namespace}/${pod}`;
    if (this.uids.has(key)) return this.uids.get(key)!;
    let uid: string | null = null;
    try {
      uid = (await this.core.readNamespacedPod({ name: pod, namespace })).metadata?.uid ?? null;
    } catch {
      // 403/404: write the Event without uid
    }
    if (this.uids.size > this.maxKeys) this.uids.clear();
    this.uids.set(key, uid);
    return uid;
  }

  /** Stops the flush timer after writing what the rate limit allows. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}

function httpCode(e: unknown): number | undefined {
  return e && typeof e === 'object' && 'code' in e && typeof (e as { code: unknown }).code === 'number' ? (e as { code: number }).code : undefined;
}

/** Builds the reporter for an `events` config section (null when disabled). */
export function podEventsFromConfig(
  cfg: KubernetesEventsConfig | undefined, fallbackKubeconfig: string | null, logger?: { warn(obj: object, msg: string): void },
): PodEventReporter | null {
  if (!cfg?.enabled) return null;
  return new PodEventReporter({
    kubeConfig: loadKubeConfig(cfg.kubeconfig ?? fallbackKubeconfig, 'events.kubeconfig'),
    ratePerMinute: cfg.ratePerMinute,
    defaultNamespace: cfg.namespace ?? null,
    logger,
  });
}
