/**
 * What a RevocationStore load tells the operator: one log line per CRL whose fate changed (the
 * changes come from reload-changes.ts `ReloadDiff`) — refused, with its code (an `expired` CRL
 * kept as its scope's stale last resort says so), retained after its file went away, accepted
 * as current.
 */
import type { ReloadChanges } from './reload-changes';

/** The logger calls used (pino fits). */
export interface ReloadLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** Log the changes of one reload: refusals and retained CRLs at `warn`, CRLs accepted as current at `info`. */
export function logReload(log: ReloadLogger, r: ReloadChanges): void {
  for (const bad of r.refused) {
    if (bad.kept) log.warn({ crl: bad.source, code: bad.code }, `CRL is past nextUpdate and is not used as current: ${bad.message}`);
    else log.warn({ crl: bad.source, code: bad.code }, `CRL refused, the last good CRL of its issuer stays: ${bad.message}`);
  }
  for (const kept of r.retained) log.warn({ crl: kept.source, issuer: kept.issuer }, 'CRL file is gone; its last good CRL stays in force until it is replaced or ca-proxy restarts');
  if (r.accepted.length) log.info({ crls: r.accepted.map((a) => a.source) }, 'CRLs accepted');
}
