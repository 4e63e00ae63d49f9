/**
 * Prometheus metrics of `ca-proxy inject` (prom-client, a registry of its own), exposed on the
 * admin port (admin.ts). docs/metrics.md explains each metric and docs/kubernetes.md ("Sidecar
 * injection") what to alert on.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** What an AdmissionReview ended in (the `result` label). */
export const ADMISSION_RESULTS = ['injected', 'already_injected', 'opted_out', 'unsafe', 'denied', 'ignored', 'bad_request', 'error'] as const;
export type AdmissionResultLabel = (typeof ADMISSION_RESULTS)[number];

export interface InjectorMetrics {
  registry: Registry;
  /** `ca_proxy_injector_admissions_total{result}`. */
  admissions: Counter<'result'>;
  /** `ca_proxy_injector_admission_duration_seconds`: body received → response written. */
  duration: Histogram;
  /** `ca_proxy_injector_certificate_reloads_total{result}`: serving certificate files read after a change (accepted|refused). */
  certificateReloads: Counter<'result'>;
  /** `ca_proxy_injector_certificate_not_after_timestamp_seconds`: notAfter of the serving certificate in use. */
  certificateNotAfter: Gauge;
}

/** Seconds: a review takes well under a millisecond of work; the API server's timeout is 10 s by default. */
export const ADMISSION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

export function createInjectorMetrics(): InjectorMetrics {
  const registry = new Registry();
  const registers = [registry];
  const m: InjectorMetrics = {
    registry,
    admissions: new Counter({
      name: 'ca_proxy_injector_admissions_total',
      help: `AdmissionReviews answered, by result (${ADMISSION_RESULTS.join('|')}). unsafe: a selected pod admitted unchanged (hostNetwork, name clash).`,
      labelNames: ['result'] as const,
      registers,
    }),
    duration: new Histogram({
      name: 'ca_proxy_injector_admission_duration_seconds',
      help: 'Time from the whole AdmissionReview body received to the response written, seconds.',
      buckets: ADMISSION_BUCKETS,
      registers,
    }),
    certificateReloads: new Counter({
      name: 'ca_proxy_injector_certificate_reloads_total',
      help: 'Serving certificate and key read after their files changed, by result (accepted|refused; a refused pair leaves the previous one in use).',
      labelNames: ['result'] as const,
      registers,
    }),
    certificateNotAfter: new Gauge({
      name: 'ca_proxy_injector_certificate_not_after_timestamp_seconds',
      help: 'notAfter of the serving certificate in use, Unix seconds.',
      registers,
    }),
  };
  for (const result of ADMISSION_RESULTS) m.admissions.inc({ result }, 0);
  for (const result of ['accepted', 'refused']) m.certificateReloads.inc({ result }, 0);
  collectDefaultMetrics({ register: registry });
  return m;
}
