/**
 * The readiness rule for revocation (`/readyz`, the gRPC health of serve-extproc): whether the
 * process can take connections without denying them only for want of a usable CRL.
 *
 * Usable means current (RFC 5280 §6.3.3 (a)(1): thisUpdate ≤ now < nextUpdate, with the clock
 * skew), judged by the store's `status()` each time readiness is asked, so it follows CRLs going
 * past nextUpdate at run time as well as at start. Under a `hardFail` rule a CRL past nextUpdate
 * makes every certificate it covers `revocation_stale`, i.e. denied: not ready until it is
 * replaced. When every rule is `softFail`, missing or stale CRLs only mark decisions, so the
 * process is ready and the detail says what is missing.
 */
import type { CrlInfo } from './types';

export interface Readiness {
  ready: boolean;
  /** One line for the probe's body and the start-up log. */
  detail: string;
}

/** What readiness reads from a RevocationStore. */
export interface CrlStatusSource {
  status(): { current: CrlInfo[]; stale: CrlInfo[] };
}

export interface ReadinessOptions {
  /** Some rule (or the default) checks revocation with `hardFail`. */
  hardFail: boolean;
}

/** Most stale CRLs named in a detail line. */
const NAMED = 3;

function describe(stale: CrlInfo[]): string {
  const named = stale.slice(0, NAMED).map((c) => `${c.issuer} (${c.source}, nextUpdate ${c.nextUpdate?.toISOString() ?? 'absent'})`);
  return named.join('; ') + (stale.length > NAMED ? `; and ${stale.length - NAMED} more` : '');
}

/** Readiness of the revocation check: `store` null when no CRL source is configured. */
export function revocationReadiness(store: CrlStatusSource | null, opts: ReadinessOptions): Readiness {
  if (!store) {
    return opts.hardFail ? { ready: false, detail: 'no CRL source configured and a rule is hardFail' } : { ready: true, detail: 'no CRLs configured; every rule is softFail' };
  }
  const { current, stale } = store.status();
  if (opts.hardFail) {
    if (current.length === 0 && stale.length === 0) return { ready: false, detail: 'no usable CRL loaded yet' };
    if (stale.length > 0) {
      return { ready: false, detail: `${stale.length} CRL(s) past nextUpdate, whose certificates hardFail denies (revocation_stale): ${describe(stale)}` };
    }
    return { ready: true, detail: `${current.length} current CRL(s) loaded` };
  }
  if (current.length === 0 && stale.length === 0) return { ready: true, detail: 'no usable CRL yet; every rule is softFail' };
  const more = stale.length ? `; ${stale.length} past nextUpdate (softFail allows their certificates, marked stale): ${describe(stale)}` : '';
  return { ready: true, detail: `${current.length} current CRL(s) loaded${more}` };
}
