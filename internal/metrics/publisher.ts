/**
 * Prometheus metrics of `ca-proxy publish-crl` (prom-client, a registry of its own), exposed on
 * the admin port (admin.ts). `source` is the CRL's URL; docs/metrics.md explains each metric and
 * docs/kubernetes.md ("Publisher") what to alert on.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';

/** Results of one fetch-and-publish round of a source (the `result` label). */
export const FETCH_RESULTS = ['published', 'unchanged', 'not_modified', 'refused', 'fetch_failed', 'write_failed'] as const;
export type FetchResultLabel = (typeof FETCH_RESULTS)[number];

export interface PublisherMetrics {
  registry: Registry;
  /** `ca_proxy_publisher_fetches_total{source,result}`: rounds by outcome. */
  fetches: Counter<'source' | 'result'>;
  /** `ca_proxy_publisher_refusals_total{source,code}`: CRLs refused, by CrlError / FetchError code. */
  refusals: Counter<'source' | 'code'>;
  /** `ca_proxy_publisher_last_success_timestamp_seconds{source}`: last round that ended with a current CRL published (written or unchanged). */
  lastSuccess: Gauge<'source'>;
  /** `ca_proxy_publisher_published_crl_number{source}`: cRLNumber of the published CRL. */
  publishedCrlNumber: Gauge<'source'>;
  /** `ca_proxy_publisher_next_update_seconds{source}`: seconds until the published CRL's nextUpdate (negative: past it). */
  secondsUntilNextUpdate: Gauge<'source'>;
  /** `ca_proxy_publisher_leader`: 1 while this replica holds the Lease. */
  leader: Gauge;
  /** `ca_proxy_publisher_configmap_writes_total{result}`: ConfigMap creates/updates/deletes (ok|conflict|error). */
  writes: Counter<'result'>;
}

/**
 * A fresh registry with the publisher metrics and the process metrics. `nextUpdateOf(source)`
 * gives the published CRL's nextUpdate for the seconds-until gauge, computed at scrape time.
 */
export function createPublisherMetrics(nextUpdateOf: () => Map<string, Date | null>, now: () => number = Date.now): PublisherMetrics {
  const registry = new Registry();
  const registers = [registry];
  const m: PublisherMetrics = {
    registry,
    fetches: new Counter({
      name: 'ca_proxy_publisher_fetches_total',
      help: `CRL fetch-and-publish rounds by source URL and result (${FETCH_RESULTS.join('|')}).`,
      labelNames: ['source', 'result'] as const,
      registers,
    }),
    refusals: new Counter({
      name: 'ca_proxy_publisher_refusals_total',
      help: 'CRLs refused (never published), by source URL and reason code (bad_signature, rollback, expired, malformed, too_large, ...).',
      labelNames: ['source', 'code'] as const,
      registers,
    }),
    lastSuccess: new Gauge({
      name: 'ca_proxy_publisher_last_success_timestamp_seconds',
      help: 'Unix time of the last round that left a valid, current CRL published for the source.',
      labelNames: ['source'] as const,
      registers,
    }),
    publishedCrlNumber: new Gauge({
      name: 'ca_proxy_publisher_published_crl_number',
      help: 'cRLNumber of the CRL published for the source (precision: exact below 2^53).',
      labelNames: ['source'] as const,
      registers,
    }),
    secondsUntilNextUpdate: new Gauge({
      name: 'ca_proxy_publisher_next_update_seconds',
      help: "Seconds until the published CRL's nextUpdate, by source; negative once it has passed.",
      labelNames: ['source'] as const,
      registers,
      collect() {
        this.reset();
        for (const [source, nu] of nextUpdateOf()) if (nu) this.set({ source }, (nu.getTime() - now()) / 1000);
      },
    }),
    leader: new Gauge({
      name: 'ca_proxy_publisher_leader',
      help: 'Whether this replica holds the publisher Lease (1) or not (0).',
      registers,
    }),
    writes: new Counter({
      name: 'ca_proxy_publisher_configmap_writes_total',
      help: 'ConfigMap writes (create, update, delete) by result (ok|conflict|error).',
      labelNames: ['result'] as const,
      registers,
    }),
  };
  m.leader.set(0);
  for (const r of ['ok', 'conflict', 'error']) m.writes.inc({ result: r }, 0);
  collectDefaultMetrics({ register: registry });
  return m;
}

/** Zero every result of a source so `rate()` works from the first scrape. */
export function initSourceMetrics(m: PublisherMetrics, source: string): void {
  for (const result of FETCH_RESULTS) m.fetches.inc({ source, result }, 0);
}
