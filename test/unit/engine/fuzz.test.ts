/**
 * Property tests (fast-check, fixed seed) over inspect's parsing: the HandshakeObserver (records →
 * handshake messages → events) and a whole inspect Session fed random and mutated server flights.
 * Properties: only ParseError ever escapes the observer; its held bytes stay under one record
 * plus one message; the Session never rejects a feed, never forwards server bytes before a
 * decision allows it, holds no more than `limits.maxBufferedBytes`, and every input ends (no
 * loop: each case runs to completion within the test).
 *
 * `make test` runs FUZZ_RUNS (default 300) cases per property; `make fuzz` sets
 * CA_PROXY_FUZZ_RUNS for a longer run with a random seed (printed, to reproduce a failure).
 */
import { describe, test, beforeAll } from '@jest/globals';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ContentType, HandshakeType, ParseError, MAX_RECORD_FRAGMENT_BYTES } from '../../../internal/tls';
import { HandshakeObserver } from '../../../internal/engine/observer';
import { drive, handshake, nodeClientHello, record, serverHelloBody } from './support';

const RUNS = Number(process.env.CA_PROXY_FUZZ_RUNS ?? 300);
const SEED = process.env.CA_PROXY_FUZZ_RUNS ? Date.now() & 0x7fffffff : 0x1a5bec7;
const params = { numRuns: RUNS, seed: SEED };
if (process.env.CA_PROXY_FUZZ_RUNS) console.log(`inspect fuzz: ${RUNS} runs per property, seed ${SEED}`);

const MAX_MSG = 4096;

/** A plausible server flight: ServerHello, a Certificate of random DER-ish entries, other messages, CCS. */
const flightPart = fc.oneof(
  fc.record({ v: fc.constantFrom(0x0300, 0x0301, 0x0303, 0x0304), suite: fc.integer({ min: 0, max: 0xffff }), sv: fc.option(fc.constantFrom(0x0303, 0x0304)) }).map(({ v, suite, sv }) =>
    handshake(HandshakeType.server_hello, serverHelloBody({ version: v, suite, supportedVersion: sv ?? undefined })),
  ),
  fc.array(fc.uint8Array({ minLength: 1, maxLength: 60 }), { maxLength: 3 }).map((certs) => {
    const list = Buffer.concat(certs.map((c) => Buffer.concat([Buffer.from([0, c.length >> 8, c.length & 0xff]), Buffer.from(c)])));
    return handshake(HandshakeType.certificate, Buffer.concat([Buffer.from([0, list.length >> 8, list.length & 0xff]), list]));
  }),
  fc.tuple(fc.integer({ min: 0, max: 30 }), fc.uint8Array({ maxLength: 80 })).map(([t, b]) => handshake(t, Buffer.from(b))),
  fc.integer({ min: 0, max: 0xffffff }).map((len) => handshake(HandshakeType.certificate, Buffer.alloc(0), len)),
);

/** Messages packed into records of random sizes (split across records, several per record), with CCS/alerts/app data mixed in. */
const flight = fc
  .tuple(
    fc.array(flightPart, { maxLength: 6 }),
    fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 8 }),
    fc.array(fc.constantFrom<'none' | 'ccs' | 'alert' | 'appdata'>('none', 'none', 'none', 'ccs', 'alert', 'appdata'), { maxLength: 4 }),
  )
  .map(([msgs, sizes, extras]) => {
    const hs = Buffer.concat(msgs);
    const recs: Buffer[] = [];
    for (let off = 0, i = 0; off < hs.length; i++) {
      const n = sizes[i % sizes.length]!;
      recs.push(record(ContentType.handshake, hs.subarray(off, off + n)));
      off += n;
    }
    for (const [i, e] of extras.entries()) {
      const at = (i * 7) % (recs.length + 1);
      if (e === 'ccs') recs.splice(at, 0, record(ContentType.change_cipher_spec, Buffer.from([1])));
      if (e === 'alert') recs.splice(at, 0, record(ContentType.alert, Buffer.from([2, 40])));
      if (e === 'appdata') recs.splice(at, 0, record(ContentType.application_data, Buffer.alloc(20, 1)));
    }
    return Buffer.concat(recs);
  });

/** A flight with a few random bytes overwritten, or plain random bytes. */
const input = fc.oneof(
  flight,
  fc.tuple(flight, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 })).map(([b, muts]) => {
    const out = Buffer.from(b);
    for (const [at, v] of muts) if (out.length) out[at % out.length] = v;
    return out;
  }),
  fc.uint8Array({ maxLength: 400 }).map((u) => Buffer.from(u)),
);

/** Cut points for chunking. */
const cuts = fc.array(fc.nat({ max: 5000 }), { maxLength: 12 });
function cut(b: Buffer, at: number[]): Buffer[] {
  const points = [...new Set(at.map((c) => c % (b.length + 1)))].sort((x, y) => x - y);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of points) {
    out.push(b.subarray(prev, c));
    prev = c;
  }
  out.push(b.subarray(prev));
  return out.filter((c) => c.length > 0);
}

describe('inspect parsing, property tests', () => {
  test('HandshakeObserver: only ParseError escapes; bounded; same events whatever the chunking', () => {
    fc.assert(
      fc.property(input, cuts, fc.constantFrom<'client' | 'server'>('client', 'server'), (bytes, at, side) => {
        const run = (chunks: Buffer[]): string => {
          const obs = new HandshakeObserver(side, MAX_MSG);
          const seen: string[] = [];
          try {
            for (const c of chunks) {
              for (const e of obs.push(c)) seen.push(`${e.kind}@${e.end}`);
              assert.ok(obs.buffered <= 5 + MAX_RECORD_FRAGMENT_BYTES + 4 + MAX_MSG, `buffered ${obs.buffered}`);
            }
            return seen.join(' ');
          } catch (e) {
            if (e instanceof ParseError) return `${seen.join(' ')} !${e.code}`;
            throw e;
          }
        };
        const whole = run([bytes]);
        const chunked = run(cut(bytes, at));
        // A bad header later in a chunk fails the whole chunk (RecordReader drops the records
        // it completed), so with an error the event lists may differ in length; compare the
        // error-free outcomes, where nothing may depend on the chunking.
        if (!whole.includes('!') && !chunked.includes('!')) assert.equal(chunked, whole);
      }),
      params,
    );
  });

  let hello: Buffer;
  beforeAll(async () => {
    hello = await nodeClientHello();
  });

  test('inspect Session: never rejects, forwards nothing unchecked, holds ≤ maxBufferedBytes, always decides', async () => {
    await fc.assert(
      fc.asyncProperty(input, cuts, fc.constantFrom<'deny' | 'allowUnchecked'>('deny', 'allowUnchecked'), async (bytes, at, tls13) => {
        const d = drive({ tls13 }, { maxHandshakeMessageBytes: MAX_MSG, maxBufferedBytes: 16384 });
        await d.session.feed('workload', hello);
        for (const c of cut(bytes, at)) {
          await d.session.feed('server', c);
          const held = bytes.length - d.bytes('workload').length;
          assert.ok(d.session.decision || held <= 16384 + 6 * 1024, 'held within the limit (plus one chunk)');
        }
        await d.session.feed('server', Buffer.alloc(0), true);
        // Undecided: the hang-up decides (peer_closed). Allowed: half-closed until the workload ends too.
        if (d.decisions[0]?.outcome === 'allow') await d.session.feed('workload', Buffer.alloc(0), true);
        assert.equal(d.session.state, 'Closed', 'both peers hung up: the connection is over');
        assert.equal(d.decisions.length, 1, 'exactly one decision');
        const dec = d.decisions[0]!;
        const toWorkload = d.bytes('workload');
        if (dec.outcome === 'deny' && dec.reason !== 'upstream_handshake_failed') {
          // Nothing of an unchecked flight: at most the alert ca-proxy wrote.
          assert.ok(toWorkload.length === 0 || (toWorkload.length === 7 && toWorkload[0] === ContentType.alert), `${dec.reason}: ${toWorkload.length} bytes reached the workload`);
        }
        if (dec.outcome === 'allow') assert.ok(['tls13_unchecked', 'ok'].includes(dec.reason), dec.reason);
        // No chain verifies against an empty trust bundle: a Certificate is never allowed here.
        assert.notEqual(dec.reason, 'ok');
      }),
      { ...params, numRuns: Math.max(1, Math.floor(RUNS / 2)) },
    );
  });
});
