/**
 * The Prometheus metrics of ca-proxy (prom-client), on a registry of their own rather than
 * prom-client's global one, so each process component — and each test — can hold its own.
 * docs/metrics.md explains every metric and what to alert on.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Decision, StreamEnd } from '../engine/decision';
import type { CrlInfo, RevocationStatus } from '../pki/types';

export type ConnectionLabels = 'action' | 'outcome' | 'reason';

/** Typed handles on the ca-proxy metrics; `registry` is what the admin server exposes. */
export interface Metrics {
  registry: Registry;
  /** `ca_proxy_connections_total{action,outcome,reason}`: one per decision. */
  connections: Counter<ConnectionLabels>;
  /** `ca_proxy_handshake_duration_seconds{action,outcome}`: first ClientHello byte to decision. */
  handshakeDuration: Histogram<'action' | 'outcome'>;
  /** `ca_proxy_certificate_substitutions_total{workload_certificate}`: proxy identity presented upstream. */
  certificateSubstitutions: Counter<'workload_certificate'>;
  /** `ca_proxy_revocation_checks_total{result}`: revocation status of each decision's chain. */
  revocationChecks: Counter<'result'>;
  /** `ca_proxy_crl_entries{issuer}`: revokedCertificates entries in the accepted CRLs. */
  crlEntries: Gauge<'issuer'>;
  /** `ca_proxy_crl_next_update_timestamp_seconds{issuer}`: earliest nextUpdate, Unix seconds. */
  crlNextUpdate: Gauge<'issuer'>;
  /** `ca_proxy_crl_this_update_timestamp_seconds{issuer}`: latest thisUpdate, Unix seconds (the CRL's age is now minus this). */
  crlThisUpdate: Gauge<'issuer'>;
  /** `ca_proxy_crl_reloads_total{result}`: CRLs accepted into / refused by the revocation store. */
  crlReloads: Counter<'result'>;
  /** `ca_proxy_active_connections`: connections currently open (front doors inc/dec). */
  activeConnections: Gauge;
  /** `ca_proxy_stream_ends_total{peer,end}`: how each peer's stream ended, per closed connection. */
  streamEnds: Counter<'peer' | 'end'>;
}

/** Histogram buckets, seconds: 1 ms to 10 s (a handshake includes the upstream round trips). */
export const HANDSHAKE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const REVOCATION_RESULTS: readonly RevocationStatus[] = ['good', 'revoked', 'unknown', 'stale', 'not_checked'];
const STREAM_ENDS: readonly StreamEnd[] = ['clean', 'truncated', 'reset', 'fin', 'proxy'];

/**
 * A fresh registry with the ca-proxy metrics and the process metrics of `collectDefaultMetrics`
 * (`process_cpu_seconds_total`, `nodejs_eventloop_lag_seconds`, ...).
 * Label sets with a small fixed domain start at 0, so `rate()` and `absent()` work from the
 * first scrape.
 */
export function createMetrics(): Metrics {
  const registry = new Registry();
  const registers = [registry];
  const metrics: Metrics = {
    registry,
    connections: new Counter({
      name: 'ca_proxy_connections_total',
      help: 'Connections by decision: action taken, outcome (allow|deny) and reason code.',
      labelNames: ['action', 'outcome', 'reason'] as const,
      registers,
    }),
    handshakeDuration: new Histogram({
      name: 'ca_proxy_handshake_duration_seconds',
      help: 'Time from the first ClientHello byte to the decision, seconds.',
      labelNames: ['action', 'outcome'] as const,
      buckets: HANDSHAKE_BUCKETS,
      registers,
    }),
    certificateSubstitutions: new Counter({
      name: 'ca_proxy_certificate_substitutions_total',
      help: "Proxy identity presented to a server's CertificateRequest, by whether the workload had a certificate of its own.",
      labelNames: ['workload_certificate'] as const,
      registers,
    }),
    revocationChecks: new Counter({
      name: 'ca_proxy_revocation_checks_total',
      help: "Revocation status of the server's chain, one per decision (good|revoked|unknown|stale|not_checked).",
      labelNames: ['result'] as const,
      registers,
    }),
    crlEntries: new Gauge({
      name: 'ca_proxy_crl_entries',
      help: 'Entries (revoked certificates) in the accepted CRLs, by CRL issuer.',
      labelNames: ['issuer'] as const,
      // Every worker holds the same CRLs: across workers (cmd/ca-proxy/workers.ts) one value, not a sum.
      aggregator: 'max',
      registers,
    }),
    crlNextUpdate: new Gauge({
      name: 'ca_proxy_crl_next_update_timestamp_seconds',
      help: 'Earliest nextUpdate of the accepted CRLs, by CRL issuer, Unix time in seconds.',
      labelNames: ['issuer'] as const,
      // Across workers, the earliest (what an alert must see).
      aggregator: 'min',
      registers,
    }),
    crlThisUpdate: new Gauge({
      name: 'ca_proxy_crl_this_update_timestamp_seconds',
      help: 'Latest thisUpdate of the accepted CRLs, by CRL issuer, Unix time in seconds.',
      labelNames: ['issuer'] as const,
      // Across workers, the oldest CRL any worker still uses.
      aggregator: 'min',
      registers,
    }),
    crlReloads: new Counter({
      name: 'ca_proxy_crl_reloads_total',
      help: 'CRLs offered to the revocation store, by result (accepted|refused).',
      labelNames: ['result'] as const,
      // Every worker offers the same CRLs to its own store: count them once.
      aggregator: 'max',
      registers,
    }),
    activeConnections: new Gauge({
      name: 'ca_proxy_active_connections',
      help: 'Connections currently open.',
      registers,
    }),
    streamEnds: new Counter({
      name: 'ca_proxy_stream_ends_total',
      help: 'How each peer ended its stream, per closed connection: clean (close_notify), truncated (FIN or TLS error without close_notify), reset (RST), fin (relayed unread), proxy (ca-proxy closed it).',
      labelNames: ['peer', 'end'] as const,
      registers,
    }),
  };
  for (const v of ['true', 'false']) metrics.certificateSubstitutions.inc({ workload_certificate: v }, 0);
  for (const r of REVOCATION_RESULTS) metrics.revocationChecks.inc({ result: r }, 0);
  for (const r of ['accepted', 'refused']) metrics.crlReloads.inc({ result: r }, 0);
  for (const peer of ['workload', 'server']) for (const end of STREAM_ENDS) metrics.streamEnds.inc({ peer, end }, 0);
  collectDefaultMetrics({ register: registry });
  return metrics;
}

/**
 * Counts one decision: connections_total, the handshake histogram (when `handshakeMs` is
 * known), a substitution when a proxy identity was presented, and the revocation result
 * (`not_checked` when the decision carries none, e.g. passthrough or an early deny).
 */
export function observeDecision(metrics: Metrics, decision: Decision): void {
  const { action, outcome, reason } = decision;
  metrics.connections.inc({ action, outcome, reason });
  const ms = decision.handshakeMs;
  if (typeof ms === 'number' && Number.isFinite(ms) && ms >= 0) {
    metrics.handshakeDuration.observe({ action, outcome }, ms / 1000);
  }
  const substitution = decision.substitution;
  if (substitution !== undefined && typeof substitution.identity === 'string') {
    metrics.certificateSubstitutions.inc({ workload_certificate: String(substitution.workloadCertificate === true) });
  }
  metrics.revocationChecks.inc({ result: decision.revocation?.status ?? 'not_checked' });
}

/** Counts how each peer's stream ended, once the connection has closed (a decision without `ends` counts nothing). */
export function observeEnds(metrics: Metrics, decision: Decision): void {
  const ends = decision.ends;
  if (!ends) return;
  metrics.streamEnds.inc({ peer: 'workload', end: ends.workload });
  if (ends.server) metrics.streamEnds.inc({ peer: 'server', end: ends.server });
}

/**
 * Replaces the CRL gauges with the store's current CRLs. Several CRLs of one issuer (partitioned
 * by issuing distribution point, or a delta) add their entries and report the *earliest*
 * nextUpdate — the first moment a check for that issuer can go stale. A CRL without
 * nextUpdate reports no timestamp.
 */
export function observeCrls(metrics: Metrics, infos: readonly CrlInfo[]): void {
  const entries = new Map<string, number>();
  const nextUpdate = new Map<string, number>();
  const thisUpdate = new Map<string, number>();
  for (const info of infos) {
    entries.set(info.issuer, (entries.get(info.issuer) ?? 0) + info.entries);
    const issued = info.thisUpdate.getTime() / 1000;
    if (Number.isFinite(issued) && issued > (thisUpdate.get(info.issuer) ?? -Infinity)) thisUpdate.set(info.issuer, issued);
    if (info.nextUpdate !== null) {
      const t = info.nextUpdate.getTime() / 1000;
      const prev = nextUpdate.get(info.issuer);
      if (prev === undefined || t < prev) nextUpdate.set(info.issuer, t);
    }
  }
  metrics.crlEntries.reset();
  metrics.crlNextUpdate.reset();
  metrics.crlThisUpdate.reset();
  for (const [issuer, n] of entries) metrics.crlEntries.set({ issuer }, n);
  for (const [issuer, t] of nextUpdate) metrics.crlNextUpdate.set({ issuer }, t);
  for (const [issuer, t] of thisUpdate) metrics.crlThisUpdate.set({ issuer }, t);
}

/** Name of the readiness gauge the admin server exports beside /readyz. */
export const READY_METRIC = 'ca_proxy_ready';

/**
 * Registers `ca_proxy_ready` (1 when `ready()` says ready, else 0; evaluated at scrape time) on
 * `registry`, once: what /readyz answers, as a series an alert can watch (a pod that is never
 * ready is otherwise visible only to the kubelet). A readiness callback that throws reads as 0.
 */
export function registerReadiness(registry: Registry, ready: () => { ready: boolean }): void {
  if (registry.getSingleMetric(READY_METRIC)) return;
  new Gauge({
    name: READY_METRIC,
    help: 'Whether this process is ready (1) or not (0), as /readyz answers.',
    registers: [registry],
    collect() {
      let up = false;
      try {
        up = ready().ready;
      } catch {
        up = false;
      }
      this.set(up ? 1 : 0);
    },
  });
}

/** Counts one reload: how many CRLs were accepted and refused (counts that are not positive finite numbers are ignored). */
export function observeReload(metrics: Metrics, counts: { accepted: number; refused: number }): void {
  const usable = (n: number): boolean => Number.isFinite(n) && n > 0;
  if (usable(counts.accepted)) metrics.crlReloads.inc({ result: 'accepted' }, counts.accepted);
  if (usable(counts.refused)) metrics.crlReloads.inc({ result: 'refused' }, counts.refused);
}
