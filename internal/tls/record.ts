/**
 * TLS record layer framing (RFC 8446 §5.1, RFC 5246 §6.2): splitting a byte stream into
 * records. Nothing here decrypts; a record's fragment is opaque bytes (plaintext before
 * ChangeCipherSpec, ciphertext after).
 *
 *   struct { ContentType type; ProtocolVersion legacy_record_version; uint16 length;
 *            opaque fragment[length]; } TLSPlaintext;
 */
import { ParseError } from '../bytes/reader';
import { Framer } from './framer';

/** ContentType values (RFC 8446 §5.1; RFC 5246 §6.2.1). */
export const ContentType = {
  change_cipher_spec: 20,
  alert: 21,
  handshake: 22,
  application_data: 23,
} as const;
export type ContentTypeValue = (typeof ContentType)[keyof typeof ContentType];

/** `change_cipher_spec`, `alert`, `handshake`, `application_data`, or `type N`. */
export function contentTypeName(type: number): string {
  const name = Object.entries(ContentType).find(([, v]) => v === type)?.[0];
  return name ?? `type ${type}`;
}

/** Bytes in a record header: type(1) + version(2) + length(2). */
export const RECORD_HEADER_BYTES = 5;

/**
 * The largest fragment length accepted, in bytes: 2^14 + 2048. RFC 5246 §6.2.3 allows a
 * TLSCiphertext of up to 2^14 + 2048 bytes; RFC 8446 §5.2 tightens it to 2^14 + 256 for TLS 1.3.
 * The record reader runs before the version is known, so it takes the looser bound.
 */
export const MAX_RECORD_FRAGMENT_BYTES = 16384 + 2048;

/** One TLS record as received. All buffers are views (no copy) when the record arrived in one chunk. */
export interface TlsRecord {
  /** ContentType (20..23). */
  type: ContentTypeValue;
  /** legacy_record_version, e.g. 0x0301 or 0x0303. */
  version: number;
  /** The record's payload (length bytes). */
  fragment: Buffer;
  /** Header + fragment, byte for byte as received (for relaying unchanged). */
  raw: Buffer;
}

function isContentType(t: number): t is ContentTypeValue {
  return t >= 20 && t <= 23;
}

/**
 * Check a 5-byte record header at `buf[off..off+5)` and return the fragment length.
 * @throws ParseError 'malformed' (unknown content type, version major byte ≠ 3),
 *         'too_large' (length > MAX_RECORD_FRAGMENT_BYTES)
 */
function checkHeader(buf: Buffer, off: number): number {
  const type = buf[off]!;
  if (!isContentType(type)) throw new ParseError('malformed', `TLS record: unknown content type ${type}`);
  const major = buf[off + 1]!;
  if (major !== 3) {
    throw new ParseError('malformed', `TLS record: version major byte ${major}, expected 3`);
  }
  const len = (buf[off + 3]! << 8) | buf[off + 4]!;
  if (len > MAX_RECORD_FRAGMENT_BYTES) {
    throw new ParseError('too_large', `TLS record: length ${len} exceeds ${MAX_RECORD_FRAGMENT_BYTES}`);
  }
  return len;
}

function toRecord(raw: Buffer): TlsRecord {
  return {
    type: raw[0] as ContentTypeValue,
    version: (raw[1]! << 8) | raw[2]!,
    fragment: raw.subarray(RECORD_HEADER_BYTES),
    raw,
  };
}

/**
 * Incremental record framer for one direction of a TLS connection.
 *
 * `push()` accepts chunks split at any byte and returns the records completed by that chunk.
 * Records wholly inside a chunk are returned as views into it (no copy); only a record that
 * straddles chunks is copied, once, when its last byte arrives. A header is checked as soon
 * as its 5 bytes are in, so a bad stream is rejected without waiting for a body.
 *
 * After a ParseError the reader is failed: every later `push()` throws the same error (the
 * stream position is lost, so nothing after it can be framed). Records completed earlier in
 * the failing chunk are not returned.
 */
export class RecordReader {
  private readonly framer = new Framer(RECORD_HEADER_BYTES, checkHeader);

  /** Bytes held for a record that is not yet complete. */
  get buffered(): number {
    return this.framer.buffered;
  }

  /**
   * Hands back the bytes of the incomplete record and forgets them: for a caller that stops
   * framing mid-stream (the rest is relayed as opaque bytes) and must not lose any.
   */
  takePending(): Buffer {
    return this.framer.takePending();
  }

  /**
   * Feed the next bytes of the stream.
   * @returns the records completed by this chunk, in stream order (possibly none)
   * @throws ParseError 'malformed' | 'too_large' on a bad record header
   */
  push(chunk: Buffer): TlsRecord[] {
    return this.framer.push(chunk).map(toRecord);
  }
}

/**
 * Decide from the first bytes of a connection whether it starts with a TLS handshake record
 * (as a standalone listener must, before choosing how to handle it).
 *
 * 'tls': a handshake record header (type 22, version major 3) with a plausible length
 * (1..MAX_RECORD_FRAGMENT_BYTES). 'not_tls': anything else, including an SSLv2-format
 * ClientHello (first byte has its high bit set; RFC 5246 Appendix E.2) and plain HTTP.
 * 'need_more': the bytes so far are consistent with TLS but fewer than 5. The answer never
 * changes from 'tls'/'not_tls' as more bytes arrive.
 */
export function looksLikeTls(firstBytes: Buffer): 'tls' | 'not_tls' | 'need_more' {
  const n = firstBytes.length;
  if (n === 0) return 'need_more';
  if (firstBytes[0] !== ContentType.handshake) return 'not_tls';
  if (n < 2) return 'need_more';
  if (firstBytes[1] !== 3) return 'not_tls';
  if (n < RECORD_HEADER_BYTES) return 'need_more';
  const len = (firstBytes[3]! << 8) | firstBytes[4]!;
  return len >= 1 && len <= MAX_RECORD_FRAGMENT_BYTES ? 'tls' : 'not_tls';
}
