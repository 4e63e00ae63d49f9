/**
 * Shared shapes of the revocation check (RFC 5280 §5, §6.3).
 */

/** CRLReason (RFC 5280 §5.3.1). `unspecified` is also used when an entry carries no reasonCode. */
export const CRL_REASONS = [
  'unspecified', // 0
  'keyCompromise', // 1
  'cACompromise', // 2
  'affiliationChanged', // 3
  'superseded', // 4
  'cessationOfOperation', // 5
  'certificateHold', // 6
  'unknown7', // 7 is not assigned
  'removeFromCRL', // 8
  'privilegeWithdrawn', // 9
  'aACompromise', // 10
] as const;
export type CrlReason = (typeof CRL_REASONS)[number];

/** What the store knows about one accepted CRL (for decisions, metrics, `crl show`). */
export interface CrlInfo {
  /** Issuer distinguished name, RFC 4514 string form (display only). */
  issuer: string;
  /** cRLNumber (RFC 5280 §5.2.3) as a decimal string, or null when absent. */
  cRLNumber: string | null;
  thisUpdate: Date;
  /** null when the CRL has no nextUpdate (RFC 5280 §5.1.2.5 says it MUST be present; we accept and report it). */
  nextUpdate: Date | null;
  /** Number of revokedCertificates entries. */
  entries: number;
  /** SHA-256 of the DER, hex. */
  sha256: string;
  /** Where it was loaded from (file path, ConfigMap name). */
  source: string;
}

/** Result of checking one certificate against the store. */
export type RevocationResult =
  | { status: 'good'; crl: CrlInfo }
  | { status: 'revoked'; crl: CrlInfo; reason: CrlReason; revocationDate: Date }
  /** No CRL for this issuer has been accepted. */
  | { status: 'unknown' }
  /** The accepted CRL is past nextUpdate (+ skew); `revoked` still wins over stale. */
  | { status: 'stale'; crl: CrlInfo };

/**
 * The revocation status of a chain, as decisions report it: the worst `RevocationResult` status
 * of the certificates checked, or `not_checked` (no revocation source, a pinned leaf, a chain
 * refused before revocation was looked at). The one definition: chain.ts and the engine's
 * decision record use it.
 */
export type RevocationStatus = RevocationResult['status'] | 'not_checked';
