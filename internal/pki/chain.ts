/**
 * Verification of the certificate chain an external server sends (RFC 5280 §6.1 path
 * validation, the parts a TLS client needs; RFC 6125 host check; RFC 5280 §6.3 revocation
 * through our own CRL index).
 *
 * It runs twice in the engine — on the plaintext TLS 1.2 Certificate message before OpenSSL
 * sees it (inspect mode), and on the peer chain after a TLS 1.3 handshake — so it is
 * self-sufficient: it never relies on OpenSSL having verified anything. Pure: no I/O, no clock
 * (the caller passes `now`).
 *
 * Checked: issuer/subject chaining (OpenSSL's X509_check_issued: names, AKI/SKI, issuer
 * keyUsage keyCertSign), every signature, basicConstraints cA on every issuer, validity periods
 * of the path and the anchor, the leaf's extendedKeyUsage (serverAuth when the extension is
 * present), the host name, and revocation; then pathLenConstraint, name constraints and
 * unknown critical extensions through `validatePath` (path.ts). Not checked: certificate
 * policies (RFC 5280 §6.1.3 (d)–(f)), deliberately out of scope (docs/conformance.md).
 */
import { X509Certificate } from 'node:crypto';
import net from 'node:net';
import { validatePath } from './path';
import type { RevocationResult, RevocationStatus } from './types';
import { certInfo, dnOf, formatName, KeyUsageBit, type CertInfo } from './certinfo';
import { errText, type ChainErrorCode } from './errors';

const dn = (cert: X509Certificate): string => dnOf(cert);

/** Longest path accepted, leaf and anchor included (deeper chains are refused as untrusted). */
export const MAX_PATH_LENGTH = 10;
/** Most signature verifications spent building one path (a server can send many same-named certificates). */
const SIGNATURE_BUDGET = 64;
const EKU_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const EKU_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const EKU_ANY = '2.5.29.37.0';

/** The revocation source `verifyServerChain` consults (the RevocationStore fits). */
export interface RevocationChecker {
  check(cert: CertInfo, issuer: CertInfo | X509Certificate): RevocationResult;
}

export interface VerifyServerChainOptions {
  /** Trust anchors (configured bundles, optionally Node's Mozilla roots). */
  anchors: X509Certificate[];
  /** The name the workload asked for (SNI, or the CONNECT host); null/undefined skips the host check. */
  hostname?: string | null;
  /** The time at which validity is judged. */
  now: Date;
  /** null: revocation is not checked (status `not_checked`). */
  revocation: RevocationChecker | null;
  /** Check only the leaf against CRLs, not the intermediates. */
  leafOnly: boolean;
  /**
   * The extendedKeyUsage the leaf must allow when it has the extension (RFC 5280 §4.2.1.12):
   * `serverAuth` (default) for external servers, `clientAuth` for workload certificates.
   */
  purpose?: 'serverAuth' | 'clientAuth';
}

export interface ChainResult {
  /** true only when `error` is null. A caller with a softFail policy may still allow `revocation_unknown` / `revocation_stale`. */
  ok: boolean;
  /** Why the chain is refused (errors.ts; the engine maps it to a decision reason), or null. */
  error: ChainErrorCode | null;
  /** Human-readable explanation for logs (never sent to peers). */
  detail?: string;
  /**
   * The validated path, leaf first, up to the last certificate below the anchor (the anchor is
   * `anchor`). On a failure before a path was found: the longest partial path (at least the
   * leaf when it parsed). Empty when the leaf itself is a trust anchor, or did not parse.
   */
  path: CertInfo[];
  anchor?: X509Certificate;
  revocation: {
    status: RevocationStatus;
    /** The store's answer for the certificate that decided the status. */
    result?: RevocationResult;
    /** That certificate's serial number, lower-case hex of the unsigned big-endian bytes. */
    serial?: string;
  };
}

function fail(error: ChainErrorCode, detail: string, path: CertInfo[] = [], anchor?: X509Certificate): ChainResult {
  return { ok: false, error, detail, path, anchor, revocation: { status: 'not_checked' } };
}

function validity(cert: X509Certificate): { notBefore: Date; notAfter: Date } {
  return { notBefore: new Date(cert.validFrom), notAfter: new Date(cert.validTo) };
}

/** Whether `issuer` signed `child`: names and key identifiers chain, and the signature verifies. */
function issued(child: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return child.checkIssued(issuer) && child.verify(issuer.publicKey);
  } catch {
    return false; // an unusable key (unsupported algorithm) cannot be an issuer
  }
}

/**
 * Anchors by subject, so a lookup is not a scan of ~150 roots. Built once per anchors array
 * (kept in a WeakMap): callers pass the same, unmodified array for every connection and a new
 * array when the trust bundle changes.
 */
interface AnchorIndex {
  bySubject: Map<string, X509Certificate[]>;
  byFingerprint: Map<string, X509Certificate>;
}
const anchorIndexes = new WeakMap<X509Certificate[], AnchorIndex>();

function indexAnchors(anchors: X509Certificate[]): AnchorIndex {
  let index = anchorIndexes.get(anchors);
  if (index && index.byFingerprint.size === anchors.length) return index;
  index = { bySubject: new Map(), byFingerprint: new Map() };
  for (const a of anchors) {
    const key = nameLookupKey(a.subject);
    const list = index.bySubject.get(key) ?? [];
    list.push(a);
    index.bySubject.set(key, list);
    index.byFingerprint.set(a.fingerprint256, a);
  }
  anchorIndexes.set(anchors, index);
  return index;
}

/**
 * Lookup key of a Name in Node's printed form. The printout already hides the string type
 * (PrintableString vs UTF8String); folding case and whitespace approximates the rest of RFC 5280
 * §7.1 / RFC 4518 matching. It only selects candidates: `checkIssued` and the signature decide.
 */
function nameLookupKey(printed: string): string {
  return printed.toLowerCase().replace(/\s+/g, ' ').trim();
}

function anchorCandidates(child: X509Certificate, index: AnchorIndex): X509Certificate[] {
  return index.bySubject.get(nameLookupKey(child.issuer)) ?? [];
}

interface Candidate {
  path: CertInfo[];
  anchor: X509Certificate;
}

/** First problem of a complete path, or null when it is usable. */
function pathProblem(c: Candidate, now: Date): { error: ChainErrorCode; detail: string } | null {
  for (const [i, ci] of c.path.entries()) {
    const { notBefore, notAfter } = validity(ci.x509);
    if (now < notBefore || now >= notAfter) {
      const what = i === 0 ? 'leaf' : 'intermediate';
      return {
        error: 'certificate_expired',
        detail: `${what} ${dn(ci.x509)} is valid ${notBefore.toISOString()} – ${notAfter.toISOString()}, not at ${now.toISOString()}`,
      };
    }
  }
  const { notBefore, notAfter } = validity(c.anchor);
  if (now < notBefore || now >= notAfter) {
    return { error: 'certificate_expired', detail: `trust anchor ${dn(c.anchor)} is valid ${notBefore.toISOString()} – ${notAfter.toISOString()}` };
  }
  return null;
}

/**
 * Builds and validates a path from the leaf (`chainDer[0]`) to a trust anchor, checks the host
 * name and, when `revocation` is given, the revocation status of every certificate below the
 * anchor (only the leaf when `leafOnly`). The worst status wins: revoked > stale > unknown > good.
 *
 * Issuers are looked up among the anchors first, then among the certificates the server sent
 * (in any order, unused ones ignored); a sent certificate equal to an anchor ends the path there.
 * When several paths exist, the first without a validity problem is used.
 *
 * Errors (errors.ts), in the order they are decided: `no_certificate`, `malformed` (a
 * certificate does not parse), `required_eku_not_found` (leaf without the purpose),
 * `unknown_issuer` (no path to an anchor, or only through a non-CA issuer, or longer than
 * MAX_PATH_LENGTH), `certificate_expired`, a path failure of `validatePath` (path.ts:
 * `bad_signature`, `name_chaining`, `not_ca`, `key_usage`, `path_length`, `name_constraints`,
 * `unsupported_critical_extension`, `malformed`), `not_valid_for_name`, then `revoked` /
 * `revocation_stale` / `revocation_unknown`; else `error` is null. Never throws.
 */
export function verifyServerChain(chainDer: Buffer[], opts: VerifyServerChainOptions): ChainResult {
  if (chainDer.length === 0) return fail('no_certificate', 'the server sent no certificate');
  const sent: CertInfo[] = [];
  for (const [i, der] of chainDer.entries()) {
    try {
      sent.push(certInfo(der));
    } catch (e) {
      return fail('malformed', `certificate ${i} of the server's chain does not parse: ${errText(e)}`, sent.slice(0, 1));
    }
  }
  const leaf = sent[0]!;
  const eku = leaf.x509.keyUsage; // Node names the extendedKeyUsage OIDs `keyUsage`
  const purpose = opts.purpose ?? 'serverAuth';
  const wanted = purpose === 'clientAuth' ? EKU_CLIENT_AUTH : EKU_SERVER_AUTH;
  if (eku !== undefined && !eku.includes(wanted) && !eku.includes(EKU_ANY)) {
    return fail('required_eku_not_found', `leaf ${dn(leaf.x509)} is not for ${purpose} (extendedKeyUsage ${eku.join(', ')})`, [leaf]);
  }

  const index = indexAnchors(opts.anchors);
  const anchorOf = (ci: CertInfo): X509Certificate | undefined => index.byFingerprint.get(ci.x509.fingerprint256);

  let chosen: Candidate | null = null;
  let firstProblem: { candidate: Candidate; error: ChainErrorCode; detail: string } | null = null;
  let longest: CertInfo[] = [leaf];
  let untrustedDetail = '';
  let budget = SIGNATURE_BUDGET;

  const consider = (c: Candidate): boolean => {
    const problem = pathProblem(c, opts.now);
    if (!problem) {
      chosen = c;
      return true;
    }
    firstProblem ??= { candidate: c, ...problem };
    return false;
  };

  const search = (path: CertInfo[]): boolean => {
    if (path.length > longest.length) longest = path;
    const top = path[path.length - 1]!;
    // The path plus its anchor must fit in MAX_PATH_LENGTH.
    if (path.length + 1 > MAX_PATH_LENGTH) {
      untrustedDetail = `no trust anchor within ${MAX_PATH_LENGTH} certificates`;
      return false;
    }
    for (const a of anchorCandidates(top.x509, index)) {
      if (budget-- <= 0) return false;
      if (!a.ca) continue;
      if (issued(top.x509, a) && consider({ path, anchor: a })) return true;
    }
    for (const c of sent) {
      if (path.includes(c)) continue;
      // Same DER name, or (checkIssued) a name equal after RFC 5280 §7.1 normalisation.
      const sameName = c.subjectDer.equals(top.issuerDer);
      if (!sameName && !top.x509.checkIssued(c.x509)) continue;
      if (budget-- <= 0) return false;
      if (!c.isCa) {
        untrustedDetail = `issuer candidate ${dn(c.x509)} is not a CA (basicConstraints)`;
        continue;
      }
      if (c.keyUsage !== undefined && (c.keyUsage & (1 << KeyUsageBit.keyCertSign)) === 0) {
        untrustedDetail = `issuer candidate ${dn(c.x509)} may not sign certificates (keyUsage lacks keyCertSign)`;
        continue;
      }
      if (!issued(top.x509, c.x509)) {
        untrustedDetail = `signature of ${dn(top.x509)} does not verify with the key of ${dn(c.x509)}`;
        continue;
      }
      const anchor = anchorOf(c);
      if (anchor ? consider({ path, anchor }) : search([...path, c])) return true;
    }
    return false;
  };

  const leafAnchor = anchorOf(leaf);
  if (leafAnchor) {
    // A pinned (trust-anchor) server certificate: nothing below the anchor to chain or revoke.
    const problem = pathProblem({ path: [], anchor: leafAnchor }, opts.now);
    if (problem) return fail(problem.error, problem.detail, [], leafAnchor);
    chosen = { path: [], anchor: leafAnchor };
  } else if (!search([leaf])) {
    const fp = firstProblem as { candidate: Candidate; error: ChainErrorCode; detail: string } | null;
    if (fp) return fail(fp.error, fp.detail, fp.candidate.path, fp.candidate.anchor);
    const top = longest[longest.length - 1]!;
    const detail = untrustedDetail || (budget <= 0 ? 'path building gave up (too many candidate issuers)' : `no trust anchor or sent certificate issued ${dn(top.x509)} (issuer ${dnOf(top.x509, 'issuer')})`);
    return fail('unknown_issuer', detail, longest);
  }
  const { path, anchor } = chosen as unknown as Candidate;

  // RFC 5280 §6.1 on the path found: what path building does not look at (pathLenConstraint,
  // name constraints, unknown critical extensions) is enforced by the same validator the
  // PKITS conformance suite runs. Revocation stays with the store (below).
  if (path.length > 0) {
    const structural = validatePath({ path, anchor, crls: [], now: opts.now, revocation: 'none' });
    if (!structural.ok && structural.failure) {
      const f = structural.failure;
      return fail(f.code, `certificate ${f.index} of the path: ${f.code}: ${f.detail}`, path, anchor);
    }
  }

  if (opts.hostname !== undefined && opts.hostname !== null && opts.hostname !== '') {
    let host = opts.hostname.trim();
    if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
    let matched: string | undefined;
    try {
      matched = net.isIP(host) !== 0
        ? leaf.x509.checkIP(host)
        : leaf.x509.checkHost(host.replace(/\.$/, '').toLowerCase(), { partialWildcards: false });
    } catch {
      matched = undefined; // Node refuses names with NUL bytes and the like: they match nothing
    }
    if (matched === undefined) {
      return fail('not_valid_for_name', `leaf ${dn(leaf.x509)} (${leaf.x509.subjectAltName ?? 'no subjectAltName'}) does not match ${opts.hostname}`, path, anchor);
    }
  }

  const revocation = checkRevocation(path, anchor, opts);
  const error: ChainErrorCode | null =
    revocation.status === 'revoked' ? 'revoked'
    : revocation.status === 'stale' ? 'revocation_stale'
    : revocation.status === 'unknown' ? 'revocation_unknown'
    : null;
  const out: ChainResult = { ok: error === null, error, path, anchor, revocation };
  if (revocation.status === 'revoked' && revocation.result?.status === 'revoked') {
    out.detail = `certificate serial ${revocation.serial} is revoked (${revocation.result.reason}) since ${revocation.result.revocationDate.toISOString()}`;
  } else if (revocation.status === 'stale' || revocation.status === 'unknown') {
    out.detail = `revocation status of serial ${revocation.serial} is ${revocation.status}`;
  }
  return out;
}

const SEVERITY: Record<RevocationResult['status'], number> = { good: 0, unknown: 1, stale: 2, revoked: 3 };

function checkRevocation(path: CertInfo[], anchor: X509Certificate, opts: VerifyServerChainOptions): ChainResult['revocation'] {
  if (opts.revocation === null || path.length === 0) return { status: 'not_checked' };
  const count = opts.leafOnly ? 1 : path.length;
  let worst: { result: RevocationResult; cert: CertInfo } | null = null;
  for (let i = 0; i < count; i++) {
    const cert = path[i]!;
    const issuer = path[i + 1] ?? anchor;
    const result = opts.revocation.check(cert, issuer);
    if (worst === null || SEVERITY[result.status] > SEVERITY[worst.result.status]) worst = { result, cert };
    if (result.status === 'revoked') break; // nothing is worse
  }
  return { status: worst!.result.status, result: worst!.result, serial: serialHex(worst!.cert.serial) };
}

/** Lower-case hex of unsigned big-endian serial bytes (`00` for an empty buffer). */
export function serialHex(serial: Buffer | Uint8Array): string {
  return serial.length === 0 ? '00' : Buffer.from(serial).toString('hex');
}
