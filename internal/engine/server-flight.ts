/**
 * Reads the server's handshake flight on its way to the proxy's OpenSSL client, one record at a
 * time, so the engine decides *before* OpenSSL acts on a message (DESIGN.md "Why the proxy
 * terminates TLS": the server's chain is checked against the CRLs before the proxy presents
 * anything):
 *
 * - TLS ≤ 1.2: Certificate (RFC 5246 §7.4.2), CertificateRequest (§7.4.4) and ServerHelloDone
 *   (§7.4.5) travel in clear.
 * - TLS 1.3: after the ServerHello everything is protected under the server handshake traffic
 *   keys (RFC 8446 §7.3), which OpenSSL derives when it reads the ServerHello and reports through
 *   the key log; the caller hands them over with `setKeys()` and the watcher decrypts a copy of
 *   each record to read EncryptedExtensions (ALPN), CertificateRequest, Certificate and Finished.
 *
 * The caller pulls records with `next()` so it can hand each one to OpenSSL (or not) before the
 * next is read. The watcher is `done` after the server's last handshake message it needs (TLS 1.3
 * Finished, TLS 1.2 ChangeCipherSpec); later bytes pass through untouched (`takeRest()`).
 */
import { RecordReader, ContentType, contentTypeName, type TlsRecord } from '../tls/record';
import { ParseError } from '../bytes/reader';
import { RecordProtection, type TrafficKeys } from '../tls/protection';
import {
  HandshakeReader,
  HandshakeType,
  parseServerHello,
  parseCertificate,
  parseEncryptedExtensions,
  handshakeTypeName,
  type ServerHello,
} from '../tls/handshake';

export type FlightEvent =
  | { kind: 'serverHello'; hello: ServerHello }
  /** TLS 1.3: the server's ALPN choice (RFC 8446 §4.3.1). */
  | { kind: 'encryptedExtensions'; alpn: string | null }
  /** `bytes`: the Certificate message's length (OpenSSL refuses lists over its max_cert_list). */
  | { kind: 'certificate'; chain: Buffer[]; bytes: number }
  | { kind: 'certificateRequest' }
  /** The end of the server's first flight: ServerHelloDone (TLS ≤ 1.2) or Finished (TLS 1.3). */
  | { kind: 'flightEnd' }
  | { kind: 'alert'; level: number; description: number };

/** One complete record and what it revealed, in message order. */
export interface WatchedRecord {
  raw: Buffer;
  type: number;
  events: FlightEvent[];
}

export class ServerFlightWatcher {
  private readonly records = new RecordReader();
  private readonly messages: HandshakeReader;
  private readonly queue: TlsRecord[] = [];
  private protection: RecordProtection | null = null;
  /** The negotiated version from the ServerHello (0 before it). */
  version = 0;
  /** True once the rest of the stream is no longer the handshake the watcher reads. */
  done = false;

  constructor(maxMessageBytes: number) {
    this.messages = new HandshakeReader({ maxMessageBytes });
  }

  /** Frames the next bytes from the server. Throws ParseError on a malformed record header. */
  push(chunk: Buffer): void {
    if (this.done) throw new Error('ServerFlightWatcher: push after done (use takeRest)');
    this.queue.push(...this.records.push(chunk));
  }

  /** TLS 1.3: the server handshake traffic keys, once OpenSSL has read the ServerHello. */
  setKeys(keys: TrafficKeys): void {
    this.protection = new RecordProtection(keys);
  }

  get needsKeys(): boolean {
    return this.version >= 0x0304 && !this.protection && this.queue.some((r) => r.type === ContentType.application_data);
  }

  /**
   * The next complete record with its events, or null when none is waiting (or keys are needed).
   * Throws ParseError on a malformed or misplaced message (code `unexpected` for RFC 8446 §5.1).
   */
  next(): WatchedRecord | null {
    if (this.done || !this.queue.length || this.needsKeysFor(this.queue[0]!)) return null;
    const record = this.queue.shift()!;
    return { raw: record.raw, type: record.type, events: this.read(record) };
  }

  /** Bytes past the point where the watcher stopped: queued records and a partial one. */
  takeRest(): Buffer | null {
    const parts = this.queue.splice(0).map((r) => r.raw);
    const pending = this.records.takePending();
    if (pending.length) parts.push(pending);
    return parts.length ? Buffer.concat(parts) : null;
  }

  /** Bytes framed but not yet returned by `next()` (held back from OpenSSL). */
  get queuedBytes(): number {
    let n = this.records.buffered;
    for (const r of this.queue) n += r.raw.length;
    return n;
  }

  private needsKeysFor(record: TlsRecord): boolean {
    return this.version >= 0x0304 && record.type === ContentType.application_data && !this.protection;
  }

  private read(record: TlsRecord): FlightEvent[] {
    if (record.type !== ContentType.handshake && this.messages.buffered > 0 && record.type !== ContentType.application_data) {
      throw new ParseError('unexpected', `server: a ${contentTypeName(record.type)} record inside a split handshake message (RFC 8446 §5.1)`);
    }
    switch (record.type) {
      case ContentType.change_cipher_spec:
        // In TLS 1.3 a CCS is middlebox-compatibility noise (RFC 8446 §D.4); in TLS 1.2 the end.
        if (this.version !== 0 && this.version <= 0x0303) this.done = true;
        return [];
      case ContentType.alert:
        if (record.fragment.length !== 2) throw new ParseError('malformed', `server alert record of ${record.fragment.length} bytes`);
        return [{ kind: 'alert', level: record.fragment[0]!, description: record.fragment[1]! }];
      case ContentType.handshake:
        if (this.version >= 0x0304) throw new ParseError('unexpected', 'server: a plaintext handshake record after the TLS 1.3 ServerHello');
        return this.handshake(record.fragment);
      default:
        return this.protected(record);
    }
  }

  private protected(record: TlsRecord): FlightEvent[] {
    if (this.version < 0x0304 || !this.protection) {
      throw new ParseError('unexpected', 'server: application data before the handshake finished');
    }
    const inner = this.protection.open(record.raw);
    // RFC 8446 §5.1 holds for the inner content type too: a protected alert (or anything but
    // handshake) between two parts of a split handshake message is misplaced.
    if (inner.type !== ContentType.handshake && this.messages.buffered > 0) {
      throw new ParseError('unexpected', `server: a protected ${contentTypeName(inner.type)} record inside a split handshake message (RFC 8446 §5.1)`);
    }
    if (inner.type === ContentType.alert) {
      if (inner.content.length !== 2) throw new ParseError('malformed', `server alert of ${inner.content.length} bytes`);
      return [{ kind: 'alert', level: inner.content[0]!, description: inner.content[1]! }];
    }
    if (inner.type !== ContentType.handshake) {
      throw new ParseError('unexpected', `server: protected ${contentTypeName(inner.type)} before its Finished`);
    }
    return this.handshake(inner.content);
  }

  private handshake(fragment: Buffer): FlightEvent[] {
    const events: FlightEvent[] = [];
    for (const msg of this.messages.push(fragment)) {
      if (this.done) throw new ParseError('unexpected', `server: ${handshakeTypeName(msg.type)} after its Finished`);
      switch (msg.type) {
        case HandshakeType.server_hello: {
          const hello = parseServerHello(msg.body);
          events.push({ kind: 'serverHello', hello });
          if (!hello.isHelloRetryRequest) this.version = hello.selectedVersion;
          if (this.version >= 0x0304 && this.messages.buffered > 0) {
            // RFC 8446 §5.1: the key change after the ServerHello must fall on a record boundary.
            throw new ParseError('unexpected', 'server: a handshake message spans the TLS 1.3 key change');
          }
          break;
        }
        case HandshakeType.encrypted_extensions:
          events.push({ kind: 'encryptedExtensions', alpn: parseEncryptedExtensions(msg.body).alpn });
          break;
        case HandshakeType.certificate:
          events.push({ kind: 'certificate', chain: parseCertificate(msg.body, this.version).certificates, bytes: msg.body.length });
          break;
        case HandshakeType.certificate_request:
          events.push({ kind: 'certificateRequest' });
          break;
        case HandshakeType.server_hello_done:
          events.push({ kind: 'flightEnd' });
          break;
        case HandshakeType.finished:
          if (this.version >= 0x0304) {
            events.push({ kind: 'flightEnd' });
            this.done = true;
          }
          break;
        default:
          // ServerKeyExchange, CertificateVerify, CertificateStatus: OpenSSL checks them.
          break;
      }
    }
    return events;
  }
}
