/**
 * Property tests (fast-check, fixed seed and run counts): arbitrary and mutated bytes into the
 * readers and every parser only ever produce a result or a ParseError — never another
 * exception — and the readers' output does not depend on how the stream is chunked.
 */
import { describe, test } from '@jest/globals';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  HandshakeReader,
  ParseError,
  RecordReader,
  parseAlert,
  parseCertificate,
  parseCertificateRequest,
  parseClientHello,
  parseServerHello,
  type HandshakeMessage,
  type TlsRecord,
} from '../../../internal/tls';

const RUNS = 2000;
const params = { numRuns: RUNS, seed: 0x5eed };

/** Run `f`; a ParseError counts as a clean rejection, anything else fails the property. */
function onlyParseError(f: () => unknown): 'ok' | 'rejected' {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (e instanceof ParseError) return 'rejected';
    throw e;
  }
}

/** Cut `bytes` at the given (sorted, deduplicated) offsets. */
function cut(bytes: Uint8Array, cuts: number[]): Buffer[] {
  const b = Buffer.from(bytes);
  const at = [...new Set(cuts.map((c) => c % (b.length + 1)))].sort((x, y) => x - y);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of at) {
    out.push(b.subarray(prev, c));
    prev = c;
  }
  out.push(b.subarray(prev));
  return out;
}

// Bytes biased towards plausible record/handshake headers so that the properties reach past
// the first length check: a valid-looking header followed by arbitrary bytes.
const recordish = fc
  .tuple(fc.constantFrom(20, 21, 22, 23, 24, 0x80), fc.constantFrom(3, 2), fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 80 }), fc.uint8Array({ maxLength: 120 }))
  .map(([t, maj, min, len, rest]) => Uint8Array.from([t, maj, min, len >> 8, len & 0xff, ...rest]));
const streamBytes = fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.array(recordish, { maxLength: 5 }).map((a) => Uint8Array.from(a.flatMap((x) => [...x]))));

const handshakeish = fc
  .tuple(fc.integer({ min: 0, max: 30 }), fc.integer({ min: 0, max: 120 }), fc.uint8Array({ maxLength: 150 }))
  .map(([t, len, rest]) => Uint8Array.from([t, 0, len >> 8, len & 0xff, ...rest]));
const hsBytes = fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.array(handshakeish, { maxLength: 5 }).map((a) => Uint8Array.from(a.flatMap((x) => [...x]))));

const simplifyRecords = (rs: TlsRecord[]) => rs.map((r) => [r.type, r.version, Buffer.from(r.raw).toString('hex')]);
const simplifyMessages = (ms: HandshakeMessage[]) => ms.map((m) => [m.type, Buffer.from(m.raw).toString('hex')]);

describe('property: readers', () => {
  test('RecordReader: only ParseError, and chunking does not change the records', () => {
    fc.assert(
      fc.property(streamBytes, fc.array(fc.nat(), { maxLength: 8 }), (bytes, cuts) => {
        let whole: TlsRecord[] = [];
        const wholeResult = onlyParseError(() => (whole = new RecordReader().push(Buffer.from(bytes))));
        const rr = new RecordReader();
        const pieces: TlsRecord[] = [];
        const chunkedResult = onlyParseError(() => {
          for (const c of cut(bytes, cuts)) pieces.push(...rr.push(c));
        });
        assert.equal(chunkedResult, wholeResult);
        if (wholeResult === 'ok') assert.deepEqual(simplifyRecords(pieces), simplifyRecords(whole));
      }),
      params,
    );
  });

  test('HandshakeReader: only ParseError, and fragmentation does not change the messages', () => {
    fc.assert(
      fc.property(hsBytes, fc.array(fc.nat(), { maxLength: 8 }), fc.integer({ min: 0, max: 200 }), (bytes, cuts, max) => {
        let whole: HandshakeMessage[] = [];
        const wholeResult = onlyParseError(() => (whole = new HandshakeReader({ maxMessageBytes: max }).push(Buffer.from(bytes))));
        const hr = new HandshakeReader({ maxMessageBytes: max });
        const pieces: HandshakeMessage[] = [];
        const chunkedResult = onlyParseError(() => {
          for (const c of cut(bytes, cuts)) pieces.push(...hr.push(c));
        });
        assert.equal(chunkedResult, wholeResult);
        if (wholeResult === 'ok') assert.deepEqual(simplifyMessages(pieces), simplifyMessages(whole));
      }),
      params,
    );
  });
});

// A valid ClientHello / ServerHello / Certificate / CertificateRequest to mutate, so that
// mutations land deep inside nested vectors rather than failing on the first length.
const cat = (...parts: (Buffer | number[])[]): Buffer => Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))));
const u16 = (v: number): number[] => [v >> 8, v & 0xff];
function vec(lenBytes: 1 | 2 | 3, ...parts: (Buffer | number[])[]): Buffer {
  const body = cat(...parts);
  const n = body.length;
  return cat(lenBytes === 1 ? [n] : lenBytes === 2 ? u16(n) : [n >> 16, (n >> 8) & 0xff, n & 0xff], body);
}
const ext = (type: number, ...data: (Buffer | number[])[]) => cat(u16(type), vec(2, ...data));
const random = Buffer.alloc(32, 0xab);
const der = Buffer.from([0x30, 0x02, 0x05, 0x00]);
const dn = Buffer.from([0x30, 0x00]);

const seeds: Record<string, Buffer> = {
  clientHello: cat(u16(0x0303), random, vec(1, Buffer.alloc(32, 5)), vec(2, u16(0x1301), u16(0xc02f)), vec(1, [0]),
    vec(2,
      ext(0, vec(2, [0], vec(2, Buffer.from('a.example')))),
      ext(43, vec(1, u16(0x0304), u16(0x0303))),
      ext(16, vec(2, vec(1, Buffer.from('h2')), vec(1, Buffer.from('http/1.1')))),
      ext(41, [0, 0]))),
  serverHello: cat(u16(0x0303), random, vec(1), u16(0x1301), [0], vec(2, ext(43, u16(0x0304)), ext(16, vec(2, vec(1, Buffer.from('h2')))))),
  certificate12: vec(3, vec(3, der), vec(3, dn)),
  certificate13: cat(vec(1), vec(3, vec(3, der), vec(2, ext(5, [1])), vec(3, dn), vec(2))),
  certificateRequest12: cat(vec(1, [1, 64]), vec(2, u16(0x0403), u16(0x0804)), vec(2, vec(2, dn))),
  certificateRequest13: cat(vec(1, [9]), vec(2, ext(13, vec(2, u16(0x0403), u16(0x0804))), ext(47, vec(2, vec(2, dn))))),
};

const parsers: [string, (b: Buffer) => unknown][] = [
  ['parseClientHello', parseClientHello],
  ['parseServerHello', parseServerHello],
  ['parseCertificate (1.2)', (b) => parseCertificate(b, 0x0303)],
  ['parseCertificate (1.3)', (b) => parseCertificate(b, 0x0304)],
  ['parseCertificateRequest (1.0)', (b) => parseCertificateRequest(b, 0x0301)],
  ['parseCertificateRequest (1.2)', (b) => parseCertificateRequest(b, 0x0303)],
  ['parseCertificateRequest (1.3)', (b) => parseCertificateRequest(b, 0x0304)],
  ['parseAlert', parseAlert],
];

/** A seed with one mutation: 1–3 random byte overwrites, a truncation, or an insertion. */
const mutated = fc
  .tuple(
    fc.constantFrom(...Object.values(seeds)),
    fc.oneof(
      fc.record({ writes: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }) }),
      fc.record({ truncate: fc.nat() }),
      fc.record({ insertAt: fc.nat(), insert: fc.uint8Array({ minLength: 1, maxLength: 4 }) }),
    ),
  )
  .map(([seed, m]) => {
    let b = Buffer.from(seed);
    if ('writes' in m) for (const [pos, v] of m.writes) b[pos % b.length] = v;
    if ('truncate' in m) b = b.subarray(0, m.truncate % (b.length + 1));
    if ('insert' in m) {
      const at = m.insertAt % (b.length + 1);
      b = Buffer.concat([b.subarray(0, at), Buffer.from(m.insert), b.subarray(at)]);
    }
    return b;
  });

describe('property: parsers', () => {
  test('the seeds are valid messages', () => {
    assert.equal(parseClientHello(seeds.clientHello!).sni, 'a.example');
    assert.equal(parseServerHello(seeds.serverHello!).alpn, 'h2');
    assert.equal(parseCertificate(seeds.certificate12!, 0x0303).certificates.length, 2);
    assert.equal(parseCertificate(seeds.certificate13!, 0x0304).certificates.length, 2);
    assert.equal(parseCertificateRequest(seeds.certificateRequest12!, 0x0303).certificateAuthorities.length, 1);
    assert.equal(parseCertificateRequest(seeds.certificateRequest13!, 0x0304).certificateAuthorities.length, 1);
  });

  test('mutations reach past the first checks: many parse, many are rejected', () => {
    const tally = { ok: 0, rejected: 0 };
    for (const b of fc.sample(mutated, { numRuns: RUNS, seed: 7 })) {
      for (const [, parse] of parsers) tally[onlyParseError(() => parse(b))]++;
    }
    // Each mutated seed is valid input for about one parser of eight.
    assert.ok(tally.ok > RUNS / 20, `ok ${tally.ok}`);
    assert.ok(tally.rejected > RUNS, `rejected ${tally.rejected}`);
  });

  for (const [name, parse] of parsers) {
    test(`${name}: random and mutated bytes only ever throw ParseError`, () => {
      fc.assert(
        fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u)), mutated), (b) => {
          onlyParseError(() => parse(b));
        }),
        params,
      );
    });
  }
});
