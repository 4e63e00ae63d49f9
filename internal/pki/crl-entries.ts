/**
 * The revokedCertificates entries of a CRL (RFC 5280 §5.1.2.6, §5.3): validated once, indexed
 * for O(1) lookup, decoded lazily on a hit.
 *
 * `indexEntries` walks the entries over the raw DER window (no reader object, no JS object per
 * entry) and fills an open-addressing hash table over a Uint32Array whose slots hold the offset
 * of each entry in the CRL's own DER buffer. A lookup hashes the normalised serial, probes,
 * compares bytes in place and decodes the entry only on a hit. Memory is the DER (≈ 49 bytes per
 * typical entry) plus ≤ 8 bytes of table per entry (load factor ≤ 1/2), and the whole state is
 * two ArrayBuffers that a worker can transfer (crl-worker.ts).
 *
 * Every entry extension RFC 5280 §5.3 defines is decoded and validated at index time, critical
 * or not — reasonCode (§5.3.1), invalidityDate (§5.3.2), certificateIssuer (§5.3.3) and
 * holdInstructionCode (2.5.29.23: RFC 3280 §5.3.2, still in RFC 5280's ASN.1 module) — so one
 * that does not decode makes the whole CRL `malformed`, never an entry that silently matches
 * nobody (a certificateIssuer that named nobody would turn the serials it governs `good`).
 */
import { BoundedReader, ParseError } from '../bytes/reader';
import { Tag, enter, expectTag, oidToString, readIntegerBytes, readTime, timeContent } from './der';
import { normalizeSerial, walkExtensions } from './certinfo';
import { CrlError } from './errors';
import { parseGeneralNames } from './names';
import { CRL_REASONS, type CrlReason } from './types';

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

/** An entry with the certificate issuer it applies to (null: the CRL issuer). */
export type RevokedEntryWithIssuer = RevokedEntry & { entryIssuer: Buffer | null };

// Entry extensions: id-ce (2.5.29) x, content octets 55 1D x; compared by x.
const ENTRY_REASON_CODE = 21;
const ENTRY_HOLD_INSTRUCTION = 23;
const ENTRY_INVALIDITY_DATE = 24;
const ENTRY_CERTIFICATE_ISSUER = 29;

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

/**
 * Whether the (validated) entry at `off` has serial `s` (normalised); `negative`, when given, must
 * equal the sign of its INTEGER (top bit of the first content octet), so -1 (FF) and 255 (00 FF)
 * stay apart.
 */
function serialMatches(der: Buffer, off: number, s: Buffer, negative: boolean | undefined): boolean {
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
  if (negative !== undefined && (p < end && (der[p]! & 0x80) !== 0) !== negative) return false;
  while (p < end && der[p] === 0) p++;
  return end - p === s.length && der.compare(s, 0, s.length, p, end) === 0;
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

/**
 * The entry loop's DER header reader: the same rules as der.ts `readLength` (definite, minimal,
 * within `limit`), written over the raw window so a million entries cost no calls through the
 * reader object. `hdr` returns the content length; the content starts at `next`.
 */
class Headers {
  /** Content start of the element the last `hdr` call read. */
  next = 0;

  constructor(private readonly der: Buffer) {}

  hdr(p: number, limit: number, tag: number, what: string): number {
    const der = this.der;
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
    this.next = p;
    return l;
  }
}

export interface IndexEntriesOptions {
  /** CRL version: a v1 entry may not carry extensions (RFC 5280 §5.1.2.6). */
  version: 1 | 2;
  /** The table's hash seed. */
  seed: number;
  /** Record unrecognised critical entry extensions in `unsupportedCritical` instead of throwing. */
  collectUnsupportedCritical?: boolean;
}

export interface IndexedEntries {
  table: Uint32Array;
  /** Number of entries (duplicates included). */
  count: number;
  /** Some entry carries certificateIssuer (§5.3.3). */
  hasCertificateIssuerEntries: boolean;
  /** Dotted OIDs of unrecognised critical entry extensions (only with `collectUnsupportedCritical`). */
  unsupportedCritical: string[];
}

/**
 * Validate and index the revokedCertificates content [listStart, listEnd) of `der`.
 * @throws ParseError (structure; an entry extension that does not decode), CrlError
 *   `unsupported_critical_extension`
 */
export function indexEntries(der: Buffer, listStart: number, listEnd: number, opts: IndexEntriesOptions): IndexedEntries {
  const h = new Headers(der);
  // Pass 1: count entries (headers only) to size the table once.
  let count = 0;
  for (let p = listStart; p < listEnd; count++) {
    const l = h.hdr(p, listEnd, Tag.SEQUENCE, 'revokedCertificate');
    p = h.next + l;
  }
  let cap = 16;
  while (cap < count * 2) cap *= 2;
  const table = new Uint32Array(cap);
  const mask = cap - 1;
  const seed = opts.seed;
  const out: IndexedEntries = { table, count, hasCertificateIssuerEntries: false, unsupportedCritical: [] };

  // Pass 2: validate each entry and insert it. A duplicate serial is inserted too: probing
  // finds the first one, so no comparison is needed here.
  let n = 0;
  for (let p = listStart; p < listEnd; n++) {
    const entryStart = p;
    const elen = h.hdr(p, listEnd, Tag.SEQUENCE, 'revokedCertificate');
    const end = h.next + elen;
    const slen = h.hdr(h.next, end, Tag.INTEGER, 'userCertificate');
    if (slen === 0) throw new ParseError('malformed', 'userCertificate: empty INTEGER');
    let sStart = h.next;
    const sEnd = sStart + slen;
    while (sStart < sEnd && der[sStart] === 0) sStart++;
    let q = sEnd;
    const tt = q < end ? der[q]! : -1;
    if (tt !== Tag.UTCTime && tt !== Tag.GeneralizedTime) throw new ParseError('malformed', `revocationDate of entry at offset ${entryStart}: not a Time`);
    const tl = h.hdr(q, end, tt, 'revocationDate');
    if (!checkTimeInPlace(der, h.next, tl, tt === Tag.GeneralizedTime)) throw new ParseError('malformed', `revocationDate of entry at offset ${entryStart} is not a valid Time`);
    q = h.next + tl;
    if (q < end) {
      if (opts.version === 1) throw new ParseError('malformed', 'v1 CRL entry carries crlEntryExtensions (they require v2)');
      q = checkEntryExtensions(der, h, q, end, out, opts, n, sStart, sEnd);
    }
    if (q !== end) throw new ParseError('malformed', `revokedCertificate at offset ${entryStart}: trailing bytes`);

    let i = hashBytes(der, sStart, sEnd, seed) & mask;
    while (table[i] !== 0) i = (i + 1) & mask;
    table[i] = entryStart + 1;
    p = end;
  }
  return out;
}

/**
 * Validate crlEntryExtensions at `p` within [p, end) (RFC 5280 §5.3); returns the position after
 * them. `n` (0-based) and the serial's content span [sStart, sEnd) name the entry in messages.
 */
function checkEntryExtensions(der: Buffer, h: Headers, p: number, end: number, out: IndexedEntries, opts: IndexEntriesOptions, n: number, sStart: number, sEnd: number): number {
  const extsLen = h.hdr(p, end, Tag.SEQUENCE, 'crlEntryExtensions');
  if (extsLen === 0) throw new ParseError('malformed', `${entryName(der, n, sStart, sEnd)}: crlEntryExtensions is empty`);
  let q = h.next;
  const extsEnd = q + extsLen;
  let seen = 0;
  while (q < extsEnd) {
    const extLen = h.hdr(q, extsEnd, Tag.SEQUENCE, 'Extension');
    const extEnd = h.next + extLen;
    const oidLen = h.hdr(h.next, extEnd, Tag.OID, 'extnID');
    const oidAt = h.next;
    q = oidAt + oidLen;
    let critical = false;
    if (q < extEnd && der[q] === Tag.BOOLEAN) {
      const bl = h.hdr(q, extEnd, Tag.BOOLEAN, 'critical');
      const v = der[h.next];
      if (bl !== 1 || (v !== 0 && v !== 0xff)) throw new ParseError('malformed', 'critical: not a DER BOOLEAN');
      critical = v === 0xff;
      q = h.next + 1;
    }
    const vLen = h.hdr(q, extEnd, Tag.OCTET_STRING, 'extnValue');
    const vAt = h.next;
    q = vAt + vLen;
    if (q !== extEnd) throw new ParseError('malformed', 'entry Extension: length mismatch');
    const known = oidLen === 3 && der[oidAt] === 0x55 && der[oidAt + 1] === 0x1d ? der[oidAt + 2]! : -1;
    switch (known) {
      case ENTRY_REASON_CODE: {
        // CRLReason ::= ENUMERATED: 0A 01 nn with nn in 0..10, 7 unassigned.
        const v = der[vAt + 2]!;
        if (vLen !== 3 || der[vAt] !== Tag.ENUMERATED || der[vAt + 1] !== 1 || v > 10 || v === 7) {
          throw new ParseError('malformed', `${entryName(der, n, sStart, sEnd)}: reasonCode is not a valid CRLReason (RFC 5280 §5.3.1)`);
        }
        break;
      }
      case ENTRY_INVALIDITY_DATE:
        if (vLen !== 17 || der[vAt] !== Tag.GeneralizedTime || der[vAt + 1] !== 15 || !checkTimeInPlace(der, vAt + 2, 15, true)) {
          throw new ParseError('malformed', `${entryName(der, n, sStart, sEnd)}: invalidityDate is not a GeneralizedTime YYYYMMDDHHMMSSZ (RFC 5280 §5.3.2)`);
        }
        break;
      case ENTRY_CERTIFICATE_ISSUER:
        try {
          parseGeneralNames(der.subarray(vAt, q), { strict: true });
        } catch (e) {
          if (!(e instanceof ParseError)) throw e;
          throw new ParseError('malformed', `${entryName(der, n, sStart, sEnd)}: certificateIssuer is not GeneralNames (RFC 5280 §5.3.3): ${e.message}`);
        }
        out.hasCertificateIssuerEntries = true;
        break;
      case ENTRY_HOLD_INSTRUCTION:
        // HoldInstructionCode ::= OBJECT IDENTIFIER
        try {
          const r = new BoundedReader(der, vAt, q);
          const len = expectTag(r, Tag.OID, 'holdInstructionCode');
          oidToString(r.bytes(len, 'holdInstructionCode'), 'holdInstructionCode');
          r.expectEnd('holdInstructionCode');
        } catch (e) {
          if (!(e instanceof ParseError)) throw e;
          throw new ParseError('malformed', `${entryName(der, n, sStart, sEnd)}: holdInstructionCode is not an OBJECT IDENTIFIER: ${e.message}`);
        }
        break;
      default:
        if (critical) {
          const name = oidToString(der.subarray(oidAt, oidAt + oidLen));
          if (!opts.collectUnsupportedCritical) throw new CrlError('unsupported_critical_extension', `CRL entry extension ${name} is critical and not supported (RFC 5280 §5.3)`);
          if (!out.unsupportedCritical.includes(name)) out.unsupportedCritical.push(name);
        }
        continue;
    }
    const bit = 1 << (known & 31);
    if (seen & bit) throw new ParseError('malformed', `${entryName(der, n, sStart, sEnd)}: entry extension 2.5.29.${known} appears twice`);
    seen |= bit;
  }
  return q;
}

/** "revokedCertificates entry 3 (serial 0a1b…)": which entry a refusal is about. */
function entryName(der: Buffer, n: number, sStart: number, sEnd: number): string {
  return `revokedCertificates entry ${n + 1} (serial ${der.toString('hex', sStart, sEnd) || '00'})`;
}

/** Decode the entry at `off` (validated by `indexEntries`, so this cannot fail on an indexed CRL). */
export function decodeEntry(der: Buffer, off: number): RevokedEntry {
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

/**
 * Lookups over an indexed entry list: the CRL's DER, its table, the table's seed, and the
 * revokedCertificates content span (null when absent).
 */
export class EntryIndex {
  private runs: { at: number[]; issuer: Buffer[] } | null = null;

  constructor(
    private readonly der: Buffer,
    private readonly table: Uint32Array,
    private readonly seed: number,
    private readonly entries: [number, number] | null,
    private readonly hasCertificateIssuerEntries: boolean,
  ) {}

  /** Bytes held by the table. */
  get byteLength(): number {
    return this.table.byteLength;
  }

  /**
   * The entry for `serial` (any padding; compared as unsigned big-endian without leading zeros),
   * or null. `negative` (when given): whether the serial is a negative INTEGER (certinfo
   * `serialNegative`); omitted, the sign is not compared. O(1): one hash, a short probe, and a
   * lazy decode of the hit.
   */
  lookup(serial: Buffer, negative?: boolean): RevokedEntry | null {
    const s = normalizeSerial(serial);
    const t = this.table;
    const mask = t.length - 1;
    const der = this.der;
    let i = hashBytes(s, 0, s.length, this.seed) & mask;
    for (;;) {
      const v = t[i]!;
      if (v === 0) return null;
      if (serialMatches(der, v - 1, s, negative)) return decodeEntry(der, v - 1);
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
  lookupAll(serial: Buffer, negative?: boolean): RevokedEntryWithIssuer[] {
    const s = normalizeSerial(serial);
    const t = this.table;
    const mask = t.length - 1;
    const der = this.der;
    const out: RevokedEntryWithIssuer[] = [];
    let i = hashBytes(s, 0, s.length, this.seed) & mask;
    for (;;) {
      const v = t[i]!;
      if (v === 0) break;
      const off = v - 1;
      if (serialMatches(der, off, s, negative)) out.push({ ...decodeEntry(der, off), entryIssuer: this.issuerAt(off) });
      i = (i + 1) & mask;
    }
    return out;
  }

  /** The certificateIssuer governing the entry at `off` (null: the CRL issuer). */
  private issuerAt(off: number): Buffer | null {
    if (!this.hasCertificateIssuerEntries || !this.entries) return null;
    if (!this.runs) {
      const runs = { at: [] as number[], issuer: [] as Buffer[] };
      const [start, end] = this.entries;
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
}
