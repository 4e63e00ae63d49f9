/**
 * Reads the workload's first bytes until its ClientHello is complete, without answering
 * (DESIGN.md: ca-proxy reads the ClientHello of session D before answering it).
 * Everything received is kept verbatim so it can be handed to OpenSSL (intercept) or
 * forwarded unchanged (passthrough) once the destination's action is known.
 */
import { RecordReader, ContentType, looksLikeTls } from '../tls/record';
import { HandshakeReader, HandshakeType, parseClientHello, type ClientHello } from '../tls/handshake';
import { ParseError } from '../bytes/reader';
import { AlertDescription } from '../tls/alert';
import { Reason, type ReasonCode } from './reasons';
import { parseErrorAlert } from './alerts';

export type ClientHelloStep =
  | { state: 'need_more' }
  | { state: 'done'; hello: ClientHello }
  /** `alert`: the fitting one when it is not the reason's (alertFor): unexpected_message for a misplaced record or message. */
  | { state: 'error'; reason: ReasonCode; detail: string; alert?: number };

export class ClientHelloCollector {
  private readonly records: RecordReader;
  private readonly messages: HandshakeReader;
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private sniffed = false;

  /** @param maxMessageBytes largest accepted handshake message (RFC 8446 §4: up to 2^24-1; we cap it) */
  constructor(private readonly maxMessageBytes: number) {
    this.records = new RecordReader();
    this.messages = new HandshakeReader({ maxMessageBytes });
  }

  /** All bytes received so far, verbatim. */
  get received(): Buffer {
    return this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
  }

  push(chunk: Buffer): ClientHelloStep {
    this.chunks.push(chunk);
    this.size += chunk.length;
    // The ClientHello plus record headers can never legitimately exceed the message limit
    // by more than the framing overhead of the records carrying it.
    if (this.size > this.maxMessageBytes + 64 * 1024) {
      return { state: 'error', reason: Reason.handshakeTooLarge, detail: `more than ${this.size} bytes before a complete ClientHello` };
    }
    let fresh = chunk;
    if (!this.sniffed) {
      const kind = looksLikeTls(this.received);
      if (kind === 'need_more') return { state: 'need_more' };
      if (kind === 'not_tls') return { state: 'error', reason: Reason.notTls, detail: describeNonTls(this.received) };
      this.sniffed = true;
      // The bytes that arrived while sniffing (a first read shorter than a record header) were not framed yet.
      fresh = this.received;
    }
    try {
      for (const record of this.records.push(fresh)) {
        // RFC 8446 §5.1 / §6.2: another record type before (or inside) the ClientHello, or another
        // handshake message first, is an inappropriate message: unexpected_message, not decode_error.
        if (record.type !== ContentType.handshake) {
          const where = this.messages.buffered > 0 ? 'inside the ClientHello split across records (RFC 8446 §5.1)' : 'before ClientHello';
          return { state: 'error', reason: Reason.malformedHandshake, detail: `record type ${record.type} ${where}`, alert: AlertDescription.unexpected_message };
        }
        for (const msg of this.messages.push(record.fragment)) {
          if (msg.type !== HandshakeType.client_hello) {
            return { state: 'error', reason: Reason.malformedHandshake, detail: `handshake type ${msg.type} before ClientHello`, alert: AlertDescription.unexpected_message };
          }
          return { state: 'done', hello: parseClientHello(msg.body) };
        }
      }
      return { state: 'need_more' };
    } catch (err) {
      if (err instanceof ParseError) {
        return {
          state: 'error',
          reason: err.code === 'too_large' ? Reason.handshakeTooLarge : Reason.malformedHandshake,
          detail: err.message,
          alert: parseErrorAlert(err),
        };
      }
      throw err;
    }
  }
}

/** A short, log-safe description of what a non-TLS client sent. */
function describeNonTls(bytes: Buffer): string {
  const head = bytes.subarray(0, 8).toString('latin1');
  if (/^[A-Z]{3,7} /.test(head)) return 'plain-text HTTP request on a TLS port';
  if (bytes[0]! & 0x80) return 'SSLv2-format hello (not supported)';
  return `not a TLS record (first byte 0x${bytes[0]!.toString(16).padStart(2, '0')})`;
}
