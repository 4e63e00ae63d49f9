/**
 * Follows one direction of a relayed TLS connection's handshake for inspect mode (DESIGN.md
 * "inspect"), without holding its bytes.
 */
import { RecordReader, ContentType, contentTypeName, type TlsRecord } from '../tls/record';
import { ParseError } from '../bytes/reader';
import { HandshakeReader, HandshakeType, parseClientHello, parseServerHello, parseCertificate, type ServerHello } from '../tls/handshake';


/** What a HandshakeObserver saw, in stream order. `end` is the stream offset just past the record that carried it. */
export type ObservedEvent = { end: number } & (
  /** A complete record (every record, before the events it carries): the chunking-independent point to check limits at. */
  | { kind: 'record'; type: number }
  /** Every handshake message, before any event it causes: HandshakeType and body length. */
  | { kind: 'message'; type: number; length: number }
  | { kind: 'clientHello' }
  | { kind: 'serverHello'; hello: ServerHello }
  | { kind: 'certificate'; chain: Buffer[] }
  | { kind: 'certificateRequest' }
  | { kind: 'serverHelloDone' }
  | { kind: 'alert'; level: number; description: number }
  /** ChangeCipherSpec (TLS ≤ 1.2): everything after it in this direction is encrypted. */
  | { kind: 'changeCipherSpec' }
  /** An application_data record: encrypted from here on, unreadable. */
  | { kind: 'encrypted' }
);

/**
 * Follows one direction of a relayed TLS connection (inspect mode) without holding its bytes:
 * the caller forwards or holds them; the observer only frames records (RFC 5246 §6.2.1) and
 * handshake messages (§7.4, messages split across records, several per record) and reports
 * what matters to the decision. It stops (`done`) at the first ChangeCipherSpec or encrypted
 * record of its direction, or when `stop()` is called (TLS 1.3 chosen); later input is ignored,
 * so it never buffers past that point.
 *
 * Bounded: at most one partial record (≤ 2^14 + 2048 + 5 bytes) and one partial handshake
 * message (≤ `maxMessageBytes`, rejected on its header) are held. Malformed input throws
 * ParseError ('malformed' | 'truncated' | 'too_large'); the observer is then failed.
 */
export class HandshakeObserver {
  private readonly records = new RecordReader();
  private readonly messages: HandshakeReader;
  /** Negotiated version, from the ServerHello (the caller tells the client side with `setVersion`). */
  private version = 0;
  /** Stream bytes fed so far. */
  private offset = 0;
  done = false;

  /** @param side whose bytes these are; @param maxMessageBytes largest handshake message accepted */
  constructor(
    readonly side: 'client' | 'server',
    maxMessageBytes: number,
  ) {
    this.messages = new HandshakeReader({ maxMessageBytes });
  }

  /** Bytes held for an incomplete record or handshake message. */
  get buffered(): number {
    return this.done ? 0 : this.records.buffered + this.messages.buffered;
  }

  /** The negotiated ProtocolVersion (Certificate layout depends on it: RFC 8446 §4.4.2 vs RFC 5246 §7.4.2). */
  setVersion(v: number): void {
    this.version = v;
  }

  /** Stop following this direction (its remaining bytes are relayed unread). */
  stop(): void {
    this.done = true;
  }

  /** Feeds the next bytes of this direction; returns what they completed. Throws ParseError. */
  push(chunk: Buffer): ObservedEvent[] {
    if (this.done) return [];
    const events: ObservedEvent[] = [];
    const start = this.offset;
    const before = this.records.buffered;
    this.offset += chunk.length;
    // Where each completed record ends in the stream: the first one completes the bytes that
    // were pending before this chunk, the others lie wholly in the chunk.
    let end = start - before;
    for (const record of this.records.push(chunk)) {
      end += record.raw.length;
      this.record(record, end, events);
      if (this.done) break;
    }
    return events;
  }

  private record(record: TlsRecord, end: number, events: ObservedEvent[]): void {
    events.push({ kind: 'record', type: record.type, end });
    // RFC 8446 §5.1 (and RFC 5246 §6.2.1 in practice): no other record inside a split handshake message.
    if (record.type !== ContentType.handshake && this.messages.buffered > 0) {
      throw new ParseError('unexpected', `${this.side}: a ${contentTypeName(record.type)} record inside a handshake message split across records (RFC 8446 §5.1)`);
    }
    switch (record.type) {
      case ContentType.change_cipher_spec:
        // In TLS 1.3 a CCS is middlebox-compatibility noise (RFC 8446 §D.4); inspect stops at the ServerHello anyway.
        events.push({ kind: 'changeCipherSpec', end });
        this.done = true;
        return;
      case ContentType.alert:
        // RFC 5246 §7.2: a plaintext alert is exactly level + description.
        if (record.fragment.length !== 2) throw new ParseError('malformed', `${this.side} alert record of ${record.fragment.length} bytes`);
        events.push({ kind: 'alert', level: record.fragment[0]!, description: record.fragment[1]!, end });
        return;
      case ContentType.handshake:
        for (const msg of this.messages.push(record.fragment)) {
          this.message(msg.type, msg.body, end, events);
          if (this.done) return;
        }
        return;
      default:
        events.push({ kind: 'encrypted', end });
        this.done = true;
    }
  }

  private message(type: number, body: Buffer, end: number, events: ObservedEvent[]): void {
    events.push({ kind: 'message', type, length: body.length, end });
    switch (type) {
      case HandshakeType.client_hello:
        if (this.side !== 'client') throw new ParseError('malformed', 'ClientHello from the server');
        parseClientHello(body);
        events.push({ kind: 'clientHello', end });
        return;
      case HandshakeType.server_hello: {
        if (this.side !== 'server') throw new ParseError('malformed', 'ServerHello from the client');
        const hello = parseServerHello(body);
        if (!hello.isHelloRetryRequest) this.version = hello.selectedVersion;
        events.push({ kind: 'serverHello', hello, end });
        return;
      }
      case HandshakeType.certificate:
        events.push({ kind: 'certificate', chain: parseCertificate(body, this.version || 0x0303).certificates, end });
        return;
      case HandshakeType.certificate_request:
        if (this.side === 'server') events.push({ kind: 'certificateRequest', end });
        return;
      case HandshakeType.server_hello_done:
        if (this.side === 'server') events.push({ kind: 'serverHelloDone', end });
        return;
      default:
        // ServerKeyExchange, ClientKeyExchange, CertificateVerify, NewSessionTicket, ...: framed, not read.
        return;
    }
  }
}
