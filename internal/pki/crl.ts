/**
 * CRL parsing and signature verification (RFC 5280 §5).
 *
 * `parseCrl` is a streaming walk over CertificateList with the DER walker (der.ts): it never
 * builds one JS object per revoked entry. Entries go into an open-addressing hash table over a
 * Uint32Array whose slots hold the offset of each entry in the CRL's own DER buffer; a lookup
 * hashes the (normalised) serial, probes, compares bytes in place and decodes the entry lazily on
 * a hit. Memory is the DER (≈ 49 bytes per typical entry) plus ≤ 8 bytes of table per entry
 * (load factor ≤ 1/2), so a million-entry CRL stays under 64 bytes per entry, and the whole
 * state is two ArrayBuffers that a worker can transfer (crl-worker.ts).
 *
 * Errors: every refusal is a `CrlError` with a precise `code` (the same codes the store reports
 * and metrics count), in the spirit of rustls-webpki's one error type with precise variants.
 */
import crypto, { KeyObject, X509Certificate } from 'node:crypto';
import { BoundedReader, ParseError } from '../bytes/reader';
import {
  Tag,
  contextTag,
  enter,
  expectTag,
  peekTag,
  readBitString,
  readIntegerBytes,
  readLength,
  readOidBytes,
  readRawElement,
  readSmallInt,
  readTag,
  readTime,
  readUnsignedBigInt,
  isTimeTag,
  bitStringContent,
  booleanContent,
  oidToString,
  readNull,
  readOid,
  timeContent,
} from './der';
import { certInfo, KeyUsageBit, nameKey, normalizeSerial, parseAuthorityKeyId, walkExtensions } from './certinfo';
import { CRL_REASONS, type CrlReason } from './types';

export type CrlErrorCode =
  | 'malformed'
  | 'bad_signature'
  | 'unknown_issuer'
  | 'unsupported_critical_extension'
  | 'not_yet_valid'
  /** Past nextUpdate + skew: the store still keeps it and answers `stale`. */
  | 'expired'
  /** cRLNumber (or thisUpdate) lower than the one already accepted for the same scope. */
  | 'rollback'
  | 'unsupported_algorithm'
  | 'too_large';

/** Why a CRL was refused. `code` is stable (log field, metric label). */
export class CrlError extends Error {
  constructor(
    readonly code: CrlErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CrlError';
  }
}

/** IssuingDistributionPoint (RFC 5280 §5.2.5): flags decoded, the rest kept raw for scope checks. */
export interface IssuingDistributionPoint {
  /** The whole extnValue DER. */
  raw: Buffer;
  /** distributionPoint [0] DistributionPointName, raw, when present. */
  distributionPoint: Buffer | null;
  onlyContainsUserCerts: boolean;
  onlyContainsCACerts: boolean;
  /** onlySomeReasons present: the CRL covers only some reasons, so it can say revoked but never good. */
  onlySomeReasons: boolean;
  /** onlySomeReasons as ReasonFlags bits (bit n = ReasonFlags bit n), null when absent. */
  onlySomeReasonsMask?: number | null;
  indirectCRL: boolean;
  onlyContainsAttributeCerts: boolean;
}

/** One revokedCertificates entry, decoded on a lookup hit. */
export interface RevokedEntry {
  /** userCertificate, unsigned big-endian without leading zeros. */
  serial: Buffer;
  revocationDate: Date;
  /** CRLReason code (RFC 5280 §5.3.1) or null when the entry has no reasonCode. */
  reasonCode: number | null;
  /** Reason name; `unspecified` when there is no reasonCode. */
  reason: CrlReason;
  /** invalidityDate (§5.3.2), when present. */
  invalidityDate: Date | null;
  /** certificateIssuer GeneralNames DER (§5.3.3, indirect CRLs) on this very entry, when present. */
  certificateIssuer: Buffer | null;
}

export interface ParseCrlOptions {
  /** Refuse larger inputs with `too_large` (default 256 MiB). */
  maxBytes?: number;
  /**
   * Record unrecognised critical extensions in `unsupportedCritical` instead of throwing
   * `unsupported_critical_extension` (used to tell structure errors from policy refusals).
   */
  collectUnsupportedCritical?: boolean;
}

/** Everything a ParsedCrl is made of, structured-clone friendly (numbers are offsets into `der`). */
export interface CrlFields {
  version: 1 | 2;
  tbs: [number, number];
  sigAlgOid: string;
  /** AlgorithmIdentifier parameters element, [start, end) or null when absent. */
  sigAlgParams: [number, number] | null;
  issuer: [number, number];
  thisUpdate: Date;
  nextUpdate: Date | null;
  entryCount: number;
  crlNumber: bigint | null;
  deltaCrlIndicator: bigint | null;
  authorityKeyId: [number, number] | null;
  idp: (Omit<IssuingDistributionPoint, 'raw' | 'distributionPoint'> & { raw: [number, number]; dp: [number, number] | null }) | null;
  unsupportedCritical: string[];
  hasCertificateIssuerEntries: boolean;
  /** revokedCertificates content, [start, end) (absent list: null). */
  entries?: [number, number] | null;
  signature: [number, number];
  seed: number;
  sha256: string | null;
}

// 2.5.29.x extension OIDs, content octets 55 1D x.
const ID_CE = (x: number): Buffer => Buffer.from([0x55, 0x1d, x]);
const OID_CRL_NUMBER = ID_CE(20);
const OID_DELTA_CRL_INDICATOR = ID_CE(27);
const OID_IDP = ID_CE(28);
const OID_AKI = ID_CE(35);
// Entry extensions, compared by their last octet after 55 1D.
const ENTRY_REASON_CODE = 21;
const ENTRY_HOLD_INSTRUCTION = 23;
const ENTRY_INVALIDITY_DATE = 24;
const ENTRY_CERTIFICATE_ISSUER = 29;

const DEFAULT_MAX_BYTES = 256 * 1024 * 1024;

/** A parsed, not yet verified CRL with its revoked-serial index. */
export class ParsedCrl {
  private constructor(
    /** The whole CertificateList DER (kept: entries are decoded from it on a hit). */
    readonly der: Buffer,
    private readonly f: CrlFields,
    private readonly table: Uint32Array,
  ) {}

  /** @internal used by parseCrl */
  static create(der: Buffer, f: CrlFields, table: Uint32Array): ParsedCrl {
    return new ParsedCrl(der, f, table);
  }

  get version(): 1 | 2 {
    return this.f.version;
  }
  /** The raw tbsCertList (tag, length, content): the bytes the signature covers. */
  get tbsCertList(): Buffer {
    return this.der.subarray(this.f.tbs[0], this.f.tbs[1]);
  }
  get signatureAlgorithm(): { oid: string; params: Buffer | null } {
    const p = this.f.sigAlgParams;
    return { oid: this.f.sigAlgOid, params: p ? this.der.subarray(p[0], p[1]) : null };
  }
  /** Raw issuer Name DER. */
  get issuerDer(): Buffer {
    return this.der.subarray(this.f.issuer[0], this.f.issuer[1]);
  }
  get thisUpdate(): Date {
    return this.f.thisUpdate;
  }
  get nextUpdate(): Date | null {
    return this.f.nextUpdate;
  }
  /** Number of revokedCertificates entries (duplicates included). */
  get entryCount(): number {
    return this.f.entryCount;
  }
  get crlNumber(): bigint | null {
    return this.f.crlNumber;
  }
  /** BaseCRLNumber of a delta CRL (§5.2.4), null for a complete CRL. */
  get deltaCrlIndicator(): bigint | null {
    return this.f.deltaCrlIndicator;
  }
  get authorityKeyId(): Buffer | null {
    const a = this.f.authorityKeyId;
    return a ? this.der.subarray(a[0], a[1]) : null;
  }
  get issuingDistributionPoint(): IssuingDistributionPoint | null {
    const i = this.f.idp;
    if (!i) return null;
    const { raw, dp, ...flags } = i;
    return { ...flags, raw: this.der.subarray(raw[0], raw[1]), distributionPoint: dp ? this.der.subarray(dp[0], dp[1]) : null };
  }
  /** Dotted OIDs of critical extensions we do not recognise (only with `collectUnsupportedCritical`). */
  get unsupportedCritical(): readonly string[] {
    return this.f.unsupportedCritical;
  }
  /** Some entry carries certificateIssuer (§5.3.3): an indirect CRL, whose scope handling is not done yet. */
  get hasCertificateIssuerEntries(): boolean {
    return this.f.hasCertificateIssuerEntries;
  }
  /** signatureValue BIT STRING content (without the unused-bits octet). */
  get signatureValue(): Buffer {
    return this.der.subarray(this.f.signature[0], this.f.signature[1]);
  }
  /** SHA-256 of the DER, hex (computed once). */
  get sha256(): string {
    if (this.f.sha256 === null) this.f.sha256 = crypto.createHash('sha256').update(this.der).digest('hex');
    return this.f.sha256;
  }
  /** Records a SHA-256 of `der` computed elsewhere (e.g. in the thread pool, overlapping the parse). */
  presetSha256(hex: string): void {
    this.f.sha256 = hex;
  }
  /** Bytes held: the DER plus the index table. */
  get byteSize(): number {
    return this.der.length + this.table.byteLength;
  }

  /**
   * The entry for `serial` (any padding; compared as unsigned big-endian without leading zeros),
   * or null. `negative` (when given): whether the serial is a negative INTEGER (certinfo
   * `serialNegative`), so -1 (FF) and 255 (00 FF) stay apart; omitted, the sign is not compared.
   * O(1): one hash, a
   * short probe, and a lazy decode of the hit.
   */
  lookup(serial: Buffer, negative?: boolean): RevokedEntry | null {
    const s = normalizeSerial(serial);
    const t = this.table;
    const mask = t.length - 1;
    const der = this.der;
    let i = hashBytes(s, 0, s.length, this.f.seed) & mask;
    for (;;) {
      const v = t[i]!;
      if (v === 0) return null;
      const off = v - 1;
      serialAt(der, off);
      if (spanLen === s.length && (negative === undefined || spanNeg === negative) && der.compare(s, 0, s.length, spanStart, spanStart + spanLen) === 0) return decodeEntry(der, off);
      i = (i + 1) & mask;
    }
  }

  /**
   * Every entry for `serial` (an indirect CRL may list the same serial for several certificate
   * issuers), each with the certificate issuer it applies to (RFC 5280 §5.3.3: the entry's own
   * certificateIssuer, else the nearest preceding entry's, else the CRL issuer, given as null).
   * O(1) probing plus O(log k) for the issuer, k = number of certificateIssuer entries; the
   * issuer runs are found by one walk over the entries on the first call.
   */
  lookupAll(serial: Buffer, negative?: boolean): (RevokedEntry & { entryIssuer: Buffer | null })[] {
    const s = normalizeSerial(serial);
    const t = this.table;
    const mask = t.length - 1;
    const der = this.der;
    const out: (RevokedEntry & { entryIssuer: Buffer | null })[] = [];
    let i = hashBytes(s, 0, s.length, this.f.seed) & mask;
    for (;;) {
      const v = t[i]!;
      if (v === 0) break;
      const off = v - 1;
      serialAt(der, off);
      if (spanLen === s.length && (negative === undefined || spanNeg === negative) && der.compare(s, 0, s.length, spanStart, spanStart + spanLen) === 0) {
        out.push({ ...decodeEntry(der, off), entryIssuer: this.issuerAt(off) });
      }
      i = (i + 1) & mask;
    }
    return out;
  }

  private runs: { at: number[]; issuer: Buffer[] } | null = null;

  /** The certificateIssuer governing the entry at `off` (null: the CRL issuer). */
  private issuerAt(off: number): Buffer | null {
    if (!this.f.hasCertificateIssuerEntries || !this.f.entries) return null;
    if (!this.runs) {
      const runs = { at: [] as number[], issuer: [] as Buffer[] };
      const [start, end] = this.f.entries;
      const r = new BoundedReader(this.der, start, end);
      while (!r.atEnd) {
        const at = r.offset;
        const len = expectTag(r, Tag.SEQUENCE, 'revokedCertificate');
        r.skip(len);
        const e = decodeEntry(this.der, at);
        if (e.certificateIssuer) {
          runs.at.push(at);
          runs.issuer.push(e.certificateIssuer);
        }
      }
      this.runs = runs;
    }
    const { at, issuer } = this.runs;
    let lo = 0;
    let hi = at.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (at[mid]! <= off) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found < 0 ? null : issuer[found]!;
  }

  /** Plain data + the ArrayBuffers to move to another thread (zero-copy with a transferList). */
  toTransfer(): { msg: CrlTransfer; transferList: ArrayBuffer[] } {
    let ab = this.der.buffer as ArrayBuffer;
    // Only an ArrayBuffer owned by this Buffer alone may be transferred (small Buffers share a pool).
    if (this.der.byteOffset !== 0 || ab.byteLength !== this.der.length) {
      ab = new ArrayBuffer(this.der.length);
      new Uint8Array(ab).set(this.der);
    }
    const tab = this.table.buffer as ArrayBuffer;
    return { msg: { der: ab, fields: this.f, table: tab }, transferList: [ab, tab] };
  }

  static fromTransfer(m: CrlTransfer): ParsedCrl {
    return new ParsedCrl(Buffer.from(m.der), m.fields, new Uint32Array(m.table));
  }
}

export interface CrlTransfer {
  der: ArrayBuffer;
  fields: CrlFields;
  table: ArrayBuffer;
}

/**
 * Parse a CertificateList (RFC 5280 §5.1) from DER. Checks structure and DER rules, version
 * rules (v1 has no extensions), that tbsCertList.signature equals signatureAlgorithm, each
 * Time, each entry and each extension we recognise: cRLNumber, authorityKeyIdentifier,
 * issuingDistributionPoint, deltaCRLIndicator (CRL), reasonCode, invalidityDate,
 * certificateIssuer, holdInstructionCode (entries). Does not verify the signature or times.
 *
 * @throws CrlError `too_large` (input over maxBytes), `malformed` (any structural error; the
 *   ParseError is the `cause`), `unsupported_critical_extension`.
 */
export function parseCrl(der: Buffer, opts: ParseCrlOptions = {}): ParsedCrl {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  if (der.length > maxBytes) throw new CrlError('too_large', `CRL is ${der.length} bytes, limit ${maxBytes}`);
  try {
    return parseInner(der, opts);
  } catch (e) {
    if (e instanceof CrlError) throw e;
    if (e instanceof ParseError) throw new CrlError(e.code === 'too_large' ? 'too_large' : 'malformed', `CRL: ${e.message}`, { cause: e });
    throw e;
  }
}

function span(r: BoundedReader, start: number): [number, number] {
  return [start, r.offset];
}

function parseInner(der: Buffer, opts: ParseCrlOptions): ParsedCrl {
  const top = new BoundedReader(der);
  const certList = enter(top, Tag.SEQUENCE, 'CertificateList');
  top.expectEnd('CertificateList');

  const tbsStart = certList.offset;
  const tbs = enter(certList, Tag.SEQUENCE, 'tbsCertList');
  const tbsSpan = span(certList, tbsStart);

  let version: 1 | 2 = 1;
  if (peekTag(tbs) === Tag.INTEGER) {
    const v = readSmallInt(tbs, 'version');
    if (v !== 1) throw new ParseError('malformed', `version ${v + 1} is not a valid CRL version (only v2 may be encoded)`);
    version = 2;
  }
  const innerAlg = readRawElement(tbs, 'signature');
  const issuerStart = tbs.offset;
  checkName(readRawElement(tbs, 'issuer'));
  const issuer = span(tbs, issuerStart);
  const thisUpdate = readTime(tbs, 'thisUpdate');
  const nextUpdate = isTimeTag(peekTag(tbs)) ? readTime(tbs, 'nextUpdate') : null;

  const f: CrlFields = {
    version,
    tbs: tbsSpan,
    sigAlgOid: '',
    sigAlgParams: null,
    issuer,
    thisUpdate,
    nextUpdate,
    entryCount: 0,
    crlNumber: null,
    deltaCrlIndicator: null,
    authorityKeyId: null,
    idp: null,
    unsupportedCritical: [],
    hasCertificateIssuerEntries: false,
    signature: [0, 0],
    seed: (Math.random() * 0x100000000) >>> 0,
    sha256: null,
  };

  let revoked: BoundedReader | null = null;
  if (peekTag(tbs) === Tag.SEQUENCE) revoked = enter(tbs, Tag.SEQUENCE, 'revokedCertificates');
  if (peekTag(tbs) === contextTag(0, true)) {
    if (version === 1) throw new ParseError('malformed', 'v1 CRL carries crlExtensions (they require v2)');
    const exts = enter(enter(tbs, contextTag(0, true), 'crlExtensions'), Tag.SEQUENCE, 'Extensions');
    parseCrlExtensions(exts, der, f, opts);
  }
  tbs.expectEnd('tbsCertList');

  const outerAlgStart = certList.offset;
  const outerAlg = readRawElement(certList, 'signatureAlgorithm');
  if (!outerAlg.equals(innerAlg)) throw new ParseError('malformed', 'signatureAlgorithm differs from tbsCertList.signature (RFC 5280 §5.1.1.2)');
  {
    const a = new BoundedReader(der, outerAlgStart, certList.offset);
    const alg = enter(a, Tag.SEQUENCE, 'AlgorithmIdentifier');
    f.sigAlgOid = readOid(alg, 'algorithm');
    if (!alg.atEnd) {
      const ps = alg.offset;
      readRawElement(alg, 'parameters');
      f.sigAlgParams = [ps, alg.offset];
      alg.expectEnd('AlgorithmIdentifier');
    }
  }
  const sig = readBitString(certList, 'signatureValue');
  if (sig.unusedBits !== 0) throw new ParseError('malformed', 'signatureValue has unused bits');
  f.signature = [sig.bytes.byteOffset - der.byteOffset, sig.bytes.byteOffset - der.byteOffset + sig.bytes.length];
  certList.expectEnd('CertificateList (after signatureValue)');

  f.entries = revoked ? [revoked.offset, revoked.end] : null;
  const table = revoked ? indexEntries(der, revoked, f, opts) : new Uint32Array(16);
  return ParsedCrl.create(der, f, table);
}

/** Structure of a Name: SEQUENCE OF SET OF SEQUENCE { OID, ANY } (RFC 5280 §4.1.2.4). */
function checkName(nameDer: Buffer): void {
  const r = new BoundedReader(nameDer);
  const seq = enter(r, Tag.SEQUENCE, 'Name');
  while (!seq.atEnd) {
    const set = enter(seq, Tag.SET, 'RelativeDistinguishedName');
    if (set.atEnd) throw new ParseError('malformed', 'empty RelativeDistinguishedName');
    while (!set.atEnd) {
      const atv = enter(set, Tag.SEQUENCE, 'AttributeTypeAndValue');
      readOidBytes(atv, 'AttributeType');
      readRawElement(atv, 'AttributeValue');
      atv.expectEnd('AttributeTypeAndValue');
    }
  }
}

function parseCrlExtensions(exts: BoundedReader, der: Buffer, f: CrlFields, opts: ParseCrlOptions): void {
  walkExtensions(exts, (oid, critical, value) => {
    const at = value.byteOffset - der.byteOffset;
    if (oid.equals(OID_CRL_NUMBER)) {
      const r = new BoundedReader(value);
      f.crlNumber = readUnsignedBigInt(r, 'cRLNumber');
      r.expectEnd('cRLNumber');
    } else if (oid.equals(OID_DELTA_CRL_INDICATOR)) {
      const r = new BoundedReader(value);
      f.deltaCrlIndicator = readUnsignedBigInt(r, 'deltaCRLIndicator');
      r.expectEnd('deltaCRLIndicator');
    } else if (oid.equals(OID_AKI)) {
      const k = parseAuthorityKeyId(value);
      if (k) {
        const s = k.byteOffset - der.byteOffset;
        f.authorityKeyId = [s, s + k.length];
      }
    } else if (oid.equals(OID_IDP)) {
      f.idp = parseIdp(value, der, at);
    } else if (critical) {
      const name = oidToString(oid);
      if (!opts.collectUnsupportedCritical) throw new CrlError('unsupported_critical_extension', `CRL extension ${name} is critical and not supported (RFC 5280 §5.2)`);
      f.unsupportedCritical.push(name);
    }
  });
}

function parseIdp(value: Buffer, der: Buffer, at: number): NonNullable<CrlFields['idp']> {
  const r = new BoundedReader(value);
  const seq = enter(r, Tag.SEQUENCE, 'IssuingDistributionPoint');
  r.expectEnd('IssuingDistributionPoint');
  const out: NonNullable<CrlFields['idp']> = {
    raw: [at, at + value.length],
    dp: null,
    onlyContainsUserCerts: false,
    onlyContainsCACerts: false,
    onlySomeReasons: false,
    indirectCRL: false,
    onlyContainsAttributeCerts: false,
  };
  let last = -1;
  while (!seq.atEnd) {
    const start = seq.offset;
    const t = readTag(seq, 'IssuingDistributionPoint field');
    const content = seq.bytes(readLength(seq, 'IssuingDistributionPoint field'));
    const n = t & 0x1f;
    if ((t & 0xc0) !== 0x80 || n <= last || n > 5) throw new ParseError('malformed', `IssuingDistributionPoint: unexpected tag 0x${t.toString(16)}`);
    last = n;
    switch (n) {
      case 0:
        if (t !== contextTag(0, true)) throw new ParseError('malformed', 'IssuingDistributionPoint: distributionPoint must be constructed');
        out.dp = [value.byteOffset - der.byteOffset + start - 0, value.byteOffset - der.byteOffset + seq.offset];
        break;
      case 1:
        out.onlyContainsUserCerts = booleanContent(content, 'onlyContainsUserCerts');
        break;
      case 2:
        out.onlyContainsCACerts = booleanContent(content, 'onlyContainsCACerts');
        break;
      case 3: {
        const bits = bitStringContent(content, 'onlySomeReasons');
        out.onlySomeReasons = true;
        let mask = 0;
        const nb = bits.bytes.length * 8 - bits.unusedBits;
        for (let i = 0; i < Math.min(nb, 16); i++) if ((bits.bytes[i >> 3]! >> (7 - (i & 7))) & 1) mask |= 1 << i;
        out.onlySomeReasonsMask = mask;
        break;
      }
      case 4:
        out.indirectCRL = booleanContent(content, 'indirectCRL');
        break;
      case 5:
        out.onlyContainsAttributeCerts = booleanContent(content, 'onlyContainsAttributeCerts');
        break;
    }
  }
  const only = Number(out.onlyContainsUserCerts) + Number(out.onlyContainsCACerts) + Number(out.onlyContainsAttributeCerts);
  if (only > 1) throw new ParseError('malformed', 'IssuingDistributionPoint: at most one of onlyContainsUserCerts, onlyContainsCACerts, onlyContainsAttributeCerts may be TRUE (RFC 5280 §5.2.5)');
  return out;
}

// ---- the entry index -------------------------------------------------------------------------

/**
 * Seeded FNV-1a over bytes [start, end) with a murmur3 finaliser, so the low bits the table mask
 * keeps depend on every byte. Not cryptographic: the per-table random seed only keeps a chosen
 * set of serials from colliding the same way in every process.
 */
function hashBytes(b: Uint8Array, start: number, end: number, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = start; i < end; i++) {
    h ^= b[i]!;
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

// serialAt() results, kept in module variables so the probe loop allocates nothing.
let spanStart = 0;
let spanLen = 0;
/** The INTEGER's first content octet has its top bit set: a (non-conforming) negative serial. */
let spanNeg = false;

/** Locate the normalised serial of the (already validated) entry at `off` into spanStart/spanLen. */
function serialAt(der: Buffer, off: number): void {
  let p = off + 1; // past the SEQUENCE tag
  let l = der[p++]!;
  if (l & 0x80) p += l & 0x7f;
  p++; // INTEGER tag
  l = der[p++]!;
  if (l & 0x80) {
    const n = l & 0x7f;
    l = 0;
    for (let k = 0; k < n; k++) l = l * 256 + der[p++]!;
  }
  const end = p + l;
  spanNeg = p < end && (der[p]! & 0x80) !== 0;
  while (p < end && der[p] === 0) p++;
  spanStart = p;
  spanLen = end - p;
}

/** Check a Time's content octets in place (no allocation); same rules as der.ts `timeContent`. */
function checkTimeInPlace(der: Buffer, p: number, len: number, generalized: boolean): boolean {
  if (len !== (generalized ? 15 : 13) || der[p + len - 1] !== 0x5a) return false;
  for (let i = p; i < p + len - 1; i++) {
    const c = der[i]! - 0x30;
    if (c < 0 || c > 9) return false;
  }
  const q = generalized ? p + 4 : p + 2;
  const month = (der[q]! - 0x30) * 10 + der[q + 1]! - 0x30;
  const day = (der[q + 2]! - 0x30) * 10 + der[q + 3]! - 0x30;
  const hour = (der[q + 4]! - 0x30) * 10 + der[q + 5]! - 0x30;
  const minute = (der[q + 6]! - 0x30) * 10 + der[q + 7]! - 0x30;
  const second = (der[q + 8]! - 0x30) * 10 + der[q + 9]! - 0x30;
  return month >= 1 && month <= 12 && day >= 1 && day <= 31 && hour <= 23 && minute <= 59 && second <= 59;
}

// Content start of the element whose header `hdr` just read (module variable: no allocation).
// Read it only after the call returns (`hdrNext + hdr(...)` would read the old value).
let hdrNext = 0;

/**
 * The entry loop's header reader: the same DER rules as der.ts `readLength` (definite, minimal,
 * within `limit`), written over the raw window so a million entries cost no calls through the
 * reader object. Returns the content length; the content starts at `hdrNext`.
 */
function hdr(der: Buffer, p: number, limit: number, tag: number, what: string): number {
  if (p + 2 > limit) throw new ParseError('truncated', `${what}: header past the end`);
  if (der[p] !== tag) throw new ParseError('malformed', `${what}: expected tag 0x${tag.toString(16)}, got 0x${der[p]!.toString(16)}`);
  let l = der[p + 1]!;
  p += 2;
  if (l & 0x80) {
    const n = l & 0x7f;
    if (n === 0) throw new ParseError('malformed', `${what}: indefinite length is not DER`);
    if (n > 4) throw new ParseError('too_large', `${what}: ${n}-octet length`);
    if (p + n > limit) throw new ParseError('truncated', `${what}: length past the end`);
    if (der[p] === 0) throw new ParseError('malformed', `${what}: non-minimal length`);
    l = 0;
    for (let k = 0; k < n; k++) l = l * 256 + der[p++]!;
    if (l < 0x80) throw new ParseError('malformed', `${what}: non-minimal length`);
  }
  if (l > limit - p) throw new ParseError('truncated', `${what}: length ${l} past the end`);
  hdrNext = p;
  return l;
}

function indexEntries(der: Buffer, revoked: BoundedReader, f: CrlFields, opts: ParseCrlOptions): Uint32Array {
  const listStart = revoked.offset;
  const listEnd = revoked.end;
  // Pass 1: count entries (headers only) to size the table once.
  let count = 0;
  for (let p = listStart; p < listEnd; count++) {
    const l = hdr(der, p, listEnd, Tag.SEQUENCE, 'revokedCertificate');
    p = hdrNext + l;
  }
  let cap = 16;
  while (cap < count * 2) cap *= 2;
  const table = new Uint32Array(cap);
  const mask = cap - 1;
  const seed = f.seed;

  // Pass 2: validate each entry and insert it. A duplicate serial is inserted too: probing
  // finds the first one, so no comparison is needed here.
  for (let p = listStart; p < listEnd; ) {
    const entryStart = p;
    const elen = hdr(der, p, listEnd, Tag.SEQUENCE, 'revokedCertificate');
    const end = hdrNext + elen;
    const slen = hdr(der, hdrNext, end, Tag.INTEGER, 'userCertificate');
    if (slen === 0) throw new ParseError('malformed', 'userCertificate: empty INTEGER');
    let sStart = hdrNext;
    const sEnd = sStart + slen;
    while (sStart < sEnd && der[sStart] === 0) sStart++;
    let q = sEnd;
    const tt = q < end ? der[q]! : -1;
    if (tt !== Tag.UTCTime && tt !== Tag.GeneralizedTime) throw new ParseError('malformed', `revocationDate of entry at offset ${entryStart}: not a Time`);
    const tl = hdr(der, q, end, tt, 'revocationDate');
    if (!checkTimeInPlace(der, hdrNext, tl, tt === Tag.GeneralizedTime)) throw new ParseError('malformed', `revocationDate of entry at offset ${entryStart} is not a valid Time`);
    q = hdrNext + tl;
    if (q < end) {
      if (f.version === 1) throw new ParseError('malformed', 'v1 CRL entry carries crlEntryExtensions (they require v2)');
      q = checkEntryExtensions(der, q, end, f, opts);
    }
    if (q !== end) throw new ParseError('malformed', `revokedCertificate at offset ${entryStart}: trailing bytes`);

    let i = hashBytes(der, sStart, sEnd, seed) & mask;
    while (table[i] !== 0) i = (i + 1) & mask;
    table[i] = entryStart + 1;
    p = end;
  }
  f.entryCount = count;
  return table;
}

/** Validate crlEntryExtensions at `p` (RFC 5280 §5.3) within [p, end); returns the position after them. */
function checkEntryExtensions(der: Buffer, p: number, end: number, f: CrlFields, opts: ParseCrlOptions): number {
  const extsLen = hdr(der, p, end, Tag.SEQUENCE, 'crlEntryExtensions');
  if (extsLen === 0) throw new ParseError('malformed', 'crlEntryExtensions: empty');
  let q = hdrNext;
  const extsEnd = q + extsLen;
  let seen = 0;
  while (q < extsEnd) {
    const extLen = hdr(der, q, extsEnd, Tag.SEQUENCE, 'Extension');
    const extEnd = hdrNext + extLen;
    const oidLen = hdr(der, hdrNext, extEnd, Tag.OID, 'extnID');
    const oidAt = hdrNext;
    q = oidAt + oidLen;
    let critical = false;
    if (q < extEnd && der[q] === Tag.BOOLEAN) {
      const bl = hdr(der, q, extEnd, Tag.BOOLEAN, 'critical');
      const v = der[hdrNext];
      if (bl !== 1 || (v !== 0 && v !== 0xff)) throw new ParseError('malformed', 'critical: not a DER BOOLEAN');
      critical = v === 0xff;
      q = hdrNext + 1;
    }
    const vLen = hdr(der, q, extEnd, Tag.OCTET_STRING, 'extnValue');
    const vAt = hdrNext;
    q = vAt + vLen;
    if (q !== extEnd) throw new ParseError('malformed', 'entry Extension: length mismatch');
    const known = oidLen === 3 && der[oidAt] === 0x55 && der[oidAt + 1] === 0x1d ? der[oidAt + 2]! : -1;
    switch (known) {
      case ENTRY_REASON_CODE: {
        // CRLReason ::= ENUMERATED: 0A 01 nn with nn in 0..10, 7 unassigned.
        const v = der[vAt + 2]!;
        if (vLen !== 3 || der[vAt] !== Tag.ENUMERATED || der[vAt + 1] !== 1 || v > 10 || v === 7) {
          throw new ParseError('malformed', 'reasonCode is not a valid CRLReason');
        }
        break;
      }
      case ENTRY_INVALIDITY_DATE:
        if (vLen !== 17 || der[vAt] !== Tag.GeneralizedTime || der[vAt + 1] !== 15 || !checkTimeInPlace(der, vAt + 2, 15, true)) {
          throw new ParseError('malformed', 'invalidityDate is not a GeneralizedTime');
        }
        break;
      case ENTRY_CERTIFICATE_ISSUER:
        f.hasCertificateIssuerEntries = true;
        break;
      case ENTRY_HOLD_INSTRUCTION:
        break;
      default:
        if (critical) {
          const name = oidToString(der.subarray(oidAt, oidAt + oidLen));
          if (!opts.collectUnsupportedCritical) throw new CrlError('unsupported_critical_extension', `CRL entry extension ${name} is critical and not supported (RFC 5280 §5.3)`);
          if (!f.unsupportedCritical.includes(name)) f.unsupportedCritical.push(name);
        }
        continue;
    }
    const bit = 1 << (known & 31);
    if (seen & bit) throw new ParseError('malformed', `entry extension 2.5.29.${known} appears twice`);
    seen |= bit;
  }
  return q;
}

/** Decode the entry at `off` (validated at parse time, so this cannot fail on a parsed CRL). */
function decodeEntry(der: Buffer, off: number): RevokedEntry {
  const r = new BoundedReader(der, off);
  const e = enter(r, Tag.SEQUENCE, 'revokedCertificate');
  const serial = normalizeSerial(readIntegerBytes(e, 'userCertificate'));
  const revocationDate = readTime(e, 'revocationDate');
  const out: RevokedEntry = { serial, revocationDate, reasonCode: null, reason: 'unspecified', invalidityDate: null, certificateIssuer: null };
  if (!e.atEnd) {
    walkExtensions(enter(e, Tag.SEQUENCE, 'crlEntryExtensions'), (oid, _critical, value) => {
      if (oid.length !== 3 || oid[0] !== 0x55 || oid[1] !== 0x1d) return;
      if (oid[2] === ENTRY_REASON_CODE) {
        out.reasonCode = value[2]!;
        out.reason = CRL_REASONS[out.reasonCode] ?? 'unspecified';
      } else if (oid[2] === ENTRY_INVALIDITY_DATE) {
        out.invalidityDate = timeContent(value.subarray(2), true, 'invalidityDate');
      } else if (oid[2] === ENTRY_CERTIFICATE_ISSUER) {
        out.certificateIssuer = value;
      }
    });
  }
  return out;
}

// ---- signature -------------------------------------------------------------------------------

/** How node:crypto must be called for one signatureAlgorithm. */
export interface ResolvedAlgorithm {
  /** Display name, e.g. sha256WithRSAEncryption, rsassaPss(sha256), ecdsa-with-SHA384, Ed25519. */
  name: string;
  /** Digest for crypto.verify, or null for EdDSA. */
  digest: string | null;
  /** asymmetricKeyType values of keys that may verify it. */
  keyTypes: string[];
  /** RSASSA-PSS: padding and salt length for crypto.verify. */
  pss?: { saltLength: number };
}

const RSA_PKCS1: Record<string, string> = {
  '1.2.840.113549.1.1.5': 'sha1',
  '1.2.840.113549.1.1.14': 'sha224',
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
};
const ECDSA: Record<string, string> = {
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
};
/** DSA (RFC 3279 §2.2.2, RFC 5758 §3.1): PKITS 4.1.4–4.1.6 still use it. */
const DSA: Record<string, string> = {
  '1.2.840.10040.4.3': 'sha1',
  '2.16.840.1.101.3.4.3.1': 'sha224',
  '2.16.840.1.101.3.4.3.2': 'sha256',
};
const HASHES: Record<string, string> = {
  '1.3.14.3.2.26': 'sha1',
  '2.16.840.1.101.3.4.2.4': 'sha224',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};
const OID_RSASSA_PSS = '1.2.840.113549.1.1.10';
const OID_MGF1 = '1.2.840.113549.1.1.8';

/**
 * Map a signatureAlgorithm to node:crypto parameters: RSA PKCS#1 v1.5 (RFC 4055 / RFC 8017),
 * RSASSA-PSS with its parameters (RFC 4055 §3.1; node:crypto uses the message digest for MGF1,
 * so a different MGF1 hash is unsupported), ECDSA with SHA-2 (RFC 5758 §3.2), Ed25519/Ed448
 * (RFC 8410). @throws CrlError `unsupported_algorithm`, `malformed` (bad parameters)
 */
export function resolveSignatureAlgorithm(alg: { oid: string; params: Buffer | null }): ResolvedAlgorithm {
  const { oid, params } = alg;
  const noParams = (allowNull: boolean): void => {
    if (params === null) return;
    if (allowNull && params.length === 2 && params[0] === Tag.NULL && params[1] === 0) return;
    throw new CrlError('malformed', `signatureAlgorithm ${oid}: unexpected parameters`);
  };
  const rsa = RSA_PKCS1[oid];
  if (rsa) {
    noParams(true);
    return { name: `${rsa}WithRSAEncryption`, digest: rsa, keyTypes: ['rsa'] };
  }
  const ec = ECDSA[oid];
  if (ec) {
    noParams(false);
    return { name: `ecdsa-with-${ec.toUpperCase()}`, digest: ec, keyTypes: ['ec'] };
  }
  const dsa = DSA[oid];
  if (dsa) {
    noParams(false);
    return { name: `dsa-with-${dsa.toUpperCase()}`, digest: dsa, keyTypes: ['dsa'] };
  }
  if (oid === '1.3.101.112') {
    noParams(false);
    return { name: 'Ed25519', digest: null, keyTypes: ['ed25519'] };
  }
  if (oid === '1.3.101.113') {
    noParams(false);
    return { name: 'Ed448', digest: null, keyTypes: ['ed448'] };
  }
  if (oid === OID_RSASSA_PSS) {
    if (params === null) throw new CrlError('malformed', 'RSASSA-PSS without parameters');
    try {
      return resolvePss(params);
    } catch (e) {
      if (e instanceof ParseError) throw new CrlError('malformed', `RSASSA-PSS-params: ${e.message}`, { cause: e });
      throw e;
    }
  }
  throw new CrlError('unsupported_algorithm', `signature algorithm ${oid} is not supported`);
}

function hashAlgOid(r: BoundedReader, what: string): string {
  const alg = enter(r, Tag.SEQUENCE, what);
  const oid = readOid(alg, what);
  if (!alg.atEnd) readNull(alg, `${what} parameters`);
  alg.expectEnd(what);
  const h = HASHES[oid];
  if (!h) throw new CrlError('unsupported_algorithm', `${what} ${oid} is not supported`);
  return h;
}

function resolvePss(params: Buffer): ResolvedAlgorithm {
  const r = new BoundedReader(params);
  const seq = enter(r, Tag.SEQUENCE, 'RSASSA-PSS-params');
  r.expectEnd('RSASSA-PSS-params');
  // Defaults: SHA-1, MGF1 with SHA-1, salt 20, trailer 1 (RFC 4055 §3.1).
  let hash = 'sha1';
  let mgfHash = 'sha1';
  let saltLength = 20;
  if (peekTag(seq) === contextTag(0, true)) hash = hashAlgOid(enter(seq, contextTag(0, true), 'hashAlgorithm'), 'hashAlgorithm');
  if (peekTag(seq) === contextTag(1, true)) {
    const mgf = enter(enter(seq, contextTag(1, true), 'maskGenAlgorithm'), Tag.SEQUENCE, 'maskGenAlgorithm');
    const mgfOid = readOid(mgf, 'maskGenAlgorithm');
    if (mgfOid !== OID_MGF1) throw new CrlError('unsupported_algorithm', `mask generation ${mgfOid} is not MGF1`);
    mgfHash = hashAlgOid(mgf, 'MGF1 hash');
  }
  if (peekTag(seq) === contextTag(2, true)) saltLength = readSmallInt(enter(seq, contextTag(2, true), 'saltLength'), 'saltLength');
  if (peekTag(seq) === contextTag(3, true)) {
    const trailer = readSmallInt(enter(seq, contextTag(3, true), 'trailerField'), 'trailerField');
    if (trailer !== 1) throw new CrlError('unsupported_algorithm', `RSASSA-PSS trailerField ${trailer}`);
  }
  seq.expectEnd('RSASSA-PSS-params');
  if (mgfHash !== hash) throw new CrlError('unsupported_algorithm', `RSASSA-PSS with MGF1 hash ${mgfHash} != message hash ${hash}`);
  return { name: `rsassaPss(${hash})`, digest: hash, keyTypes: ['rsa', 'rsa-pss'], pss: { saltLength } };
}

const keyCache = new WeakMap<X509Certificate, KeyObject>();
function publicKeyOf(c: X509Certificate): KeyObject {
  let k = keyCache.get(c);
  if (!k) {
    k = c.publicKey;
    keyCache.set(c, k);
  }
  return k;
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

function verifyOptions(alg: ResolvedAlgorithm, key: KeyObject): crypto.VerifyKeyObjectInput | null {
  if (!alg.keyTypes.includes(key.asymmetricKeyType ?? '')) return null;
  if (alg.pss) return { key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: alg.pss.saltLength };
  return { key };
}

/**
 * Verify the CRL's signature over the raw tbsCertList with the first issuer candidate that
 * verifies (several may share the Name, e.g. across a key rollover). Runs in the libuv thread
 * pool (crypto.verify with a callback), so hashing a 49 MB tbsCertList does not block the loop.
 * @returns the certificate whose key verified it
 * @throws CrlError `unknown_issuer`, `unsupported_algorithm`, `malformed`, `bad_signature`
 */
export async function verifyCrlSignature(parsed: ParsedCrl, issuerCandidates: readonly X509Certificate[]): Promise<X509Certificate> {
  const alg = resolveSignatureAlgorithm(parsed.signatureAlgorithm);
  const issuers = crlIssuerCandidates(parsed, issuerCandidates);
  const tbs = parsed.tbsCertList;
  const sig = parsed.signatureValue;
  for (const c of issuers) {
    const o = verifyOptions(alg, publicKeyOf(c));
    if (!o) continue;
    const ok = await new Promise<boolean>((resolve) => {
      try {
        crypto.verify(alg.digest, tbs, o, sig, (err, res) => resolve(!err && res));
      } catch {
        resolve(false);
      }
    });
    if (ok) return c;
  }
  throw new CrlError('bad_signature', `CRL signature (${alg.name}) does not verify with the key of any of ${issuers.length} issuer certificate(s)`);
}

/** Synchronous `verifyCrlSignature`, for small CRLs and tests. Same results and errors. */
export function verifyCrlSignatureSync(parsed: ParsedCrl, issuerCandidates: readonly X509Certificate[]): X509Certificate {
  const alg = resolveSignatureAlgorithm(parsed.signatureAlgorithm);
  const issuers = crlIssuerCandidates(parsed, issuerCandidates);
  for (const c of issuers) {
    const o = verifyOptions(alg, publicKeyOf(c));
    if (!o) continue;
    let ok = false;
    try {
      ok = crypto.verify(alg.digest, parsed.tbsCertList, o, parsed.signatureValue);
    } catch {
      ok = false;
    }
    if (ok) return c;
  }
  throw new CrlError('bad_signature', `CRL signature (${alg.name}) does not verify with the key of any of ${issuers.length} issuer certificate(s)`);
}

/**
 * Where `now` falls in the CRL's validity (RFC 5280 §6.3.3 (a)(1), with clock skew): thisUpdate
 * after now + skew is `not_yet_valid`; now after nextUpdate + skew is `expired` (usable as stale);
 * a CRL without nextUpdate never expires here.
 */
export function crlTimeStatus(parsed: { thisUpdate: Date; nextUpdate: Date | null }, now: Date, skewMs: number): 'current' | 'not_yet_valid' | 'expired' {
  if (parsed.thisUpdate.getTime() > now.getTime() + skewMs) return 'not_yet_valid';
  if (parsed.nextUpdate && now.getTime() > parsed.nextUpdate.getTime() + skewMs) return 'expired';
  return 'current';
}
