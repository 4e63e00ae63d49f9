/**
 * CRL parsing (RFC 5280 §5.1, §5.2): `parseCrl` turns a CertificateList's DER into a ParsedCrl,
 * checking structure, DER rules and every extension we recognise, without building one JS object
 * per revoked entry (the entries are validated and indexed by crl-entries.ts). Whether a parsed
 * CRL may be used — issuer, signature, time — is crl-verify.ts.
 *
 * A ParsedCrl is the DER plus offsets into it and the entry index table: two ArrayBuffers and
 * plain data, so a worker can transfer it (crl-worker.ts).
 *
 * Errors: every refusal is a `CrlError` (errors.ts) with a precise `code`, the same codes the
 * store reports and metrics count.
 */
import crypto from 'node:crypto';
import { BoundedReader, ParseError } from '../bytes/reader';
import { Tag, contextTag, enter, peekTag, readBitString, readOid, readRawElement, readSmallInt, readTime, readUnsignedBigInt, isTimeTag, oidToString } from './der';
import { parseAuthorityKeyId, walkExtensions } from './certinfo';
import { EntryIndex, indexEntries, type RevokedEntry, type RevokedEntryWithIssuer } from './crl-entries';
import { CrlError } from './errors';
import { checkName, parseIdp, type Idp } from './names';

export type { RevokedEntry, RevokedEntryWithIssuer } from './crl-entries';

export interface ParseCrlOptions {
  /** Refuse larger inputs with `too_large` (default 256 MiB). */
  maxBytes?: number;
  /**
   * Record unrecognised critical extensions in `unsupportedCritical` instead of throwing
   * `unsupported_critical_extension` (used to tell structure errors from policy refusals).
   */
  collectUnsupportedCritical?: boolean;
}

/** Everything a ParsedCrl is made of, structured-clone friendly (spans are [start, end) offsets into `der`). */
export interface CrlFields {
  version: 1 | 2;
  tbs: [number, number];
  sigAlgOid: string;
  /** AlgorithmIdentifier parameters element, or null when absent. */
  sigAlgParams: [number, number] | null;
  issuer: [number, number];
  thisUpdate: Date;
  nextUpdate: Date | null;
  entryCount: number;
  crlNumber: bigint | null;
  deltaCrlIndicator: bigint | null;
  authorityKeyId: [number, number] | null;
  /** issuingDistributionPoint extnValue (validated by names.ts `parseIdp`), or null. */
  idp: [number, number] | null;
  unsupportedCritical: string[];
  hasCertificateIssuerEntries: boolean;
  /** revokedCertificates content (absent list: null). */
  entries: [number, number] | null;
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

const DEFAULT_MAX_BYTES = 256 * 1024 * 1024;

/** A parsed, not yet verified CRL with its revoked-serial index. */
export class ParsedCrl {
  private readonly index: EntryIndex;
  private idpCache: Idp | null | undefined;

  private constructor(
    /** The whole CertificateList DER (kept: entries are decoded from it on a hit). */
    readonly der: Buffer,
    private readonly f: CrlFields,
    private readonly table: Uint32Array,
  ) {
    this.index = new EntryIndex(der, table, f.seed, f.entries, f.hasCertificateIssuerEntries);
  }

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
  /** The issuingDistributionPoint extnValue DER (its bytes are part of the CRL's scope), or null. */
  get issuingDistributionPointDer(): Buffer | null {
    const i = this.f.idp;
    return i ? this.der.subarray(i[0], i[1]) : null;
  }
  /** The issuingDistributionPoint (RFC 5280 §5.2.5) decoded, its name resolved against the CRL issuer; null when absent. */
  get issuingDistributionPoint(): Idp | null {
    if (this.idpCache === undefined) {
      const raw = this.issuingDistributionPointDer;
      this.idpCache = raw ? parseIdp(raw, this.issuerDer) : null; // validated by parseCrl: cannot throw
    }
    return this.idpCache;
  }
  /** Dotted OIDs of critical extensions we do not recognise (only with `collectUnsupportedCritical`). */
  get unsupportedCritical(): readonly string[] {
    return this.f.unsupportedCritical;
  }
  /** Some entry carries certificateIssuer (§5.3.3): entries may apply to other certificate issuers (indirect CRL). */
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
    return this.der.length + this.index.byteLength;
  }

  /** The entry for `serial`, or null: crl-entries.ts `EntryIndex.lookup` (O(1)). */
  lookup(serial: Buffer, negative?: boolean): RevokedEntry | null {
    return this.index.lookup(serial, negative);
  }

  /** Every entry for `serial` with the certificate issuer it applies to: crl-entries.ts `EntryIndex.lookupAll`. */
  lookupAll(serial: Buffer, negative?: boolean): RevokedEntryWithIssuer[] {
    return this.index.lookupAll(serial, negative);
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
 * Time, that revokedCertificates is absent rather than empty (§5.1.2.6), each entry and each
 * extension we recognise: cRLNumber, authorityKeyIdentifier, issuingDistributionPoint,
 * deltaCRLIndicator (CRL), reasonCode, invalidityDate, certificateIssuer, holdInstructionCode
 * (entries, crl-entries.ts). Does not verify the signature or times (crl-verify.ts).
 *
 * @throws CrlError `too_large` (input over maxBytes), `malformed` (any structural error; the
 *   ParseError is the `cause`), `empty_revoked_certificates`, `unsupported_critical_extension`.
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
    entries: null,
    signature: [0, 0],
    seed: (Math.random() * 0x100000000) >>> 0,
    sha256: null,
  };

  let revoked: BoundedReader | null = null;
  if (peekTag(tbs) === Tag.SEQUENCE) {
    revoked = enter(tbs, Tag.SEQUENCE, 'revokedCertificates');
    if (revoked.atEnd) {
      throw new CrlError('empty_revoked_certificates', 'CRL: revokedCertificates is an empty SEQUENCE; RFC 5280 §5.1.2.6: when there are no revoked certificates it MUST be absent');
    }
  }
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

  let table: Uint32Array;
  if (revoked) {
    f.entries = [revoked.offset, revoked.end];
    const ix = indexEntries(der, revoked.offset, revoked.end, { version, seed: f.seed, collectUnsupportedCritical: opts.collectUnsupportedCritical });
    table = ix.table;
    f.entryCount = ix.count;
    f.hasCertificateIssuerEntries = ix.hasCertificateIssuerEntries;
    for (const name of ix.unsupportedCritical) if (!f.unsupportedCritical.includes(name)) f.unsupportedCritical.push(name);
  } else table = new Uint32Array(16);
  return ParsedCrl.create(der, f, table);
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
      parseIdp(value, der.subarray(f.issuer[0], f.issuer[1])); // validates; decoded again on use
      f.idp = [at, at + value.length];
    } else if (critical) {
      const name = oidToString(oid);
      if (!opts.collectUnsupportedCritical) throw new CrlError('unsupported_critical_extension', `CRL extension ${name} is critical and not supported (RFC 5280 §5.2)`);
      f.unsupportedCritical.push(name);
    }
  });
}
