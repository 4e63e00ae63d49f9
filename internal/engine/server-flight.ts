/**
 * Follows the server's plaintext handshake records on their way to the proxy's OpenSSL
 * client, record by record, so the engine can act *before* OpenSSL sees a message:
 * for TLS ≤ 1.2 the server's Certificate (RFC 5246 §7.4.2) and CertificateRequest
 * (§7.4.4) travel in clear, and checking the chain here means the proxy's own
 * certificate is never sent to a server whose certificate is revoked (Node's TLS client
 * would otherwise complete its flight, client certificate included, before reporting a
 * verification error). For TLS 1.3 only the ServerHello is readable; the watcher reports
 * it and stops.
 */
import { RecordReader, ContentType, type TlsRecord } from '../tls/record';
import {
  HandshakeReader,
  HandshakeType,
  parseServerHello,
  parseCertificate,
  type ServerHello,
} from '../tls/handshake';

export type FlightEvent =
  | { kind: 'serverHello'; hello: ServerHello }
  | { kind: 'certificate'; chain: Buffer[] }
  | { kind: 'certificateRequest' }
  | { kind: 'alert'; level: number; description: number };

/** One complete record and what it revealed. `events` are in message order. */
export interface WatchedRecord {
  raw: Buffer;
  events: FlightEvent[];
}

export class ServerFlightWatcher {
  private readonly records = new RecordReader();
  private readonly messages: HandshakeReader;
  private version = 0;
  /** True once the rest of the stream is encrypted (server CCS in TLS ≤ 1.2, or TLS 1.3). */
  done = false;

  constructor(maxMessageBytes: number) {
    this.messages = new HandshakeReader({ maxMessageBytes });
  }

  /**
   * Feeds bytes from the server. Returns the complete records with their events, and the
   * bytes past the point where the watcher stopped (already encrypted: pass them on as-is).
   * Throws ParseError on malformed input.
   */
  push(chunk: Buffer): { records: WatchedRecord[]; rest: Buffer | null } {
    const out: WatchedRecord[] = [];
    const records = this.records.push(chunk);
    for (let i = 0; i < records.length; i++) {
      const record = records[i]!;
      out.push({ raw: record.raw, events: this.inspect(record) });
      if (this.done) {
        const later = records.slice(i + 1).map((r) => r.raw);
        const pending = this.records.takePending();
        if (pending.length) later.push(pending);
        return { records: out, rest: later.length ? Buffer.concat(later) : null };
      }
    }
    return { records: out, rest: null };
  }

  private inspect(record: TlsRecord): FlightEvent[] {
    switch (record.type) {
      case ContentType.change_cipher_spec:
        // In TLS 1.3 a CCS is only middlebox-compatibility noise (RFC 8446 §D.4).
        if (this.version !== 0 && this.version <= 0x0303) this.done = true;
        return [];
      case ContentType.alert:
        return record.fragment.length >= 2
          ? [{ kind: 'alert', level: record.fragment[0]!, description: record.fragment[1]! }]
          : [];
      case ContentType.handshake:
        return this.handshake(record.fragment);
      default:
        // application data before the handshake ends: nothing we can read
        this.done = true;
        return [];
    }
  }

  private handshake(fragment: Buffer): FlightEvent[] {
    const events: FlightEvent[] = [];
    for (const msg of this.messages.push(fragment)) {
      if (msg.type === HandshakeType.server_hello) {
        const hello = parseServerHello(msg.body);
        events.push({ kind: 'serverHello', hello });
        if (hello.isHelloRetryRequest) continue;
        this.version = hello.selectedVersion;
        if (this.version >= 0x0304) {
          this.done = true;
          break;
        }
      } else if (msg.type === HandshakeType.certificate) {
        events.push({ kind: 'certificate', chain: parseCertificate(msg.body, this.version).certificates });
      } else if (msg.type === HandshakeType.certificate_request) {
        events.push({ kind: 'certificateRequest' });
      }
    }
    return events;
  }
}
