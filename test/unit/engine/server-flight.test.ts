/**
 * ServerFlightWatcher (intercept's reader of the server's first flight) on hand-built TLS 1.3
 * flights, protected under made-up server handshake keys: a handshake message split across
 * protected records must not be interleaved with a record of another type (RFC 8446 §5.1), in
 * clear or protected; the watcher refuses it with ParseError `unexpected`, which intercept answers
 * with unexpected_message (engine/alerts.ts parseErrorAlert). Issue 10 item 11.
 */
import { describe, test } from '@jest/globals';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { ServerFlightWatcher, type FlightEvent } from '../../../internal/engine/server-flight';
import { RecordProtection, trafficKeys } from '../../../internal/tls/protection';
import { AlertDescription, ContentType, HandshakeType, ParseError, buildAlert } from '../../../internal/tls';
import { parseErrorAlert } from '../../../internal/engine/alerts';
import { handshake, record, serverHelloBody } from './support';

const u24 = (n: number) => Buffer.from([n >> 16, (n >> 8) & 0xff, n & 0xff]);

/** A TLS 1.3 flight: plaintext ServerHello, then EncryptedExtensions, Certificate (split in two records, `between` inserted), Finished. */
function flight(between: (seal: RecordProtection) => Buffer | null): { bytes: Buffer; keys: NonNullable<ReturnType<typeof trafficKeys>> } {
  const keys = trafficKeys(crypto.randomBytes(32), 0x1301)!;
  const seal = new RecordProtection(keys);
  const hello = record(ContentType.handshake, handshake(HandshakeType.server_hello, serverHelloBody({ suite: 0x1301, supportedVersion: 0x0304 })));
  const ee = handshake(HandshakeType.encrypted_extensions, Buffer.from([0, 0]));
  const der = crypto.randomBytes(600);
  const entry = Buffer.concat([u24(der.length), der, Buffer.from([0, 0])]);
  const cert = handshake(HandshakeType.certificate, Buffer.concat([Buffer.from([0]), u24(entry.length), entry]));
  const finished = handshake(HandshakeType.finished, Buffer.alloc(32, 5));
  const parts = [hello, seal.seal(ContentType.handshake, Buffer.concat([ee, cert.subarray(0, 300)]))];
  const mid = between(seal);
  if (mid) parts.push(mid);
  parts.push(seal.seal(ContentType.handshake, Buffer.concat([cert.subarray(300), finished])));
  return { bytes: Buffer.concat(parts), keys };
}

/** Runs the watcher over `bytes` in chunks of `size`, handing over the keys when asked; returns the events or the ParseError. */
function watch(bytes: Buffer, keys: NonNullable<ReturnType<typeof trafficKeys>>, size: number): FlightEvent[] | ParseError {
  const w = new ServerFlightWatcher(1 << 18);
  const events: FlightEvent[] = [];
  try {
    for (let off = 0; off < bytes.length && !w.done; off += size) {
      w.push(bytes.subarray(off, off + size));
      for (;;) {
        if (w.needsKeys) w.setKeys(keys);
        const rec = w.next();
        if (!rec) break;
        events.push(...rec.events);
      }
    }
  } catch (err) {
    if (err instanceof ParseError) return err;
    throw err;
  }
  return events;
}

describe('ServerFlightWatcher: TLS 1.3 framing (RFC 8446 §5.1)', () => {
  for (const size of [1, 5, 1 << 20]) {
    test(`the flight without interleaving is read whole (chunks of ${size})`, () => {
      const { bytes, keys } = flight(() => null);
      const events = watch(bytes, keys, size);
      assert.ok(Array.isArray(events), String(events));
      assert.deepEqual(events.map((e) => e.kind), ['serverHello', 'encryptedExtensions', 'certificate', 'flightEnd']);
    });

    for (const [name, between] of [
      ['a protected alert', (s: RecordProtection) => s.alert(AlertDescription.close_notify, 1)],
      ['protected application data', (s: RecordProtection) => s.seal(ContentType.application_data, Buffer.from('early'))],
      ['a plaintext ChangeCipherSpec', () => record(ContentType.change_cipher_spec, Buffer.from([1]))],
      ['a plaintext alert', () => buildAlert(AlertDescription.handshake_failure)],
    ] as const) {
      test(`a Certificate split by ${name} (chunks of ${size}): ParseError unexpected → unexpected_message`, () => {
        const { bytes, keys } = flight(between);
        const got = watch(bytes, keys, size);
        assert.ok(got instanceof ParseError, `refused, got events ${JSON.stringify(Array.isArray(got) ? got.map((e) => e.kind) : got)}`);
        assert.equal(got.code, 'unexpected', got.message);
        assert.equal(parseErrorAlert(got), AlertDescription.unexpected_message);
      });
    }
  }
});
