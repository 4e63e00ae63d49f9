/**
 * A DER walker (ITU-T X.690 §8, §10) over the one bounded reader (internal/tls/reader.ts).
 *
 * Functions, not node objects: each call reads one element header or value at the reader's
 * position and moves it on, so walking a million CRL entries allocates nothing per element
 * (see crl.ts). Every malformed, non-DER or truncated input is a `ParseError` thrown from the
 * reader or from here: `truncated` when a length runs past its window, `malformed` for an
 * encoding DER forbids (indefinite or non-minimal lengths, a BOOLEAN other than 00/FF, a bad
 * time string), `unsupported` for high tag numbers (X.509 never uses them).
 */
import { BoundedReader, ParseError } from '../bytes/reader';

/** Universal and context tags used by X.509 (first identifier octet). */
export const Tag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  ENUMERATED: 0x0a,
  UTF8String: 0x0c,
  PrintableString: 0x13,
  T61String: 0x14,
  IA5String: 0x16,
  UTCTime: 0x17,
  GeneralizedTime: 0x18,
  UniversalString: 0x1c,
  BMPString: 0x1e,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** Context-specific tag number `n` (0..30), constructed (EXPLICIT, or IMPLICIT over a constructed type) or primitive. */
export function contextTag(n: number, constructed: boolean): number {
  return 0x80 | (constructed ? 0x20 : 0) | n;
}

/** The next identifier octet without consuming it; undefined at the end of the window. */
export function peekTag(r: BoundedReader): number | undefined {
  return r.peek(0);
}

/** Read one identifier octet. High tag numbers (low bits 11111) are refused. */
export function readTag(r: BoundedReader, what = 'tag'): number {
  const t = r.u8(what);
  if ((t & 0x1f) === 0x1f) throw new ParseError('unsupported', `${what}: high tag number form`);
  return t;
}

/**
 * Read a definite length in DER form (X.690 §10.1): short form below 128, otherwise the minimal
 * number of long-form octets. The content must fit in the reader's window.
 */
export function readLength(r: BoundedReader, what = 'length'): number {
  const first = r.u8(what);
  let len: number;
  if (first < 0x80) {
    len = first;
  } else if (first === 0x80) {
    throw new ParseError('malformed', `${what}: indefinite length is not DER`);
  } else {
    const n = first & 0x7f;
    if (n > 4) throw new ParseError('too_large', `${what}: ${n}-octet length`);
    const b0 = r.u8(what);
    if (b0 === 0) throw new ParseError('malformed', `${what}: non-minimal length (leading zero)`);
    len = b0;
    for (let i = 1; i < n; i++) len = len * 256 + r.u8(what);
    if (len < 0x80) throw new ParseError('malformed', `${what}: non-minimal length (long form for ${len})`);
  }
  if (len > r.remaining) throw new ParseError('truncated', `${what}: length ${len} past the end (${r.remaining} left)`);
  return len;
}

/** Read the header of an element that must have tag `tag`; returns its content length (reader at content start). */
export function expectTag(r: BoundedReader, tag: number, what: string): number {
  const t = readTag(r, what);
  if (t !== tag) throw new ParseError('malformed', `${what}: expected tag 0x${hex2(tag)}, got 0x${hex2(t)}`);
  return readLength(r, what);
}

/** Enter a constructed element with tag `tag`: a sub-reader over its content; `r` moves past it. */
export function enter(r: BoundedReader, tag: number, what: string): BoundedReader {
  const len = expectTag(r, tag, what);
  return r.sub(len, what);
}

/** Skip one whole element (any tag). */
export function skipElement(r: BoundedReader, what = 'element'): void {
  readTag(r, what);
  r.skip(readLength(r, what), what);
}

/** One whole element (tag, length and content) as a view, e.g. a raw Name or an extension value to keep. */
export function readRawElement(r: BoundedReader, what = 'element'): Buffer {
  const start = r.offset;
  readTag(r, what);
  r.skip(readLength(r, what), what);
  return r.buf.subarray(start, r.offset);
}

/**
 * An INTEGER's content octets (two's complement, big-endian) as a view. Empty content is malformed
 * (X.690 §8.3.1). Redundant leading octets are tolerated here: serial numbers in the wild carry
 * them, and callers that compare serials normalise anyway (certinfo.ts `normalizeSerial`).
 */
export function readIntegerBytes(r: BoundedReader, what = 'INTEGER'): Buffer {
  const len = expectTag(r, Tag.INTEGER, what);
  if (len === 0) throw new ParseError('malformed', `${what}: empty INTEGER`);
  return r.bytes(len, what);
}

/** A non-negative INTEGER as a bigint (cRLNumber may be up to 20 octets, RFC 5280 §5.2.3). */
export function readUnsignedBigInt(r: BoundedReader, what = 'INTEGER'): bigint {
  const b = readIntegerBytes(r, what);
  if (b[0]! & 0x80) throw new ParseError('malformed', `${what}: negative`);
  return b.length === 0 ? 0n : BigInt('0x' + b.toString('hex'));
}

/** A small non-negative INTEGER (version, saltLength) as a number; more than 6 octets is `too_large`. */
export function readSmallInt(r: BoundedReader, what = 'INTEGER'): number {
  const b = readIntegerBytes(r, what);
  if (b[0]! & 0x80) throw new ParseError('malformed', `${what}: negative`);
  if (b.length > 6) throw new ParseError('too_large', `${what}: ${b.length} octets`);
  return b.readUIntBE(0, b.length);
}

/** BOOLEAN (X.690 §11.1: DER allows only 0x00 and 0xFF). */
export function readBoolean(r: BoundedReader, what = 'BOOLEAN'): boolean {
  const len = expectTag(r, Tag.BOOLEAN, what);
  if (len !== 1) throw new ParseError('malformed', `${what}: length ${len}`);
  const v = r.u8(what);
  if (v === 0x00) return false;
  if (v === 0xff) return true;
  throw new ParseError('malformed', `${what}: value 0x${hex2(v)} is not DER`);
}

/** Content of a BOOLEAN already positioned after an IMPLICIT tag's length (for [n] IMPLICIT BOOLEAN). */
export function booleanContent(content: Buffer, what = 'BOOLEAN'): boolean {
  if (content.length !== 1 || (content[0] !== 0 && content[0] !== 0xff)) throw new ParseError('malformed', `${what}: not a DER BOOLEAN`);
  return content[0] === 0xff;
}

/** BIT STRING: the unused-bits count (0..7) and the content octets (a view). */
export interface BitString {
  unusedBits: number;
  bytes: Buffer;
}

export function readBitString(r: BoundedReader, what = 'BIT STRING'): BitString {
  const len = expectTag(r, Tag.BIT_STRING, what);
  return bitStringContent(r.bytes(len, what), what);
}

/** Decode BIT STRING content octets (also for [n] IMPLICIT BIT STRING). */
export function bitStringContent(content: Buffer, what = 'BIT STRING'): BitString {
  if (content.length === 0) throw new ParseError('malformed', `${what}: empty`);
  const unusedBits = content[0]!;
  if (unusedBits > 7 || (content.length === 1 && unusedBits !== 0)) throw new ParseError('malformed', `${what}: ${unusedBits} unused bits`);
  return { unusedBits, bytes: content.subarray(1) };
}

/** OCTET STRING content as a view. */
export function readOctetString(r: BoundedReader, what = 'OCTET STRING'): Buffer {
  return r.bytes(expectTag(r, Tag.OCTET_STRING, what), what);
}

/** NULL (length 0). */
export function readNull(r: BoundedReader, what = 'NULL'): void {
  const len = expectTag(r, Tag.NULL, what);
  if (len !== 0) throw new ParseError('malformed', `${what}: length ${len}`);
}

/** OBJECT IDENTIFIER content octets (a view): cheaper than a string when comparing against known OIDs. */
export function readOidBytes(r: BoundedReader, what = 'OID'): Buffer {
  const len = expectTag(r, Tag.OID, what);
  if (len === 0) throw new ParseError('malformed', `${what}: empty`);
  return r.bytes(len, what);
}

/** OBJECT IDENTIFIER as a dotted string, e.g. "2.5.29.20" (X.690 §8.19). */
export function readOid(r: BoundedReader, what = 'OID'): string {
  return oidToString(readOidBytes(r, what), what);
}

export function oidToString(b: Buffer, what = 'OID'): string {
  if (b.length === 0) throw new ParseError('malformed', `${what}: empty`);
  const arcs: string[] = [];
  let v = 0n;
  let first = true;
  let start = true;
  for (let i = 0; i < b.length; i++) {
    const byte = b[i]!;
    if (start && byte === 0x80) throw new ParseError('malformed', `${what}: non-minimal sub-identifier`);
    start = false;
    v = (v << 7n) | BigInt(byte & 0x7f);
    if (byte & 0x80) continue;
    if (first) {
      // The first sub-identifier packs two arcs: 40 * X + Y with X in 0..2.
      if (v < 40n) arcs.push('0', String(v));
      else if (v < 80n) arcs.push('1', String(v - 40n));
      else arcs.push('2', String(v - 80n));
      first = false;
    } else {
      arcs.push(String(v));
    }
    v = 0n;
    start = true;
  }
  if (!start) throw new ParseError('malformed', `${what}: truncated sub-identifier`);
  return arcs.join('.');
}

/** Encode a dotted OID string to content octets (for building constants to compare with `readOidBytes`). */
export function oidBytes(dotted: string): Buffer {
  const arcs = dotted.split('.').map((s) => BigInt(s));
  if (arcs.length < 2) throw new Error(`oidBytes: ${dotted}`);
  const subs = [arcs[0]! * 40n + arcs[1]!, ...arcs.slice(2)];
  const out: number[] = [];
  for (const s of subs) {
    const chunk: number[] = [];
    let v = s;
    do {
      chunk.unshift(Number(v & 0x7fn));
      v >>= 7n;
    } while (v > 0n);
    for (let i = 0; i < chunk.length - 1; i++) chunk[i]! |= 0x80;
    out.push(...chunk);
  }
  return Buffer.from(out);
}

/**
 * Time ::= UTCTime | GeneralizedTime as a Date (RFC 5280 §4.1.2.5): UTCTime is YYMMDDHHMMSSZ with
 * YY ≥ 50 meaning 19YY and YY < 50 meaning 20YY; GeneralizedTime is YYYYMMDDHHMMSSZ. Both must
 * include seconds, end in Z and carry no fraction.
 */
export function readTime(r: BoundedReader, what = 'Time'): Date {
  const tag = readTag(r, what);
  const len = readLength(r, what);
  if (tag === Tag.UTCTime) return timeContent(r.bytes(len, what), false, what);
  if (tag === Tag.GeneralizedTime) return timeContent(r.bytes(len, what), true, what);
  throw new ParseError('malformed', `${what}: expected UTCTime or GeneralizedTime, got tag 0x${hex2(tag)}`);
}

/** True when the next element is a Time (UTCTime or GeneralizedTime). */
export function isTimeTag(t: number | undefined): boolean {
  return t === Tag.UTCTime || t === Tag.GeneralizedTime;
}

const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** Decode the content octets of a UTCTime (`generalized` false) or GeneralizedTime. */
export function timeContent(s: Buffer, generalized: boolean, what = 'Time'): Date {
  const want = generalized ? 15 : 13;
  if (s.length !== want || s[want - 1] !== 0x5a /* Z */) {
    throw new ParseError('malformed', `${what}: "${s.toString('latin1')}" is not ${generalized ? 'YYYYMMDDHHMMSSZ' : 'YYMMDDHHMMSSZ'}`);
  }
  const d = (i: number): number => {
    const c = s[i]! - 0x30;
    if (c < 0 || c > 9) throw new ParseError('malformed', `${what}: non-digit in "${s.toString('latin1')}"`);
    return c;
  };
  const two = (i: number): number => d(i) * 10 + d(i + 1);
  let year: number;
  let p: number;
  if (generalized) {
    year = two(0) * 100 + two(2);
    p = 4;
  } else {
    const yy = two(0);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
    p = 2;
  }
  const month = two(p);
  const day = two(p + 2);
  const hour = two(p + 4);
  const minute = two(p + 6);
  const second = two(p + 8);
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  if (
    month < 1 ||
    month > 12 ||
    day < 1 ||
    day > DAYS_IN_MONTH[month - 1]! ||
    (month === 2 && day === 29 && !leap) ||
    hour > 23 ||
    minute > 59 ||
    second > 59
  ) {
    throw new ParseError('malformed', `${what}: out-of-range field in "${s.toString('latin1')}"`);
  }
  const t = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  if (year < 100) t.setUTCFullYear(year); // Date.UTC maps years 0..99 to 19xx
  return t;
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}
