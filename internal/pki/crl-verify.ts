/**
 * Whether a parsed CRL may be used: who may have issued it and whether its signature verifies
 * (RFC 5280 §6.3.3 (f)(g)), and where now falls in its validity (§6.3.3 (a)(1)). Pure checks over
 * a ParsedCrl (crl.ts); the algorithms are sigalg.ts, shared with certificate signatures.
 */
import type { KeyObject, X509Certificate } from 'node:crypto';
import { certInfo, KeyUsageBit, nameKey } from './certinfo';
import type { ParsedCrl } from './crl';
import { CrlError, PkiFailure } from './errors';
import { resolveSignatureAlgorithm, verifySignature, verifySignatureAsync, type ResolvedAlgorithm } from './sigalg';

const keyCache = new WeakMap<X509Certificate, KeyObject>();
function publicKeyOf(c: X509Certificate): KeyObject {
  let k = keyCache.get(c);
  if (!k) {
    k = c.publicKey;
    keyCache.set(c, k);
  }
  return k;
}

/** The CRL's signatureAlgorithm resolved. @throws CrlError `unsupported_algorithm`, `malformed` */
function crlAlgorithm(parsed: ParsedCrl): ResolvedAlgorithm {
  try {
    return resolveSignatureAlgorithm(parsed.signatureAlgorithm);
  } catch (e) {
    if (e instanceof PkiFailure) throw new CrlError(e.code === 'unsupported_algorithm' ? 'unsupported_algorithm' : 'malformed', e.message, { cause: e });
    throw e;
  }
}

/**
 * The certificates that may have issued this CRL (RFC 5280 §6.3.3 (f)): subject Name equal to the
 * CRL issuer Name (`nameKey`), subjectKeyIdentifier equal to the CRL's authorityKeyIdentifier
 * when both are present, and cRLSign in keyUsage when keyUsage is present (§4.2.1.3).
 * @throws CrlError `unknown_issuer` when none qualifies
 */
export function crlIssuerCandidates(parsed: ParsedCrl, candidates: readonly X509Certificate[]): X509Certificate[] {
  const want = nameKey(parsed.issuerDer);
  const aki = parsed.authorityKeyId;
  let byName = 0;
  const out: X509Certificate[] = [];
  for (const c of candidates) {
    const info = certInfo(c);
    if (nameKey(info.subjectDer) !== want) continue;
    if (aki && info.subjectKeyId && !aki.equals(info.subjectKeyId)) continue;
    byName++;
    if (info.keyUsage !== undefined && !(info.keyUsage & (1 << KeyUsageBit.cRLSign))) continue;
    out.push(c);
  }
  if (out.length === 0) {
    throw new CrlError(
      'unknown_issuer',
      byName > 0 ? 'the CRL issuer certificate is not allowed to sign CRLs (keyUsage without cRLSign)' : 'no trusted certificate matches the CRL issuer name and key identifier',
    );
  }
  return out;
}

function badSignature(alg: ResolvedAlgorithm, issuers: number): CrlError {
  return new CrlError('bad_signature', `CRL signature (${alg.name}) does not verify with the key of any of ${issuers} issuer certificate(s)`);
}

/**
 * Verify the CRL's signature over the raw tbsCertList with the first issuer candidate that
 * verifies (several may share the Name, e.g. across a key rollover). Runs in the libuv thread
 * pool (crypto.verify with a callback), so hashing a 49 MB tbsCertList does not block the loop.
 * @returns the certificate whose key verified it
 * @throws CrlError `unknown_issuer`, `unsupported_algorithm`, `malformed`, `bad_signature`
 */
export async function verifyCrlSignature(parsed: ParsedCrl, issuerCandidates: readonly X509Certificate[]): Promise<X509Certificate> {
  const alg = crlAlgorithm(parsed);
  const issuers = crlIssuerCandidates(parsed, issuerCandidates);
  for (const c of issuers) {
    if (await verifySignatureAsync(alg, parsed.tbsCertList, parsed.signatureValue, publicKeyOf(c))) return c;
  }
  throw badSignature(alg, issuers.length);
}

/** Synchronous `verifyCrlSignature`, for small CRLs, the worker thread and tests. Same results and errors. */
export function verifyCrlSignatureSync(parsed: ParsedCrl, issuerCandidates: readonly X509Certificate[]): X509Certificate {
  const alg = crlAlgorithm(parsed);
  const issuers = crlIssuerCandidates(parsed, issuerCandidates);
  for (const c of issuers) {
    if (verifySignature(alg, parsed.tbsCertList, parsed.signatureValue, publicKeyOf(c))) return c;
  }
  throw badSignature(alg, issuers.length);
}

/** Where now falls in a CRL's validity. */
export type CrlTimeStatus = 'current' | 'not_yet_valid' | 'expired';

/**
 * Where `now` falls in the CRL's validity (RFC 5280 §6.3.3 (a)(1), with clock skew): thisUpdate
 * after now + skew is `not_yet_valid`; now after nextUpdate + skew is `expired` (usable as stale);
 * a CRL without nextUpdate never expires here. The one time judgement of a CRL: the store (at
 * start and on every reload), the revocation check, the publisher and `crl show` all call it.
 */
export function crlTimeStatus(parsed: { thisUpdate: Date; nextUpdate: Date | null }, now: Date, skewMs: number): CrlTimeStatus {
  if (parsed.thisUpdate.getTime() > now.getTime() + skewMs) return 'not_yet_valid';
  if (parsed.nextUpdate && now.getTime() > parsed.nextUpdate.getTime() + skewMs) return 'expired';
  return 'current';
}
