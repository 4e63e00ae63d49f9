/**
 * pki's error codes: one enumeration with precise variants, in the spirit of rustls-webpki's
 * `Error` (`CertRevoked`, `UnknownRevocationStatus`, `CrlExpired`,
 * `InvalidCrlSignatureForPublicKey`, `UnsupportedCriticalExtension`, …), each named below.
 *
 * pki never names an engine reason: the engine maps these codes to decision reasons and alerts
 * (internal/engine/pki-reasons.ts), so nothing in pki imports the engine (DESIGN.md "Layout").
 * Values are stable lower_snake_case strings. The CRL codes are log fields, `crl show` output and
 * the `code` label of `ca_proxy_publisher_refusals_total`: never renamed once released.
 *
 * Also here: `errText`, the one way pki, k8s and cmd turn a caught value into a log-sized line.
 */
import util from 'node:util';

export const PkiError = {
  // ---- encoding, certificates and CRLs alike ---------------------------------------------
  /** The DER or the structure does not decode (rustls-webpki `BadDer`, `MalformedExtensions`, `TrailingData`). */
  malformed: 'malformed',
  /** The input is over the configured size limit. */
  tooLarge: 'too_large',
  /** A configured file or folder does not exist (a CRL path; distinct from one that does not decode). */
  notFound: 'not_found',
  /** A signature algorithm or parameter set we do not verify (`UnsupportedSignatureAlgorithm`, `UnsupportedCrlSignatureAlgorithm`). */
  unsupportedAlgorithm: 'unsupported_algorithm',
  /** A critical extension we do not process: the certificate or CRL is unusable, RFC 5280 §4.2, §5.2, §5.3 (`UnsupportedCriticalExtension`). */
  unsupportedCriticalExtension: 'unsupported_critical_extension',
  /** A signature does not verify with the issuer's key (`InvalidSignatureForPublicKey`, `InvalidCrlSignatureForPublicKey`). */
  badSignature: 'bad_signature',
  /**
   * No trusted certificate can be the issuer (`UnknownIssuer`): for a CRL, none matches its
   * issuer Name and authorityKeyIdentifier or holds cRLSign (`IssuerNotCrlSigner`); for a chain,
   * no path reaches a trust anchor within the depth limit.
   */
  unknownIssuer: 'unknown_issuer',

  // ---- CRLs (RFC 5280 §5, §6.3.3) ----------------------------------------------------------
  /** thisUpdate is after now + clock skew. */
  notYetValid: 'not_yet_valid',
  /** Past nextUpdate + clock skew (`CrlExpired`): not usable as current; see store.ts for what is kept. */
  expired: 'expired',
  /** cRLNumber (or thisUpdate) lower than one already accepted for the same scope. */
  rollback: 'rollback',
  /** revokedCertificates is present but empty; RFC 5280 §5.1.2.6: it MUST be absent when there are no entries. */
  emptyRevokedCertificates: 'empty_revoked_certificates',

  // ---- certificate paths (RFC 5280 §6.1) and server chains ---------------------------------
  /** The peer sent no certificate. */
  noCertificate: 'no_certificate',
  /** The leaf's extendedKeyUsage does not allow the purpose (`RequiredEkuNotFound`, RFC 5280 §4.2.1.12). */
  requiredEkuNotFound: 'required_eku_not_found',
  /** A certificate is outside its validity period (`CertExpired`, `CertNotValidYet`). */
  certificateExpired: 'certificate_expired',
  /** The leaf does not match the host name (`NotValidForName`, RFC 6125). */
  notValidForName: 'not_valid_for_name',
  /** A certificate's issuer Name is not its issuer's subject (RFC 5280 §6.1.3 (a)(4)). */
  nameChaining: 'name_chaining',
  /** An issuer is not a CA: basicConstraints cA is not TRUE (`EndEntityUsedAsCa`). */
  notCa: 'not_ca',
  /** An issuer's keyUsage lacks keyCertSign (RFC 5280 §4.2.1.3). */
  keyUsage: 'key_usage',
  /** A pathLenConstraint is exceeded (`PathLenConstraintViolated`). */
  pathLength: 'path_length',
  /** A name is outside the permitted or inside the excluded subtrees (`NameConstraintViolation`). */
  nameConstraints: 'name_constraints',
  /** A certificate is listed on a usable CRL (`CertRevoked`). */
  revoked: 'revoked',
  /** No usable CRL covers a certificate for every reason (`UnknownRevocationStatus`). */
  revocationUnknown: 'revocation_unknown',
  /** Only CRLs past nextUpdate cover a certificate (`CrlExpired` under an enforcing expiration policy). */
  revocationStale: 'revocation_stale',
} as const;

export type PkiErrorCode = (typeof PkiError)[keyof typeof PkiError];

/** Why a CRL was refused: the codes the store reports, `crl show` prints and the publisher counts. */
export type CrlErrorCode = Extract<
  PkiErrorCode,
  'malformed' | 'not_found' | 'too_large' | 'unsupported_algorithm' | 'unsupported_critical_extension' | 'bad_signature' | 'unknown_issuer' | 'not_yet_valid' | 'expired' | 'rollback' | 'empty_revoked_certificates'
>;

/** Why `validatePath` (path.ts) failed. */
export type PathFailureCode = Extract<
  PkiErrorCode,
  | 'revoked'
  | 'revocation_unknown'
  | 'revocation_stale'
  | 'bad_signature'
  | 'certificate_expired'
  | 'name_chaining'
  | 'not_ca'
  | 'key_usage'
  | 'path_length'
  | 'name_constraints'
  | 'unsupported_critical_extension'
  | 'malformed'
>;

/** Why `verifyServerChain` (chain.ts) refused a chain: its own checks plus any path failure. */
export type ChainErrorCode = Extract<PkiErrorCode, 'no_certificate' | 'required_eku_not_found' | 'unknown_issuer' | 'not_valid_for_name'> | PathFailureCode;

/** A pki refusal with its code, thrown where a caller must stop (parsing, signature checks). */
export class PkiFailure<C extends PkiErrorCode = PkiErrorCode> extends Error {
  constructor(
    readonly code: C,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PkiFailure';
  }
}

/** Why a CRL was refused. `code` is stable (log field, metric label, `crl show`). */
export class CrlError extends PkiFailure<CrlErrorCode> {
  constructor(code: CrlErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'CrlError';
  }
}

/** Longest text `errText` returns. */
const MAX_TEXT = 300;

/**
 * Why a PEM private key could not be read, in words rather than OpenSSL's decoder codes
 * (`error:1E08010C:DECODER routines::unsupported` means "this is no key we can read").
 */
export function privateKeyError(e: unknown): string {
  const msg = errText(e);
  if (/bad decrypt|passphrase|interrupted or cancelled/i.test(msg)) return `cannot decrypt the private key (wrong or missing passphrase?): ${msg}`;
  if (/DECODER routines|no start line|PEM routines|unsupported/i.test(msg)) return `not a PEM private key (no PRIVATE KEY block, or a key format OpenSSL cannot read): ${msg}`;
  return `cannot read the private key: ${msg}`;
}

/**
 * One line that says what went wrong, for logs, decisions and status fields: an error's first
 * message line (so a multi-line API error stays one log line), prefixed `HTTP n:` when the error
 * carries a numeric `code` (an HTTP status, as @kubernetes/client-node's ApiException does: its
 * "HTTP-Code: n" first line is replaced by its "Message:" line), else `String(e)`; at most 300 characters, a cut marked `…`.
 *
 * Realm-safe: errors made by Node core (sockets, fs) in another realm — jest runs tests in a vm
 * context — are not `instanceof Error` there, so `util.types.isNativeError` is asked too.
 */
export function errText(e: unknown): string {
  let text: string;
  if (util.types.isNativeError(e) || e instanceof Error) {
    const err = e as Error & { code?: unknown };
    const lines = String(err.message).split('\n');
    if (typeof err.code === 'number') {
      // ApiException: "HTTP-Code: 409\nMessage: …\nBody: …": the status, then its message line.
      const line = /^HTTP-Code: \d+$/.test(lines[0]!) ? (lines[1] ?? '').replace(/^Message: /, '') : lines[0]!;
      text = line ? `HTTP ${err.code}: ${line}` : `HTTP ${err.code}`;
    } else text = lines[0] || err.name;
  } else text = String(e);
  return text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT - 1)}…` : text;
}
