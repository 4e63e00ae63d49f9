/**
 * Hand-written DER (X.690) for test certificates and CRLs that no CLI will produce: chosen string
 * types in Names, negative or 21-byte serials, delta CRLs without a base, IDPs naming the issuer.
 * Keys and signatures come from node:crypto (ECDSA P-256 with SHA-256), so everything is built in
 * memory in a few milliseconds.
 */
import crypto, { KeyObject } from 'node:crypto';

export function tlv(tag: number, content: Buffer): Buffer {
  const n = content.length;
  let len: Buffer;
  if (n < 0x80) len = Buffer.from([n]);
  else {
    const bytes: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
    len = Buffer.from([0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([Buffer.from([tag]), len, content]);
}
export const seq = (...c: Buffer[]): Buffer => tlv(0x30, Buffer.concat(c));
export const set = (...c: Buffer[]): Buffer => tlv(0x31, Buffer.concat(c));
export const ctx = (n: number, constructed: boolean, ...c: Buffer[]): Buffer => tlv(0x80 | (constructed ? 0x20 : 0) | n, Buffer.concat(c));
/** INTEGER with exactly these content octets (no normalisation: tests choose padding and sign). */
export const intRaw = (content: Buffer): Buffer => tlv(0x02, content);
export const int = (n: number | bigint): Buffer => {
  let hex = BigInt(n).toString(16);
  if (hex.length % 2) hex = '0' + hex;
  let b = Buffer.from(hex, 'hex');
  if (b[0]! & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return intRaw(b);
};
export const bool = (v: boolean): Buffer => tlv(0x01, Buffer.from([v ? 0xff : 0]));
export const octets = (b: Buffer): Buffer => tlv(0x04, b);
export const bits = (b: Buffer): Buffer => tlv(0x03, Buffer.concat([Buffer.from([0]), b]));

export function oid(dotted: string): Buffer {
  const a = dotted.split('.').map(Number);
  const out: number[] = [a[0]! * 40 + a[1]!];
  for (const v of a.slice(2)) {
    const c: number[] = [];
    let x = v;
    do {
      c.unshift(x & 0x7f);
      x = Math.floor(x / 128);
    } while (x > 0);
    for (let i = 0; i < c.length - 1; i++) c[i]! |= 0x80;
    out.push(...c);
  }
  return tlv(0x06, Buffer.from(out));
}

/** UTCTime for years 1950–2049, GeneralizedTime otherwise (RFC 5280 §5.1.2.4). */
export function time(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
  const y = d.getUTCFullYear();
  return y >= 1950 && y < 2050 ? tlv(0x17, Buffer.from(iso.slice(2), 'latin1')) : tlv(0x18, Buffer.from(iso, 'latin1'));
}
export const genTime = (d: Date): Buffer => tlv(0x18, Buffer.from(d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z', 'latin1'));

/** A Name from [attribute OID, value, string tag] triples, one RDN each (0x13 PrintableString, 0x0c UTF8String). */
export function name(...atvs: [string, string, number?][]): Buffer {
  return seq(...atvs.map(([o, v, tag]) => set(seq(oid(o), tlv(tag ?? 0x0c, Buffer.from(v, 'utf8'))))));
}
export const CN = '2.5.4.3';
export const O = '2.5.4.10';
export const C = '2.5.4.6';

export function ext(o: string, critical: boolean, value: Buffer): Buffer {
  return seq(oid(o), ...(critical ? [bool(true)] : []), octets(value));
}

const ECDSA_SHA256 = seq(oid('1.2.840.10045.4.3.2'));

export interface KeyPair {
  publicKey: KeyObject;
  privateKey: KeyObject;
  spki: Buffer;
}
export function keyPair(): KeyPair {
  const k = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...k, spki: k.publicKey.export({ format: 'der', type: 'spki' }) };
}

function signed(tbs: Buffer, key: KeyObject): Buffer {
  return seq(tbs, ECDSA_SHA256, bits(crypto.sign('sha256', tbs, key)));
}

export interface CertSpec {
  serial?: Buffer; // raw INTEGER content
  issuer: Buffer;
  subject: Buffer;
  key: KeyPair;
  signer: KeyPair;
  ca?: boolean;
  notBefore?: Date;
  notAfter?: Date;
  /** Raw extension elements to add (after basicConstraints / keyUsage). */
  extensions?: Buffer[];
}

export function cert(s: CertSpec): Buffer {
  const exts = [
    ext('2.5.29.19', true, s.ca ? seq(bool(true)) : seq()),
    ext('2.5.29.15', true, s.ca ? tlv(0x03, Buffer.from([1, 0x06])) /* keyCertSign, cRLSign */ : tlv(0x03, Buffer.from([7, 0x80])) /* digitalSignature */),
    ...(s.extensions ?? []),
  ];
  const tbs = seq(
    ctx(0, true, int(2)),
    intRaw(s.serial ?? Buffer.from([0x01])),
    ECDSA_SHA256,
    s.issuer,
    seq(time(s.notBefore ?? new Date('2020-01-01T00:00:00Z')), time(s.notAfter ?? new Date('2040-01-01T00:00:00Z'))),
    s.subject,
    s.key.spki,
    ctx(3, true, seq(...exts)),
  );
  return signed(tbs, s.signer.privateKey);
}

export interface CrlEntrySpec {
  serial: Buffer; // raw INTEGER content
  date?: Date;
  reason?: number;
  extensions?: Buffer[];
}

export interface CrlSpec {
  issuer: Buffer;
  signer: KeyPair;
  thisUpdate: Date;
  /** null: no nextUpdate. */
  nextUpdate: Date | null;
  entries?: CrlEntrySpec[];
  crlNumber?: number;
  deltaBase?: number;
  /** IssuingDistributionPoint content (inside the SEQUENCE). */
  idp?: Buffer[];
  /** Encode revokedCertificates as an empty SEQUENCE when there are no entries (RFC 5280 §5.1.2.6 forbids it). */
  emptyRevokedCertificates?: boolean;
}

export function crl(s: CrlSpec): Buffer {
  const exts: Buffer[] = [];
  if (s.crlNumber !== undefined) exts.push(ext('2.5.29.20', false, int(s.crlNumber)));
  if (s.deltaBase !== undefined) exts.push(ext('2.5.29.27', true, int(s.deltaBase)));
  if (s.idp) exts.push(ext('2.5.29.28', true, seq(...s.idp)));
  const entries = (s.entries ?? []).map((e) => {
    const ee = [...(e.reason !== undefined ? [ext('2.5.29.21', false, tlv(0x0a, Buffer.from([e.reason])))] : []), ...(e.extensions ?? [])];
    return seq(intRaw(e.serial), time(e.date ?? s.thisUpdate), ...(ee.length ? [seq(...ee)] : []));
  });
  const tbs = seq(
    int(1),
    ECDSA_SHA256,
    s.issuer,
    time(s.thisUpdate),
    ...(s.nextUpdate ? [time(s.nextUpdate)] : []),
    ...(entries.length || s.emptyRevokedCertificates ? [seq(...entries)] : []),
    ...(exts.length ? [ctx(0, true, seq(...exts))] : []),
  );
  return signed(tbs, s.signer.privateKey);
}

/** cRLDistributionPoints with one DistributionPoint whose fullName is these GeneralName elements. */
export function crlDp(...generalNames: Buffer[]): Buffer {
  return ext('2.5.29.31', false, seq(seq(ctx(0, true, ctx(0, true, ...generalNames)))));
}
export const uriName = (u: string): Buffer => ctx(6, false, Buffer.from(u, 'latin1'));
export const dirName = (n: Buffer): Buffer => ctx(4, true, n);
/** IDP distributionPoint [0] { fullName [0] GeneralNames }. */
export const idpFullName = (...generalNames: Buffer[]): Buffer => ctx(0, true, ctx(0, true, ...generalNames));
