/**
 * What the revocation check needs from a certificate (RFC 5280 §4.1): the raw issuer and subject
 * Names, the serial number as comparable bytes, the key identifiers, keyUsage and basicConstraints.
 * `node:crypto` X509Certificate gives the parsed object, public key and fingerprints; the rest is
 * read by walking the DER (der.ts), because X509Certificate exposes neither raw Names nor
 * keyUsage (its `keyUsage` property is the *extended* key usage list).
 */
import crypto, { X509Certificate } from 'node:crypto';
import { BoundedReader, ParseError } from '../bytes/reader';
import {
  Tag,
  contextTag,
  enter,
  peekTag,
  readBitString,
  readBoolean,
  readIntegerBytes,
  readOctetString,
  readOidBytes,
  readRawElement,
  skipElement,
  oidToString,
  readLength,
  readTag,
  readTime,
  readSmallInt,
} from './der';

export interface CertInfo {
  x509: X509Certificate;
  /** The whole certificate DER. */
  der: Buffer;
  /** Raw issuer Name (DER SEQUENCE, tag and length included). */
  issuerDer: Buffer;
  /** Raw subject Name. */
  subjectDer: Buffer;
  /** serialNumber as unsigned big-endian bytes without leading zeros (empty for serial 0). */
  serial: Buffer;
  /**
   * The serialNumber INTEGER is negative (invalid per RFC 5280 §4.1.2.2 but seen, PKITS 4.4.14):
   * its bytes are kept as two's complement, and this flag keeps -1 (FF) apart from 255 (00 FF).
   */
  serialNegative: boolean;
  /** authorityKeyIdentifier keyIdentifier (RFC 5280 §4.2.1.1), when present. */
  authorityKeyId?: Buffer;
  /** subjectKeyIdentifier (RFC 5280 §4.2.1.2), when present. */
  subjectKeyId?: Buffer;
  /**
   * keyUsage (RFC 5280 §4.2.1.3) as a bit mask, `1 << n` for KeyUsage bit n (digitalSignature = 0 …
   * keyCertSign = 5, cRLSign = 6); undefined when the extension is absent.
   */
  keyUsage?: number;
  /** basicConstraints cA (RFC 5280 §4.2.1.9). */
  isCa: boolean;
  /** basicConstraints pathLenConstraint, when present. */
  pathLen?: number;
  /** SHA-256 of the DER, lower-case hex. */
  sha256: string;
  /** `nameKey(issuerDer)`, computed once: the key CRL and issuer lookups use. */
  issuerKey: string;
  /** `nameKey(subjectDer)`. */
  subjectKey: string;
  /** The raw tbsCertificate (the bytes the signature covers). */
  tbsDer: Buffer;
  /** signatureAlgorithm: dotted OID and raw parameters element (null when absent). */
  signatureAlgorithm: { oid: string; params: Buffer | null };
  /** signatureValue BIT STRING content without the unused-bits octet. */
  signatureValue: Buffer;
  /** Raw SubjectPublicKeyInfo (for DSA parameter inheritance, RFC 5280 §6.1.4 (f)). */
  spkiDer: Buffer;
  /** validity (RFC 5280 §4.1.2.5), UTCTime or GeneralizedTime. */
  notBefore: Date;
  notAfter: Date;
  /** extnValue DER of subjectAltName (GeneralNames), nameConstraints, cRLDistributionPoints, freshestCRL. */
  subjectAltName?: Buffer;
  nameConstraints?: Buffer;
  crlDistributionPoints?: Buffer;
  freshestCrl?: Buffer;
  /** Dotted OIDs of critical extensions this module neither processes nor deliberately ignores. */
  unknownCritical: string[];
}

/** KeyUsage bit numbers (RFC 5280 §4.2.1.3). */
export const KeyUsageBit = {
  digitalSignature: 0,
  nonRepudiation: 1,
  keyEncipherment: 2,
  dataEncipherment: 3,
  keyAgreement: 4,
  keyCertSign: 5,
  cRLSign: 6,
  encipherOnly: 7,
  decipherOnly: 8,
} as const;

// Extension OIDs as content octets (2.5.29.x = 55 1D x).
const OID_SKI = Buffer.from([0x55, 0x1d, 0x0e]); // 2.5.29.14
const OID_KEY_USAGE = Buffer.from([0x55, 0x1d, 0x0f]); // 2.5.29.15
const OID_BASIC_CONSTRAINTS = Buffer.from([0x55, 0x1d, 0x13]); // 2.5.29.19
const OID_AKI = Buffer.from([0x55, 0x1d, 0x23]); // 2.5.29.35
const ID_CE_SAN = 17;
const ID_CE_NAME_CONSTRAINTS = 30;
const ID_CE_CRL_DP = 31;
const ID_CE_FRESHEST_CRL = 46;
/**
 * Critical 2.5.29.x extensions that do not make a certificate unusable here: processed ones, and
 * the certificate-policy family (certificatePolicies 32, policyMappings 33, policyConstraints 36,
 * inhibitAnyPolicy 54), which ca-proxy deliberately does not process (docs/conformance.md), plus
 * extendedKeyUsage 37 (checked by chain.ts) and issuerAltName 18.
 */
const KNOWN_CE = new Set([14, 15, 17, 18, 19, 30, 31, 32, 33, 35, 36, 37, 46, 54]);

const cache = new WeakMap<X509Certificate, CertInfo>();
/**
 * Parsed certificates by DER, most recently used last: a server sends the same chain on every
 * connection, and parsing it (X509Certificate + the DER walk) cost more per handshake than the
 * rest of the chain check. Bounded; CertInfo objects are never mutated.
 */
const byDer = new Map<string, CertInfo>();
const BY_DER_MAX = 4096;

/**
 * Parse a certificate. Accepts DER, or an X509Certificate (results are cached per object).
 * Throws `ParseError` for DER that X509Certificate accepted but our walk cannot read.
 */
export function certInfo(input: Buffer | X509Certificate): CertInfo {
  if (input instanceof X509Certificate) {
    const hit = cache.get(input);
    if (hit) return hit;
  } else {
    const key = input.toString('latin1');
    const hit = byDer.get(key);
    if (hit) {
      byDer.delete(key);
      byDer.set(key, hit);
      return hit;
    }
    const info = parseCertInfo(input);
    byDer.set(key, info);
    if (byDer.size > BY_DER_MAX) byDer.delete(byDer.keys().next().value!);
    return info;
  }
  return parseCertInfo(input);
}

function parseCertInfo(input: Buffer | X509Certificate): CertInfo {
  const x509 = input instanceof X509Certificate ? input : new X509Certificate(input);
  const der = x509.raw;
  const r = new BoundedReader(der);
  const cert = enter(r, Tag.SEQUENCE, 'Certificate');
  r.expectEnd('Certificate');
  const tbs = enter(cert, Tag.SEQUENCE, 'tbsCertificate');
  if (peekTag(tbs) === contextTag(0, true)) skipElement(tbs, 'version');
  const rawSerial = readIntegerBytes(tbs, 'serialNumber');
  const serial = normalizeSerial(rawSerial);
  skipElement(tbs, 'signature');
  const issuerDer = readRawElement(tbs, 'issuer');
  const validity = enter(tbs, Tag.SEQUENCE, 'validity');
  const notBefore = readTime(validity, 'notBefore');
  const notAfter = readTime(validity, 'notAfter');
  const subjectDer = readRawElement(tbs, 'subject');
  const spkiDer = readRawElement(tbs, 'subjectPublicKeyInfo');
  const tbsDer = der.subarray(0, 0); // replaced below
  const info: CertInfo = {
    x509,
    der,
    issuerDer,
    subjectDer,
    serial,
    serialNegative: (rawSerial[0]! & 0x80) !== 0,
    isCa: false,
    sha256: crypto.createHash('sha256').update(der).digest('hex'),
    issuerKey: nameKey(issuerDer),
    subjectKey: nameKey(subjectDer),
    tbsDer,
    signatureAlgorithm: { oid: '', params: null },
    signatureValue: tbsDer,
    spkiDer,
    notBefore,
    notAfter,
    unknownCritical: [],
  };
  {
    // The outer structure: tbsCertificate (raw), signatureAlgorithm, signatureValue.
    const outer = new BoundedReader(der);
    const c = enter(outer, Tag.SEQUENCE, 'Certificate');
    info.tbsDer = readRawElement(c, 'tbsCertificate');
    const alg = enter(c, Tag.SEQUENCE, 'signatureAlgorithm');
    info.signatureAlgorithm.oid = oidToString(readOidBytes(alg, 'algorithm'));
    if (!alg.atEnd) info.signatureAlgorithm.params = readRawElement(alg, 'parameters');
    const sig = readBitString(c, 'signatureValue');
    info.signatureValue = sig.bytes;
  }
  while (!tbs.atEnd) {
    const t = peekTag(tbs);
    if (t !== contextTag(3, true)) {
      skipElement(tbs, 'uniqueID');
      continue;
    }
    const exts = enter(enter(tbs, contextTag(3, true), 'extensions'), Tag.SEQUENCE, 'Extensions');
    walkExtensions(exts, (oid, critical, value) => {
      if (oid.equals(OID_SKI)) info.subjectKeyId = readOctetString(new BoundedReader(value), 'subjectKeyIdentifier');
      else if (oid.equals(OID_AKI)) info.authorityKeyId = parseAuthorityKeyId(value);
      else if (oid.equals(OID_KEY_USAGE)) info.keyUsage = parseKeyUsage(value);
      else if (oid.equals(OID_BASIC_CONSTRAINTS)) {
        const bc = parseBasicConstraints(value);
        info.isCa = bc.cA;
        if (bc.pathLen !== undefined) info.pathLen = bc.pathLen;
      } else if (oid.length === 3 && oid[0] === 0x55 && oid[1] === 0x1d) {
        const n = oid[2]!;
        if (n === ID_CE_SAN) info.subjectAltName = value;
        else if (n === ID_CE_NAME_CONSTRAINTS) info.nameConstraints = value;
        else if (n === ID_CE_CRL_DP) info.crlDistributionPoints = value;
        else if (n === ID_CE_FRESHEST_CRL) info.freshestCrl = value;
        else if (critical && !KNOWN_CE.has(n)) info.unknownCritical.push(oidToString(oid));
      } else if (critical) info.unknownCritical.push(oidToString(oid));
    });
  }
  if (input instanceof X509Certificate) cache.set(input, info);
  return info;
}

/**
 * Walk `Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension` (RFC 5280 §4.1): `exts` is a reader
 * over the SEQUENCE's content. `fn` gets the extnID content octets, critical, and the extnValue
 * content (the DER of the extension's own value). Duplicate extnIDs are malformed (§4.2).
 */
export function walkExtensions(exts: BoundedReader, fn: (oid: Buffer, critical: boolean, value: Buffer) => void): void {
  const seen = new Set<string>();
  if (exts.atEnd) throw new ParseError('malformed', 'Extensions: empty SEQUENCE');
  while (!exts.atEnd) {
    const ext = enter(exts, Tag.SEQUENCE, 'Extension');
    const oid = readOidBytes(ext, 'extnID');
    const key = oid.toString('hex');
    if (seen.has(key)) throw new ParseError('malformed', `Extension ${oidToString(oid)} appears twice`);
    seen.add(key);
    let critical = false;
    if (peekTag(ext) === Tag.BOOLEAN) {
      critical = readBoolean(ext, 'critical');
      // DER: a DEFAULT value is never encoded (X.690 §11.5); tolerated, as most parsers do.
    }
    const value = readOctetString(ext, 'extnValue');
    ext.expectEnd('Extension');
    fn(oid, critical, value);
  }
}

/** AuthorityKeyIdentifier's keyIdentifier (`[0] IMPLICIT OCTET STRING`), or undefined when absent. */
export function parseAuthorityKeyId(value: Buffer): Buffer | undefined {
  const r = new BoundedReader(value);
  const aki = enter(r, Tag.SEQUENCE, 'AuthorityKeyIdentifier');
  r.expectEnd('AuthorityKeyIdentifier');
  let keyId: Buffer | undefined;
  while (!aki.atEnd) {
    const t = readTag(aki, 'AuthorityKeyIdentifier field');
    const len = readLength(aki, 'AuthorityKeyIdentifier field');
    const content = aki.bytes(len);
    if (t === contextTag(0, false)) keyId = content;
    else if (t !== contextTag(1, true) && t !== contextTag(2, false)) {
      throw new ParseError('malformed', `AuthorityKeyIdentifier: unexpected tag 0x${t.toString(16)}`);
    }
  }
  return keyId;
}

function parseKeyUsage(value: Buffer): number {
  const r = new BoundedReader(value);
  const bits = readBitString(r, 'keyUsage');
  r.expectEnd('keyUsage');
  let mask = 0;
  const nbits = bits.bytes.length * 8 - bits.unusedBits;
  for (let i = 0; i < Math.min(nbits, 16); i++) {
    if ((bits.bytes[i >> 3]! >> (7 - (i & 7))) & 1) mask |= 1 << i;
  }
  return mask;
}

function parseBasicConstraints(value: Buffer): { cA: boolean; pathLen?: number } {
  const r = new BoundedReader(value);
  const bc = enter(r, Tag.SEQUENCE, 'basicConstraints');
  const cA = peekTag(bc) === Tag.BOOLEAN ? readBoolean(bc, 'cA') : false;
  if (peekTag(bc) === Tag.INTEGER) return { cA, pathLen: readSmallInt(bc, 'pathLenConstraint') };
  return { cA };
}

/**
 * A serial number's INTEGER content octets as unsigned big-endian bytes without leading zeros (a
 * view, no copy). Applied identically to certificate and CRL-entry serials so they compare equal
 * however each was padded; a negative serial (invalid, RFC 5280 §4.1.2.2, but seen in the wild)
 * keeps its two's-complement bytes and so still compares consistently.
 */
export function normalizeSerial(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length && b[i] === 0) i++;
  return i === 0 ? b : b.subarray(i);
}

/**
 * The key under which two Names compare equal (RFC 5280 §7.1, RFC 4518 string preparation): per
 * RDN, its AttributeTypeAndValues sorted; a value of a directory string type (PrintableString,
 * UTF8String, TeletexString, BMPString, UniversalString, IA5String, VisibleString) is decoded,
 * NFKC-normalised, case-folded and its insignificant spaces removed (leading/trailing, runs
 * collapsed to one), so a CRL issuer written as UTF8String matches a certificate issuer written as
 * PrintableString, and "Good  CA" matches "good ca". Other values compare by their DER. RDN order
 * matters (PKITS 4.3.2). Malformed DER falls back to the hex of the whole Name (exact match only).
 */
export function nameKey(nameDer: Buffer): string {
  try {
    const r = new BoundedReader(nameDer);
    const seq = enter(r, Tag.SEQUENCE, 'Name');
    r.expectEnd('Name');
    const rdns: string[] = [];
    while (!seq.atEnd) rdns.push(rdnKey(enter(seq, Tag.SET, 'RelativeDistinguishedName')));
    return rdns.join(',');
  } catch {
    return '#' + nameDer.toString('hex');
  }
}

/** Key of one RelativeDistinguishedName (`set` is a reader over the SET's content); see `nameKey`. */
export function rdnKey(set: BoundedReader): string {
  const parts: string[] = [];
  while (!set.atEnd) {
    const atv = enter(set, Tag.SEQUENCE, 'AttributeTypeAndValue');
    const oid = oidToString(readOidBytes(atv, 'AttributeType'));
    const start = atv.offset;
    const tag = readTag(atv, 'AttributeValue');
    const content = atv.bytes(readLength(atv, 'AttributeValue'));
    atv.expectEnd('AttributeTypeAndValue');
    const text = decodeString(tag, content);
    parts.push(`${oid}=${text === null ? '#' + atv.buf.subarray(start, atv.offset).toString('hex') : JSON.stringify(prepareString(text))}`);
  }
  return parts.sort().join('+');
}

/** RFC 4518 §2 in short: NFKC, case fold, insignificant space handling. */
function prepareString(s: string): string {
  return s.normalize('NFKC').toLowerCase().replace(/[\s\u00a0]+/g, ' ').trim();
}

// Short names for RFC 4514 §3 plus the usual extras.
const ATTR_NAMES: Record<string, string> = {
  '2.5.4.3': 'CN',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.9': 'STREET',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
  '2.5.4.5': 'serialNumber',
  '2.5.4.97': 'organizationIdentifier',
  '0.9.2342.19200300.100.1.25': 'DC',
  '0.9.2342.19200300.100.1.1': 'UID',
  '1.2.840.113549.1.9.1': 'emailAddress',
};

/**
 * A Name (DER) as an RFC 4514 string for display: RDNs last-first, multi-valued RDNs joined with
 * '+', special characters escaped; values of unknown string types are written as #hex. Never
 * used for matching (see `nameKey`). Throws `ParseError` on malformed DER.
 */
/**
 * A certificate's subject or issuer as one RFC 4514 string (most specific RDN first, `CN=…,O=…`),
 * the one way ca-proxy prints distinguished names (decisions, metric labels, messages, `crl show`).
 * Node's own `subject`/`issuer` are one RDN per line in the opposite order; they are the fallback
 * only for a name the DER walk cannot read.
 */
export function dnOf(cert: X509Certificate | CertInfo, which: 'subject' | 'issuer' = 'subject'): string {
  const x509 = cert instanceof X509Certificate ? cert : cert.x509;
  try {
    const info = cert instanceof X509Certificate ? certInfo(cert) : cert;
    return formatName(which === 'subject' ? info.subjectDer : info.issuerDer);
  } catch {
    return x509[which].replace(/\n/g, ', ');
  }
}

export function formatName(nameDer: Buffer): string {
  const r = new BoundedReader(nameDer);
  const seq = enter(r, Tag.SEQUENCE, 'Name');
  const rdns: string[] = [];
  while (!seq.atEnd) {
    const set = enter(seq, Tag.SET, 'RelativeDistinguishedName');
    const parts: string[] = [];
    while (!set.atEnd) {
      const atv = enter(set, Tag.SEQUENCE, 'AttributeTypeAndValue');
      const oid = oidToString(readOidBytes(atv, 'AttributeType'));
      const valueStart = atv.offset;
      const tag = readTag(atv, 'AttributeValue');
      const len = readLength(atv, 'AttributeValue');
      const content = atv.bytes(len);
      const text = decodeString(tag, content);
      const type = ATTR_NAMES[oid] ?? oid;
      parts.push(`${type}=${text === null ? '#' + atv.buf.subarray(valueStart, atv.offset).toString('hex') : escapeRdnValue(text)}`);
    }
    rdns.push(parts.join('+'));
  }
  return rdns.reverse().join(',');
}

function decodeString(tag: number, b: Buffer): string | null {
  switch (tag) {
    case Tag.UTF8String:
      return b.toString('utf8');
    case Tag.PrintableString:
    case Tag.IA5String:
    case Tag.T61String:
    case 0x1a: // VisibleString
      return b.toString('latin1');
    case Tag.BMPString: {
      if (b.length % 2) return null;
      const swapped = Buffer.from(b);
      swapped.swap16();
      return swapped.toString('utf16le');
    }
    case Tag.UniversalString: {
      if (b.length % 4) return null;
      let s = '';
      for (let i = 0; i < b.length; i += 4) s += String.fromCodePoint(b.readUInt32BE(i));
      return s;
    }
    default:
      return null;
  }
}

function escapeRdnValue(s: string): string {
  let out = s.replace(/[\\",+;<>=]/g, (c) => '\\' + c).replace(/[\u0000]/g, '\\00');
  if (out.startsWith(' ') || out.startsWith('#')) out = '\\' + out;
  if (out.endsWith(' ') && out.length > 1) out = out.slice(0, -1) + '\\ ';
  return out;
}
