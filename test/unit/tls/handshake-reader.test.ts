import { describe, test } from '@jest/globals';
import assert from 'node:assert/strict';
import {
  ContentType,
  DEFAULT_MAX_HANDSHAKE_MESSAGE_BYTES,
  HandshakeReader,
  HandshakeType,
  ParseError,
  RecordReader,
  handshakeTypeName,
  type HandshakeMessage,
} from '../../../internal/tls';

function message(type: number, body: Buffer): Buffer {
  const h = Buffer.from([type, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]);
  return Buffer.concat([h, body]);
}

/** Wrap a handshake byte stream into records of at most `max` fragment bytes. */
function records(hs: Buffer, max: number): Buffer {
  const out: Buffer[] = [];
  for (let off = 0; off < hs.length; off += max) {
    const frag = hs.subarray(off, off + max);
    out.push(Buffer.from([ContentType.handshake, 3, 3, frag.length >> 8, frag.length & 0xff]), frag);
  }
  return Buffer.concat(out);
}

const simplify = (ms: HandshakeMessage[]) => ms.map((m) => ({ type: m.type, body: Buffer.from(m.body), raw: Buffer.from(m.raw) }));

function feed(fragments: Buffer[], opts?: { maxMessageBytes?: number }): HandshakeMessage[] {
  const hr = new HandshakeReader(opts);
  const out: HandshakeMessage[] = [];
  for (const f of fragments) out.push(...hr.push(f));
  assert.equal(hr.buffered, 0);
  return out;
}

// A server's first TLS 1.2 flight, shaped like the real thing.
const flight = Buffer.concat([
  message(HandshakeType.server_hello, Buffer.alloc(70, 1)),
  message(HandshakeType.certificate, Buffer.alloc(40000, 2)), // spans 3 records of 2^14
  message(HandshakeType.server_key_exchange, Buffer.alloc(300, 3)),
  message(HandshakeType.certificate_request, Buffer.alloc(48, 4)),
  message(HandshakeType.server_hello_done, Buffer.alloc(0)),
]);

describe('HandshakeReader', () => {
  const whole = simplify(feed([flight]));

  test('frames every message of one fragment (several messages in one record)', () => {
    assert.deepEqual(
      whole.map((m) => [handshakeTypeName(m.type), m.body.length]),
      [
        ['server_hello', 70],
        ['certificate', 40000],
        ['server_key_exchange', 300],
        ['certificate_request', 48],
        ['server_hello_done', 0],
      ],
    );
    assert.deepEqual(Buffer.concat(whole.map((m) => m.raw)), flight);
  });

  test('messages inside one fragment are views (no copy)', () => {
    for (const m of new HandshakeReader().push(flight)) assert.equal(m.raw.buffer, flight.buffer);
  });

  test('the same messages for every record size, via RecordReader, whole or byte by byte', () => {
    for (const max of [1, 2, 3, 4, 5, 100, 1000, 16384]) {
      const wire = records(flight, max);
      for (const step of [1, 7, 1500, wire.length]) {
        const rr = new RecordReader();
        const hr = new HandshakeReader();
        const got: HandshakeMessage[] = [];
        for (let off = 0; off < wire.length; off += step) {
          for (const r of rr.push(wire.subarray(off, off + step))) got.push(...hr.push(r.fragment));
        }
        assert.deepEqual(simplify(got), whole, `records of ${max}, chunks of ${step}`);
      }
    }
  });

  test('a message split over records completes with the record holding its last byte', () => {
    const hr = new HandshakeReader();
    const m = message(HandshakeType.certificate, Buffer.alloc(10, 9));
    assert.deepEqual(hr.push(m.subarray(0, 2)), []);
    assert.equal(hr.buffered, 2);
    assert.deepEqual(hr.push(m.subarray(2, 9)), []);
    const next = message(HandshakeType.server_hello_done, Buffer.alloc(0));
    const got = hr.push(Buffer.concat([m.subarray(9), next]));
    assert.deepEqual(simplify(got), simplify([
      { type: 11, body: m.subarray(4), raw: m },
      { type: 14, body: Buffer.alloc(0), raw: next },
    ]));
  });

  test('an oversized message is rejected on its 4-byte header, before its body', () => {
    const hr = new HandshakeReader({ maxMessageBytes: 1000 });
    assert.deepEqual(hr.push(message(1, Buffer.alloc(1000))).length, 1, 'exactly the maximum is accepted');
    const header = Buffer.from([11, 0, 0x03, 0xe9]); // 1001
    assert.deepEqual(hr.push(header.subarray(0, 3)), []);
    assert.throws(() => hr.push(header.subarray(3)), (e: unknown) => e instanceof ParseError && e.code === 'too_large');
    assert.throws(() => hr.push(Buffer.alloc(1)), ParseError, 'stays failed');
  });

  test('default maximum is 256 KiB; 2^24-1 in the header is refused', () => {
    assert.equal(new HandshakeReader().maxMessageBytes, DEFAULT_MAX_HANDSHAKE_MESSAGE_BYTES);
    assert.equal(DEFAULT_MAX_HANDSHAKE_MESSAGE_BYTES, 262144);
    assert.throws(() => new HandshakeReader().push(Buffer.from([11, 0xff, 0xff, 0xff])), (e: unknown) => e instanceof ParseError && e.code === 'too_large');
    assert.throws(() => new HandshakeReader().push(Buffer.from([11, 0x04, 0x00, 0x01])), ParseError);
    assert.equal(new HandshakeReader().push(message(11, Buffer.alloc(262144))).length, 1);
  });

  test('invalid maxMessageBytes is a RangeError', () => {
    assert.throws(() => new HandshakeReader({ maxMessageBytes: -1 }), RangeError);
    assert.throws(() => new HandshakeReader({ maxMessageBytes: 2 ** 24 }), RangeError);
    assert.throws(() => new HandshakeReader({ maxMessageBytes: 1.5 }), RangeError);
  });

  test('handshakeTypeName names the RFC types', () => {
    assert.equal(handshakeTypeName(1), 'client_hello');
    assert.equal(handshakeTypeName(13), 'certificate_request');
    assert.equal(handshakeTypeName(20), 'finished');
    assert.equal(handshakeTypeName(99), 'unknown(99)');
    assert.deepEqual(
      [HandshakeType.client_hello, HandshakeType.server_hello, HandshakeType.new_session_ticket, HandshakeType.encrypted_extensions,
        HandshakeType.certificate, HandshakeType.server_key_exchange, HandshakeType.certificate_request, HandshakeType.server_hello_done,
        HandshakeType.certificate_verify, HandshakeType.client_key_exchange, HandshakeType.finished],
      [1, 2, 4, 8, 11, 12, 13, 14, 15, 16, 20],
    );
  });
});
