/**
 * Certification path validation with revocation (RFC 5280 §6.1 and §6.3) for a given path,
 * trust anchor and CRL set — the function the PKITS runner drives and `verifyServerChain`
 * (chain.ts) uses for the constraints its own path building does not cover.
 *
 * Checked, per certificate from the anchor down: the signature with the working public key (DSA
 * parameters inherited, §6.1.4 (f)); the validity period; issuer name = previous subject
 * (RFC 5280 §7.1 comparison, `nameKey`); revocation (§6.3, revocation.ts), with every CRL's
 * signer found among the supplied certificates, holding cRLSign, and its own path validated to
 * the same anchor (and itself checked for revocation); name constraints (§6.1.3 (b)(c));
 * unrecognised critical extensions. For every CA certificate: basicConstraints cA,
 * pathLenConstraint (self-issued certificates not counted), keyUsage keyCertSign.
 *
 * Deliberately not processed (docs/conformance.md): certificate policies (policy tree,
 * requireExplicitPolicy, policy mappings, inhibitAnyPolicy — their extensions are recognised so a
 * critical one does not fail the path). Pure: no I/O, no clock.
 */
import crypto, { KeyObject, X509Certificate } from 'node:crypto';
import { BoundedReader } from '../bytes/reader';
import { certInfo, KeyUsageBit, type CertInfo } from './certinfo';
import type { ParsedCrl } from './crl';
import { Tag, enter, readOidBytes, readRawElement, readLength, readTag, oidToString } from './der';
import { errText, type PathFailureCode } from './errors';
import { resolveSignatureAlgorithm, verifySignature as verifyWith, type ResolvedAlgorithm } from './sigalg';
import { checkNameConstraints, directoryName, parseGeneralNames, parseNameConstraints, type GeneralName, type NameConstraints } from './names';
import { certStatus, crlRecord, type CertStatus, type CrlRecord } from './revocation';

export interface PathFailure {
  code: PathFailureCode;
  /** Index in `path` (leaf = 0) of the certificate that failed. */
  index: number;
  detail: string;
}

type CertInput = Buffer | X509Certificate | CertInfo;

export interface ValidatePathOptions {
  /** The path, leaf first, up to the certificate the anchor issued (the anchor itself excluded). */
  path: readonly CertInput[];
  /** The trust anchor: its name and key start the path (§6.1.1 (d)); it is not itself validated. */
  anchor: CertInput;
  /** Other certificates that may sign CRLs or issue CRL signers (PKITS "additional certs"). */
  extraCerts?: readonly CertInput[];
  /** Candidate CRLs, complete and delta, in any order; unusable ones are skipped. */
  crls: readonly (ParsedCrl | CrlRecord)[];
  now: Date;
  /** Clock skew for CRL times, ms (default 0). */
  skewMs?: number;
  /** Which certificates to check against CRLs (default `all`). */
  revocation?: 'all' | 'leaf' | 'none';
}

export interface PathResult {
  ok: boolean;
  failure?: PathFailure;
  /** Revocation status per path certificate (leaf = 0); null where not checked. */
  revocation: (CertStatus | null)[];
}

const MAX_SIGNER_DEPTH = 4;
const OID_EMAIL = '1.2.840.113549.1.9.1';
const OID_DSA = Buffer.from('2a8648ce380401', 'hex'); // 1.2.840.10040.4.1

function info(c: CertInput): CertInfo {
  return Buffer.isBuffer(c) || c instanceof X509Certificate ? certInfo(c) : c;
}

/** Validate `opts.path` to `opts.anchor` (RFC 5280 §6.1, §6.3). Never throws. */
export function validatePath(opts: ValidatePathOptions): PathResult {
  let path: CertInfo[];
  let anchor: CertInfo;
  let extra: CertInfo[];
  try {
    path = opts.path.map(info);
    anchor = info(opts.anchor);
    extra = (opts.extraCerts ?? []).map(info);
  } catch (e) {
    return { ok: false, failure: { code: 'malformed', index: 0, detail: `a certificate does not parse: ${errText(e)}` }, revocation: [] };
  }
  const records: CrlRecord[] = [];
  for (const c of opts.crls) {
    try {
      const rec = 'crl' in c && 'scope' in c ? c : crlRecord(c as ParsedCrl);
      if (rec.crl.unsupportedCritical.length > 0) continue; // §5.2, §5.3: MUST NOT be used
      records.push(rec);
    } catch {
      // An IDP that does not decode: the CRL is unusable.
    }
  }
  const ctx = new Context(anchor, [...path, ...extra], records, opts.now, opts.skewMs ?? 0);
  return ctx.validate(path, opts.revocation ?? 'all', 0);
}

/** State shared by the target path and the CRL-signer paths validated on its behalf. */
class Context {
  private readonly byIssuer = new Map<string, CrlRecord[]>();
  /** Working public key of each certificate once a path through it was processed (DSA inheritance). */
  private readonly keys = new Map<CertInfo, KeyObject>();
  private readonly signerMemo = new Map<CrlRecord, boolean>();
  /** CRLs whose signer is being validated, with whether that signer's key verified them. */
  private readonly signerBusy = new Map<CrlRecord, boolean>();
  private readonly pathBusy = new Set<CertInfo>();

  constructor(
    private readonly anchor: CertInfo,
    private readonly pool: CertInfo[],
    records: CrlRecord[],
    private readonly now: Date,
    private readonly skewMs: number,
  ) {
    for (const r of records) {
      const l = this.byIssuer.get(r.issuerKey);
      if (l) l.push(r);
      else this.byIssuer.set(r.issuerKey, [r]);
    }
  }

  validate(path: CertInfo[], revocation: 'all' | 'leaf' | 'none', depth: number): PathResult {
    const n = path.length;
    const statuses: (CertStatus | null)[] = new Array(n).fill(null);
    const failAt = (code: PathFailureCode, index: number, detail: string): PathResult => ({ ok: false, failure: { code, index, detail }, revocation: statuses });
    let workingKey: KeyObject;
    let workingParams: Buffer | null;
    try {
      ({ key: workingKey, params: workingParams } = publicKeyOf(this.anchor, null));
    } catch (e) {
      return failAt('malformed', n, `trust anchor key: ${errText(e)}`);
    }
    let workingIssuerKey = this.anchor.subjectKey;
    let maxPathLength = n;
    const constraints: NameConstraints[] = [];

    for (let i = n - 1; i >= 0; i--) {
      const cert = path[i]!;
      const isLeaf = i === 0;
      const selfIssued = cert.issuerKey === cert.subjectKey;
      // (a)(1) signature
      const sig = verifySignature(cert.tbsDer, cert.signatureAlgorithm, cert.signatureValue, workingKey);
      if (sig !== true) return failAt('bad_signature', i, `signature of certificate ${i}: ${sig}`);
      // (a)(2) validity
      if (this.now < cert.notBefore || this.now > cert.notAfter) {
        return failAt('certificate_expired', i, `certificate ${i} is valid ${cert.notBefore.toISOString()} – ${cert.notAfter.toISOString()}, not at ${this.now.toISOString()}`);
      }
      // (a)(4) name chaining
      if (cert.issuerKey !== workingIssuerKey) return failAt('name_chaining', i, `issuer of certificate ${i} is not the subject of its issuer`);
      // (f) the working key, with DSA parameters inherited
      let next: { key: KeyObject; params: Buffer | null };
      try {
        next = publicKeyOf(cert, workingParams);
      } catch (e) {
        return failAt('malformed', i, `public key of certificate ${i}: ${errText(e)}`);
      }
      this.keys.set(cert, next.key);
      // (a)(3) revocation
      if (revocation === 'all' || (revocation === 'leaf' && isLeaf)) {
        const st = certStatus(cert, { byIssuer: (k) => this.byIssuer.get(k) ?? [] }, {
          now: this.now,
          skewMs: this.skewMs,
          signerOk: (rec) => this.signerOk(rec, depth),
        });
        statuses[i] = st;
        if (st.status === 'revoked') return failAt('revoked', i, `certificate ${i} is revoked (${st.entry.reason})`);
        if (st.status === 'stale') return failAt('revocation_stale', i, `revocation status of certificate ${i} rests on a CRL past nextUpdate`);
        if (st.status === 'unknown') return failAt('revocation_unknown', i, `revocation status of certificate ${i} is unknown: ${st.why}`);
      }
      // (b)(c) name constraints
      if (constraints.length > 0 && (isLeaf || !selfIssued)) {
        let names: GeneralName[];
        try {
          names = subjectNames(cert);
        } catch (e) {
          return failAt('malformed', i, `names of certificate ${i}: ${errText(e)}`);
        }
        const v = checkNameConstraints(names, constraints);
        if (v) return failAt('name_constraints', i, `certificate ${i}: ${v}`);
      }
      if (cert.unknownCritical.length > 0) {
        return failAt('unsupported_critical_extension', i, `certificate ${i} has unrecognised critical extension(s) ${cert.unknownCritical.join(', ')}`);
      }
      if (isLeaf) break;
      // §6.1.4: preparation for the next certificate.
      if (cert.nameConstraints) {
        try {
          constraints.push(parseNameConstraints(cert.nameConstraints));
        } catch (e) {
          return failAt('malformed', i, `nameConstraints of certificate ${i}: ${errText(e)}`);
        }
      }
      workingIssuerKey = cert.subjectKey;
      workingKey = next.key;
      workingParams = next.params;
      if (!cert.isCa) return failAt('not_ca', i, `certificate ${i} issues certificate ${i - 1} but is not a CA (basicConstraints)`);
      if (!selfIssued) {
        if (maxPathLength <= 0) return failAt('path_length', i, `certificate ${i} exceeds a pathLenConstraint above it`);
        maxPathLength--;
      }
      if (cert.pathLen !== undefined && cert.pathLen < maxPathLength) maxPathLength = cert.pathLen;
      if (cert.keyUsage !== undefined && !(cert.keyUsage & (1 << KeyUsageBit.keyCertSign))) {
        return failAt('key_usage', i, `certificate ${i} issues certificate ${i - 1} but its keyUsage lacks keyCertSign`);
      }
    }
    return { ok: true, revocation: statuses };
  }

  /**
   * §6.3.3 (f)(g): a certificate named like the CRL issuer (and matching its authorityKeyIdentifier),
   * allowed to sign CRLs, whose key verifies the CRL and whose own path to the same anchor
   * validates, revocation included. Memoised per CRL. A CRL may cover its own signer's certificate
   * (an indirect CRL issuer listed on the CRL it signs, PKITS 4.14.30): while that signer is being
   * validated, the CRL counts as usable for it when the signer's key verified it; any other CRL
   * that lists the signer still revokes it.
   */
  private signerOk(rec: CrlRecord, depth: number): boolean {
    const memo = this.signerMemo.get(rec);
    if (memo !== undefined) return memo;
    const busy = this.signerBusy.get(rec);
    if (busy !== undefined) return busy;
    if (depth >= MAX_SIGNER_DEPTH) return false;
    this.signerBusy.set(rec, false);
    let ok = false;
    try {
      let alg: ResolvedAlgorithm;
      try {
        alg = resolveSignatureAlgorithm(rec.crl.signatureAlgorithm);
      } catch {
        return (ok = false);
      }
      const aki = rec.crl.authorityKeyId;
      for (const c of [this.anchor, ...this.pool]) {
        if (c.subjectKey !== rec.issuerKey) continue;
        if (aki && c.subjectKeyId && !aki.equals(c.subjectKeyId)) continue;
        if (c.keyUsage !== undefined && !(c.keyUsage & (1 << KeyUsageBit.cRLSign))) continue;
        const key = this.keys.get(c) ?? (c === this.anchor ? safeKey(c) : this.keyViaPath(c));
        if (!key || !verifyWith(alg, rec.crl.tbsCertList, rec.crl.signatureValue, key)) continue;
        this.signerBusy.set(rec, true);
        if (c === this.anchor || this.signerPathOk(c, depth)) {
          ok = true;
          break;
        }
        this.signerBusy.set(rec, false);
      }
      return ok;
    } finally {
      this.signerBusy.delete(rec);
      // Only a top-level answer is final: one found inside a cycle may be wrong for other callers.
      if (this.signerBusy.size === 0) this.signerMemo.set(rec, ok);
    }
  }

  /** The key of a certificate outside the processed path (DSA parameters taken from its issuers). */
  private keyViaPath(c: CertInfo): KeyObject | null {
    const p = this.findPath(c, new Set());
    if (!p) return safeKey(c);
    let params: Buffer | null = null;
    try {
      params = publicKeyOf(this.anchor, null).params;
      for (let i = p.length - 1; i >= 0; i--) {
        const k = publicKeyOf(p[i]!, params);
        params = k.params;
        if (i === 0) return k.key;
      }
    } catch {
      return null;
    }
    return null;
  }

  /** Validate the CRL signer's own path (leaf = the signer) to the same anchor. */
  private signerPathOk(signer: CertInfo, depth: number): boolean {
    if (this.pathBusy.has(signer)) return false;
    const p = this.findPath(signer, new Set());
    if (!p) return false;
    this.pathBusy.add(signer);
    try {
      return this.validate(p, 'all', depth + 1).ok;
    } finally {
      this.pathBusy.delete(signer);
    }
  }

  /** A path from `c` (leaf first) up to, not including, the anchor: issuers by name, signatures checked. */
  private findPath(c: CertInfo, seen: Set<CertInfo>, len = 0): CertInfo[] | null {
    if (len > 8) return null;
    if (c.issuerKey === this.anchor.subjectKey) {
      const k = safeKey(this.anchor);
      if (k && verifySignature(c.tbsDer, c.signatureAlgorithm, c.signatureValue, k) === true) return [c];
    }
    seen.add(c);
    for (const p of this.pool) {
      if (seen.has(p) || p.subjectKey !== c.issuerKey) continue;
      const rest = this.findPath(p, seen, len + 1);
      if (!rest) continue;
      const k = this.keys.get(p) ?? safeKey(p);
      if (k && verifySignature(c.tbsDer, c.signatureAlgorithm, c.signatureValue, k) === true) return [c, ...rest];
    }
    seen.delete(c);
    return null;
  }
}

function safeKey(c: CertInfo): KeyObject | null {
  try {
    return publicKeyOf(c, null).key;
  } catch {
    return null;
  }
}

/**
 * The certificate's public key; a DSA key without parameters takes `inherited` (§6.1.4 (f)).
 * Returns the parameters to pass on (the key's own, or the inherited ones).
 */
function publicKeyOf(c: CertInfo, inherited: Buffer | null): { key: KeyObject; params: Buffer | null } {
  // A certificate's own key is made once (CertInfo objects are cached and shared): making a
  // KeyObject per certificate per handshake was the chain check's largest cost.
  const cached = ownKeys.get(c);
  if (cached) return cached;
  const r = new BoundedReader(c.spkiDer);
  const spki = enter(r, Tag.SEQUENCE, 'SubjectPublicKeyInfo');
  const alg = enter(spki, Tag.SEQUENCE, 'algorithm');
  const oid = readOidBytes(alg, 'algorithm');
  const params = alg.atEnd ? null : readRawElement(alg, 'parameters');
  if (oid.equals(OID_DSA) && params === null) {
    if (!inherited) throw new Error('DSA key without parameters and none to inherit');
    const bitString = readRawElement(spki, 'subjectPublicKey');
    const algDer = seq(Buffer.concat([der(Tag.OID, OID_DSA), inherited]));
    const key = crypto.createPublicKey({ key: seq(Buffer.concat([algDer, bitString])), format: 'der', type: 'spki' });
    return { key, params: inherited };
  }
  const key = crypto.createPublicKey({ key: c.spkiDer, format: 'der', type: 'spki' });
  const own = { key, params: oid.equals(OID_DSA) ? params : null };
  ownKeys.set(c, own);
  return own;
}

const ownKeys = new WeakMap<CertInfo, { key: KeyObject; params: Buffer | null }>();
/** Signature results by signed TBS bytes and key: a chain verifies once, not on every handshake. */
const signatures = new WeakMap<Buffer, WeakMap<KeyObject, true | string>>();

function der(tag: number, content: Buffer): Buffer {
  const len = content.length;
  const head = len < 0x80 ? Buffer.from([tag, len]) : len < 0x100 ? Buffer.from([tag, 0x81, len]) : Buffer.from([tag, 0x82, len >> 8, len & 0xff]);
  return Buffer.concat([head, content]);
}
function seq(content: Buffer): Buffer {
  return der(Tag.SEQUENCE, content);
}

/** true, or why not. */
function verifySignature(tbs: Buffer, algId: { oid: string; params: Buffer | null }, sig: Buffer, key: KeyObject): true | string {
  let byKey = signatures.get(tbs);
  const hit = byKey?.get(key);
  if (hit !== undefined) return hit;
  const result = verifyUncached(tbs, algId, sig, key);
  if (!byKey) signatures.set(tbs, (byKey = new WeakMap()));
  byKey.set(key, result);
  return result;
}

function verifyUncached(tbs: Buffer, algId: { oid: string; params: Buffer | null }, sig: Buffer, key: KeyObject): true | string {
  let alg: ResolvedAlgorithm;
  try {
    alg = resolveSignatureAlgorithm(algId);
  } catch (e) {
    return errText(e);
  }
  return verifyWith(alg, tbs, sig, key) ? true : `${alg.name} signature does not verify`;
}

/** The names name constraints apply to: the subject, subjectAltName entries, emailAddress attributes (§4.2.1.10). */
export function subjectNames(cert: CertInfo): GeneralName[] {
  const names: GeneralName[] = [directoryName(cert.subjectDer)];
  if (cert.subjectAltName) names.push(...parseGeneralNames(cert.subjectAltName));
  const r = new BoundedReader(cert.subjectDer);
  const s = enter(r, Tag.SEQUENCE, 'Name');
  while (!s.atEnd) {
    const set = enter(s, Tag.SET, 'RDN');
    while (!set.atEnd) {
      const atv = enter(set, Tag.SEQUENCE, 'AttributeTypeAndValue');
      const oid = oidToString(readOidBytes(atv, 'AttributeType'));
      const tag = readTag(atv, 'AttributeValue');
      const value = atv.bytes(readLength(atv, 'AttributeValue'));
      if (oid === OID_EMAIL && tag === Tag.IA5String) names.push({ type: 'email', value: value.toString('latin1') });
    }
  }
  return names;
}
