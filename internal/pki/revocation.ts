/**
 * The CRL processing of RFC 5280 §6.3.3 for one certificate, over a set of parsed CRLs: CRL
 * issuer and scope (the certificate's cRLDistributionPoints against the CRL's
 * issuingDistributionPoint, §5.2.5), indirect CRLs (cRLIssuer in the distribution point, the
 * `certificateIssuer` entry extension, §5.3.3), reason masks (`onlySomeReasons`, the
 * distribution point's `reasons`), and delta CRLs (§5.2.4: a delta applies to a complete CRL of
 * the same scope whose cRLNumber is at least the delta's BaseCRLNumber; `removeFromCRL` in the
 * delta un-revokes a held certificate).
 *
 * Shared by the RevocationStore (whose CRLs were signature-checked when loaded) and by
 * path.ts (which checks each CRL's signer for the path at hand through `signerOk`). Pure: no I/O;
 * the caller passes the time. Lookups stay O(1) per candidate CRL (hash probe into the CRL).
 */
import type { CertInfo } from './certinfo';
import type { ParsedCrl } from './crl';
import type { RevokedEntry } from './crl-entries';
import { crlTimeStatus } from './crl-verify';
import { nameKey } from './certinfo';
import { ALL_REASONS, anyNameMatches, directoryName, parseDistributionPoints, parseGeneralNames, type DistributionPoint, type GeneralName, type Idp } from './names';

/** One CRL as revocation checking sees it. Build with `crlRecord`. */
export interface CrlRecord {
  crl: ParsedCrl;
  /** nameKey of the CRL issuer. */
  issuerKey: string;
  idp: Idp | null;
  /** Issuer + IDP: CRLs of the same scope replace each other; a delta applies only within its scope. */
  scope: string;
  /** BaseCRLNumber when this is a delta CRL (§5.2.4), else null. */
  deltaBase: bigint | null;
}

/** The record of a parsed CRL (its IDP was validated by parseCrl, so this does not throw on one). */
export function crlRecord(crl: ParsedCrl): CrlRecord {
  const issuerKey = nameKey(crl.issuerDer);
  const rawIdp = crl.issuingDistributionPointDer;
  return { crl, issuerKey, idp: crl.issuingDistributionPoint, scope: `${issuerKey}|${rawIdp ? rawIdp.toString('hex') : ''}`, deltaBase: crl.deltaCrlIndicator };
}

/** Where the candidate CRLs come from: every CRL (complete and delta) whose issuer has this nameKey. */
export interface CrlSource<R extends CrlRecord = CrlRecord> {
  byIssuer(issuerKey: string): readonly R[];
}

export interface CertStatusOptions<R extends CrlRecord> {
  now: Date;
  /** Allowed clock difference, ms. */
  skewMs: number;
  /**
   * Whether this CRL's signature and signer are good for this certificate (§6.3.3 (f)(g)).
   * The store answers true (checked at load); path.ts verifies and validates the signer.
   */
  signerOk?: (rec: R) => boolean;
}

export type CertStatus<R extends CrlRecord = CrlRecord> =
  | { status: 'revoked'; rec: R; entry: RevokedEntry }
  /** Covered for all reasons by current CRLs; `rec` is the first complete CRL used. */
  | { status: 'good'; rec: R }
  /** Covered only when CRLs past nextUpdate are admitted. */
  | { status: 'stale'; rec: R }
  | { status: 'unknown'; why: string };

const DEFAULT_DP: DistributionPoint[] = [{ name: null, reasons: null, crlIssuer: null }];
const dpCache = new WeakMap<CertInfo, DistributionPoint[] | Error>();

function distributionPoints(cert: CertInfo): DistributionPoint[] | Error {
  let dps = dpCache.get(cert);
  if (dps === undefined) {
    try {
      dps = cert.crlDistributionPoints ? parseDistributionPoints(cert.crlDistributionPoints, cert.issuerDer) : DEFAULT_DP;
      // A distribution point with neither a name nor a cRLIssuer is not allowed (§4.2.1.13).
      if (dps.length === 0) dps = DEFAULT_DP;
    } catch (e) {
      dps = e as Error;
    }
    dpCache.set(cert, dps);
  }
  return dps;
}

/**
 * Revocation status of `cert` (RFC 5280 §6.3.3). Current CRLs first; only when they do not
 * decide, CRLs past nextUpdate (+ skew) are admitted, and then a listing still answers `revoked`
 * while "not listed" answers `stale`. Never throws.
 */
export function certStatus<R extends CrlRecord>(cert: CertInfo, src: CrlSource<R>, opts: CertStatusOptions<R>): CertStatus<R> {
  const dps = distributionPoints(cert);
  if (dps instanceof Error) return { status: 'unknown', why: `cRLDistributionPoints does not decode: ${dps.message}` };
  const current = pass(cert, dps, src, opts, false);
  if (current.status !== 'unknown') return current;
  const old = pass(cert, dps, src, opts, true);
  if (old.status === 'revoked') return old;
  if (old.status === 'good') return { status: 'stale', rec: old.rec };
  return current;
}

function pass<R extends CrlRecord>(cert: CertInfo, dps: DistributionPoint[], src: CrlSource<R>, opts: CertStatusOptions<R>, allowExpired: boolean): CertStatus<R> {
  let reasons = 0;
  let used: R | null = null;
  let why = 'no CRL of the certificate issuer';
  for (const dp of dps) {
    const keys = dp.crlIssuer ? dp.crlIssuer.filter((n): n is Extract<GeneralName, { type: 'dn' }> => n.type === 'dn').map((n) => n.key) : [cert.issuerKey];
    for (const key of keys) {
      // Every usable CRL is consulted, not only until all reasons are covered: two CRLs of the same
      // scope may disagree (a CA's CRL and one from a separate CRL-signing key, PKITS 4.5.7), and a
      // listing in any usable CRL wins.
      for (const rec of src.byIssuer(key)) {
        if (rec.deltaBase !== null) continue; // deltas are applied to a complete CRL below, never used alone
        const time = crlTimeStatus(rec.crl, opts.now, opts.skewMs);
        if (time === 'not_yet_valid') continue;
        if (time === 'expired' && !allowExpired) {
          why = 'the CRL is past nextUpdate';
          continue;
        }
        // (b)(1) CRL issuer: the DP's cRLIssuer (an indirect CRL) or the certificate issuer.
        if (dp.crlIssuer ? !rec.idp?.indirectCRL : rec.issuerKey !== cert.issuerKey) {
          why = 'the CRL named in cRLIssuer is not an indirect CRL';
          continue;
        }
        // (b)(2) scope from the issuing distribution point.
        const idp = rec.idp;
        if (idp) {
          if (idp.name) {
            const against = dp.name ?? dp.crlIssuer ?? [issuerName(cert)];
            if (!anyNameMatches(idp.name, against)) {
              why = 'the CRL distribution point does not match the certificate (different CRL scope)';
              continue;
            }
          }
          if ((idp.onlyContainsUserCerts && cert.isCa) || (idp.onlyContainsCACerts && !cert.isCa) || idp.onlyContainsAttributeCerts) {
            why = 'the CRL covers other kinds of certificates (different CRL scope)';
            continue;
          }
        }
        // (d)(e) reasons this CRL adds.
        const interim = (idp?.onlySomeReasons ?? ALL_REASONS) & (dp.reasons ?? ALL_REASONS) & ALL_REASONS;
        if (interim === 0) continue;
        // (f)(g) signer and signature.
        if (opts.signerOk && !opts.signerOk(rec)) {
          why = 'no valid CRL signer for the CRL';
          continue;
        }
        // (c)(h)(i) the delta CRL of this scope, when there is one.
        const delta = deltaFor(rec, src, opts, allowExpired);
        if (delta === 'expired') {
          why = 'the delta CRL is past nextUpdate';
          continue;
        }
        let decided = false;
        if (delta) {
          const d = listed(cert, delta);
          if (d) {
            if (d.reason !== 'removeFromCRL') return { status: 'revoked', rec: delta, entry: d };
            decided = true; // removeFromCRL: the delta un-revokes whatever the complete CRL says
          }
        }
        if (!decided) {
          const c = listed(cert, rec);
          // removeFromCRL only means something in a delta CRL (§5.3.1); in a complete CRL it is not a revocation.
          if (c && c.reason !== 'removeFromCRL') return { status: 'revoked', rec, entry: c };
        }
        reasons |= interim;
        used ??= rec;
      }
    }
  }
  if (reasons === ALL_REASONS && used) return { status: 'good', rec: used };
  if (used) why = 'the usable CRLs cover only some revocation reasons';
  return { status: 'unknown', why };
}

const issuerNames = new WeakMap<CertInfo, GeneralName>();
/** The certificate issuer as a directoryName (the default distribution point's cRLIssuer), parsed once. */
function issuerName(cert: CertInfo): GeneralName {
  let n = issuerNames.get(cert);
  if (!n) issuerNames.set(cert, (n = directoryName(cert.issuerDer)));
  return n;
}

function deltaFor<R extends CrlRecord>(complete: R, src: CrlSource<R>, opts: CertStatusOptions<R>, allowExpired: boolean): R | null | 'expired' {
  const n = complete.crl.crlNumber;
  if (n === null) return null;
  let best: R | null = null;
  for (const d of src.byIssuer(complete.issuerKey)) {
    if (d.deltaBase === null || d.scope !== complete.scope) continue;
    const dn = d.crl.crlNumber;
    // §5.2.4: the complete CRL's number is at least the BaseCRLNumber; a delta not newer than the complete CRL adds nothing.
    if (d.deltaBase > n || dn === null || dn <= n) continue;
    if (opts.signerOk && !opts.signerOk(d)) continue;
    if (!best || dn > best.crl.crlNumber!) best = d;
  }
  if (best && !allowExpired && crlTimeStatus(best.crl, opts.now, opts.skewMs) !== 'current') return 'expired';
  return best;
}

/** The entry of `rec` that revokes `cert`: same serial, and (indirect CRLs) the same certificate issuer. */
function listed(cert: CertInfo, rec: CrlRecord): RevokedEntry | null {
  if (!rec.crl.hasCertificateIssuerEntries) {
    return rec.issuerKey === cert.issuerKey ? rec.crl.lookup(cert.serial, cert.serialNegative) : null;
  }
  for (const e of rec.crl.lookupAll(cert.serial, cert.serialNegative)) {
    if (e.entryIssuer === null) {
      if (rec.issuerKey === cert.issuerKey) return e;
      continue;
    }
    let names: GeneralName[];
    try {
      names = parseGeneralNames(e.entryIssuer);
    } catch {
      // parseCrl refuses a CRL whose certificateIssuer does not decode (crl-entries.ts), so this
      // cannot happen; were it to, the listing counts: a serial must never turn good by it.
      return e;
    }
    if (names.some((n) => n.type === 'dn' && n.key === cert.issuerKey)) return e;
  }
  return null;
}
