import { describe, test } from '@jest/globals';
import assert from 'node:assert/strict';
import {
  ContentType,
  MAX_RECORD_FRAGMENT_BYTES,
  ParseError,
  RecordReader,
  looksLikeTls,
  type TlsRecord,
} from '../../../internal/tls';
import { rng } from '../../support/captures';

function record(type: number, version: number, fragment: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h[0] = type;
  h.writeUInt16BE(version, 1);
  h.writeUInt16BE(fragment.length, 3);
  return Buffer.concat([h, fragment]);
}


/** Split `buf` into chunks whose sizes come from `next()` (each ≥ 1). */
function chunked(buf: Buffer, next: () => number): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < buf.length; ) {
    const n = Math.max(1, next());
    out.push(buf.subarray(off, off + n));
    off += n;
  }
  return out;
}

function feedAll(chunks: Buffer[]): TlsRecord[] {
  const rr = new RecordReader();
  const out: TlsRecord[] = [];
  for (const c of chunks) out.push(...rr.push(c));
  assert.equal(rr.buffered, 0);
  return out;
}

const simplify = (recs: TlsRecord[]) =>
  recs.map((r) => ({ type: r.type, version: r.version, fragment: Buffer.from(r.fragment), raw: Buffer.from(r.raw) }));

// A stream with every content type, an empty record, a maximum-size record and small ones.
const stream = Buffer.concat([
  record(ContentType.handshake, 0x0301, Buffer.alloc(300, 1)),
  record(ContentType.handshake, 0x0303, Buffer.alloc(MAX_RECORD_FRAGMENT_BYTES, 2)),
  record(ContentType.change_cipher_spec, 0x0303, Buffer.from([1])),
  record(ContentType.application_data, 0x0303, Buffer.alloc(0)),
  record(ContentType.alert, 0x0303, Buffer.from([2, 40])),
  record(ContentType.application_data, 0x0303, Buffer.alloc(4000, 3)),
  record(ContentType.handshake, 0x0300, Buffer.from([9])),
]);

describe('RecordReader', () => {
  const whole = simplify(feedAll([stream]));

  test('reads every record of a whole stream', () => {
    assert.deepEqual(
      whole.map((r) => [r.type, r.version, r.fragment.length]),
      [
        [22, 0x0301, 300],
        [22, 0x0303, MAX_RECORD_FRAGMENT_BYTES],
        [20, 0x0303, 1],
        [23, 0x0303, 0],
        [21, 0x0303, 2],
        [23, 0x0303, 4000],
        [22, 0x0300, 1],
      ],
    );
    assert.deepEqual(Buffer.concat(whole.map((r) => r.raw)), stream, 'raw bytes are the stream, byte for byte');
    for (const r of whole) assert.deepEqual(r.raw.subarray(5), r.fragment);
  });

  test('one byte at a time gives the same records', () => {
    assert.deepEqual(simplify(feedAll(chunked(stream, () => 1))), whole);
  });

  test('random chunk sizes give the same records', () => {
    for (let seed = 1; seed <= 50; seed++) {
      const r = rng(seed);
      const max = [3, 6, 17, 700, 20000][seed % 5]!;
      assert.deepEqual(simplify(feedAll(chunked(stream, () => Math.floor(r() * max) + 1))), whole, `seed ${seed}`);
    }
  });

  test('splits at every single offset give the same records', () => {
    const rec1 = record(ContentType.alert, 0x0303, Buffer.from([1, 0]));
    const s = Buffer.concat([stream.subarray(0, 305), rec1, rec1]);
    const expected = simplify(feedAll([s]));
    for (let i = 0; i <= s.length; i++) {
      assert.deepEqual(simplify(feedAll([s.subarray(0, i), s.subarray(i)])), expected, `split at ${i}`);
    }
  });

  test('whole records inside one chunk are views into it (no copy)', () => {
    const recs = new RecordReader().push(stream);
    for (const r of recs) assert.equal(r.raw.buffer, stream.buffer);
  });

  test('keeps a partial record buffered until complete', () => {
    const rr = new RecordReader();
    const r = record(ContentType.handshake, 0x0303, Buffer.alloc(10, 7));
    assert.deepEqual(rr.push(r.subarray(0, 3)), []);
    assert.equal(rr.buffered, 3);
    assert.deepEqual(rr.push(r.subarray(3, 12)), []);
    assert.equal(rr.buffered, 12);
    const done = rr.push(Buffer.concat([r.subarray(12), r.subarray(0, 2)]));
    assert.equal(done.length, 1);
    assert.deepEqual(done[0]!.raw, r);
    assert.equal(rr.buffered, 2);
  });

  test('an empty chunk is harmless', () => {
    const rr = new RecordReader();
    assert.deepEqual(rr.push(Buffer.alloc(0)), []);
    rr.push(stream.subarray(0, 2));
    assert.deepEqual(rr.push(Buffer.alloc(0)), []);
    assert.equal(rr.buffered, 2);
  });

  const bad: [string, Buffer, ParseError['code']][] = [
    ['unknown content type', Buffer.from([24, 3, 3, 0, 1, 0]), 'malformed'],
    ['content type 0', Buffer.from([0, 3, 3, 0, 1, 0]), 'malformed'],
    ['version major 2', Buffer.from([22, 2, 0, 0, 1, 0]), 'malformed'],
    ['SSLv2 hello', Buffer.from('802e0100020015000000100700c0', 'hex'), 'malformed'],
    ['HTTP', Buffer.from('GET / HTTP/1.1\r\n'), 'malformed'],
    ['length 2^14+2049', Buffer.from([23, 3, 3, 0x48, 0x01]), 'too_large'],
    ['length 65535', Buffer.from([22, 3, 1, 0xff, 0xff]), 'too_large'],
  ];
  for (const [name, bytes, code] of bad) {
    test(`rejects ${name} as soon as the header is in, whole or byte by byte`, () => {
      assert.throws(() => new RecordReader().push(bytes), (e: unknown) => e instanceof ParseError && e.code === code);
      const rr = new RecordReader();
      let thrown: unknown;
      let at = -1;
      for (let i = 0; i < bytes.length && thrown === undefined; i++) {
        try {
          rr.push(bytes.subarray(i, i + 1));
        } catch (e) {
          thrown = e;
          at = i;
        }
      }
      assert.ok(thrown instanceof ParseError && thrown.code === code);
      assert.equal(at, 4, 'rejected on the 5th byte');
      // The reader stays failed: the stream position is lost.
      assert.throws(() => rr.push(record(22, 0x0303, Buffer.from([1]))), (e: unknown) => e === thrown);
    });
  }

  test('a bad header after good records in the same chunk throws', () => {
    const s = Buffer.concat([record(22, 0x0303, Buffer.from([1])), Buffer.from([99, 3, 3, 0, 0])]);
    assert.throws(() => new RecordReader().push(s), ParseError);
  });

  test('accepts exactly the maximum length', () => {
    const r = record(23, 0x0303, Buffer.alloc(MAX_RECORD_FRAGMENT_BYTES));
    assert.equal(new RecordReader().push(r).length, 1);
    assert.equal(MAX_RECORD_FRAGMENT_BYTES, 2 ** 14 + 2048);
  });
});

describe('looksLikeTls', () => {
  const hello = record(22, 0x0301, Buffer.alloc(200));

  test('a handshake record header is tls once 5 bytes are in', () => {
    for (let i = 0; i < 5; i++) assert.equal(looksLikeTls(hello.subarray(0, i)), 'need_more', `${i} bytes`);
    assert.equal(looksLikeTls(hello.subarray(0, 5)), 'tls');
    assert.equal(looksLikeTls(hello), 'tls');
  });

  test('not TLS: HTTP, SSLv2 hello, other content types, bad version, implausible length', () => {
    assert.equal(looksLikeTls(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')), 'not_tls');
    assert.equal(looksLikeTls(Buffer.from('CONNECT a:443 HTTP/1.1\r\n')), 'not_tls');
    assert.equal(looksLikeTls(Buffer.from('G')), 'not_tls');
    assert.equal(looksLikeTls(Buffer.from('802e0100020015000000100700c0', 'hex')), 'not_tls');
    assert.equal(looksLikeTls(Buffer.from([23, 3, 3, 0, 5])), 'not_tls');
    assert.equal(looksLikeTls(Buffer.from([22, 2])), 'not_tls');
    assert.equal(looksLikeTls(Buffer.from([22, 3, 1, 0, 0])), 'not_tls');
    assert.equal(looksLikeTls(Buffer.from([22, 3, 1, 0xff, 0xff])), 'not_tls');
  });

  test('the verdict never changes as more bytes arrive', () => {
    for (const s of [hello, Buffer.from('GET /'), Buffer.from([22, 3, 1, 0, 0, 1])]) {
      let final: string | undefined;
      for (let i = s.length; i >= 0; i--) {
        const v = looksLikeTls(s.subarray(0, i));
        if (v === 'need_more') continue;
        final ??= v;
        assert.equal(v, final);
      }
    }
  });
});
