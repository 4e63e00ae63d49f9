/**
 * TLS 1.3 record protection (RFC 8446 §5.2, §5.3, §7.1, §7.3) for the few records ca-proxy must
 * read or write itself while OpenSSL runs the handshake:
 *
 * - read the server's encrypted handshake flight (EncryptedExtensions, CertificateRequest,
 *   Certificate, CertificateVerify, Finished) so the chain is checked and a CertificateRequest
 *   is known exactly, before OpenSSL acts on them;
 * - send an alert that a peer past its ServerHello can read: every alert after the ServerHello is
 *   a protected record (RFC 8446 §6), and a plaintext one makes the peer answer `bad_record_mac`.
 *
 * The traffic secrets come from OpenSSL through Node's `keylog` event (NSS key log format,
 * `parseKeylogLine`). Only the three AEADs of TLS 1.3 that OpenSSL negotiates by default are
 * supported (TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256);
 * `trafficKeys` returns null for any other suite and the caller falls back to a plain close.
 */
import crypto from 'node:crypto';
import { ParseError } from '../bytes/reader';
import { ContentType, RECORD_HEADER_BYTES } from './record';

/** The AEAD and hash of a TLS 1.3 cipher suite (RFC 8446 §B.4), by IANA name or code point. */
interface SuiteParams {
  cipher: 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305';
  keyLength: number;
  hash: 'sha256' | 'sha384';
}

const SUITES: Record<string, SuiteParams> = {
  TLS_AES_128_GCM_SHA256: { cipher: 'aes-128-gcm', keyLength: 16, hash: 'sha256' },
  TLS_AES_256_GCM_SHA384: { cipher: 'aes-256-gcm', keyLength: 32, hash: 'sha384' },
  TLS_CHACHA20_POLY1305_SHA256: { cipher: 'chacha20-poly1305', keyLength: 32, hash: 'sha256' },
};
const BY_CODE: Record<number, string> = { 0x1301: 'TLS_AES_128_GCM_SHA256', 0x1302: 'TLS_AES_256_GCM_SHA384', 0x1303: 'TLS_CHACHA20_POLY1305_SHA256' };

const TAG_BYTES = 16;
const IV_BYTES = 12;
/** RFC 8446 §5.2: a TLSCiphertext fragment is at most 2^14 + 256 bytes. */
const MAX_CIPHERTEXT = 16384 + 256;

/** HKDF-Expand (RFC 5869 §2.3). */
function hkdfExpand(hash: string, prk: Buffer, info: Buffer, length: number): Buffer {
  const out: Buffer[] = [];
  let prev = Buffer.alloc(0);
  for (let i = 1, got = 0; got < length; i++) {
    prev = crypto.createHmac(hash, prk).update(prev).update(info).update(Buffer.from([i])).digest();
    out.push(prev);
    got += prev.length;
  }
  return Buffer.concat(out).subarray(0, length);
}

/** HKDF-Expand-Label (RFC 8446 §7.1) with an empty context. */
export function hkdfExpandLabel(hash: string, secret: Buffer, label: string, length: number): Buffer {
  const full = Buffer.from(`tls13 ${label}`, 'latin1');
  const info = Buffer.concat([Buffer.from([length >> 8, length & 0xff, full.length]), full, Buffer.from([0])]);
  return hkdfExpand(hash, secret, info, length);
}

/** A traffic secret's write key and IV (RFC 8446 §7.3), or null for a suite not supported here. */
export interface TrafficKeys {
  suite: string;
  cipher: SuiteParams['cipher'];
  key: Buffer;
  iv: Buffer;
}

/**
 * @param secret a traffic secret (e.g. `CLIENT_HANDSHAKE_TRAFFIC_SECRET` from the key log)
 * @param suite IANA name (`TLS_AES_128_GCM_SHA256`, as Node's `getCipher().standardName`) or code point
 */
export function trafficKeys(secret: Buffer, suite: string | number): TrafficKeys | null {
  const name = typeof suite === 'number' ? BY_CODE[suite] : suite;
  const p = name ? SUITES[name] : undefined;
  if (!p || !name) return null;
  return { suite: name, cipher: p.cipher, key: hkdfExpandLabel(p.hash, secret, 'key', p.keyLength), iv: hkdfExpandLabel(p.hash, secret, 'iv', IV_BYTES) };
}

/**
 * One direction's record protection: `seal` for records we write, `open` for records we read.
 * The 64-bit sequence number starts at 0 and advances with every record (RFC 8446 §5.3).
 */
export class RecordProtection {
  private seq = 0n;

  constructor(private readonly keys: TrafficKeys) {}

  private nonce(): Buffer {
    const n = Buffer.from(this.keys.iv);
    const s = this.seq;
    for (let i = 0; i < 8; i++) n[IV_BYTES - 1 - i]! ^= Number((s >> BigInt(8 * i)) & 0xffn);
    this.seq++;
    return n;
  }

  /** A protected record carrying `content` of inner `type` (TLSInnerPlaintext, no padding). */
  seal(type: number, content: Buffer): Buffer {
    const length = content.length + 1 + TAG_BYTES;
    const header = Buffer.from([ContentType.application_data, 0x03, 0x03, length >> 8, length & 0xff]);
    const c = crypto.createCipheriv(this.keys.cipher as crypto.CipherGCMTypes, this.keys.key, this.nonce(), { authTagLength: TAG_BYTES });
    c.setAAD(header);
    const body = Buffer.concat([c.update(Buffer.concat([content, Buffer.from([type])])), c.final(), c.getAuthTag()]);
    return Buffer.concat([header, body]);
  }

  /** An alert record, protected (RFC 8446 §6: level is ignored by TLS 1.3 peers, sent as fatal). */
  alert(description: number, level = 2): Buffer {
    return this.seal(ContentType.alert, Buffer.from([level, description]));
  }

  /**
   * Decrypts one protected record (header + fragment, as framed by RecordReader).
   * @returns the inner content type and content, padding removed
   * @throws ParseError 'malformed' when the record does not authenticate or has no content type
   */
  open(raw: Buffer): { type: number; content: Buffer } {
    const fragment = raw.subarray(RECORD_HEADER_BYTES);
    if (raw[0] !== ContentType.application_data || fragment.length < TAG_BYTES + 1 || fragment.length > MAX_CIPHERTEXT) {
      throw new ParseError('malformed', `protected record: type ${raw[0]}, ${fragment.length} bytes`);
    }
    const d = crypto.createDecipheriv(this.keys.cipher as crypto.CipherGCMTypes, this.keys.key, this.nonce(), { authTagLength: TAG_BYTES });
    d.setAAD(raw.subarray(0, RECORD_HEADER_BYTES));
    d.setAuthTag(fragment.subarray(fragment.length - TAG_BYTES));
    let inner: Buffer;
    try {
      inner = Buffer.concat([d.update(fragment.subarray(0, fragment.length - TAG_BYTES)), d.final()]);
    } catch {
      throw new ParseError('malformed', 'protected record does not authenticate (bad_record_mac)');
    }
    let end = inner.length;
    while (end > 0 && inner[end - 1] === 0) end--;
    if (end === 0) throw new ParseError('malformed', 'protected record: no content type (all padding)');
    return { type: inner[end - 1]!, content: inner.subarray(0, end - 1) };
  }
}

/** One line of the NSS key log format that OpenSSL writes (`LABEL <client_random hex> <secret hex>`). */
export interface KeylogEntry {
  label: string;
  clientRandom: string;
  secret: Buffer;
}

/** Parses a key log line (Node's `keylog` event), or null for anything else. */
export function parseKeylogLine(line: Buffer | string): KeylogEntry | null {
  const m = /^([A-Z0-9_]+) ([0-9a-fA-F]+) ([0-9a-fA-F]+)\s*$/.exec(line.toString('latin1'));
  return m ? { label: m[1]!, clientRandom: m[2]!.toLowerCase(), secret: Buffer.from(m[3]!, 'hex') } : null;
}
