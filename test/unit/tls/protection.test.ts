/**
 * TLS 1.3 record protection (internal/tls/protection.ts): the key schedule against RFC 8448's
 * "Simple 1-RTT Handshake" trace, and records sealed here opened by the same keys in order,
 * including the protected alert ca-proxy sends past a TLS 1.3 ServerHello (RFC 8446 §6, issue 10
 * item 5). Live peers reading these alerts: test/integration/tls13-alerts.test.ts.
 */
import { describe, test } from '@jest/globals';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { RecordProtection, parseKeylogLine, trafficKeys } from '../../../internal/tls/protection';
import { AlertDescription, ContentType, ParseError } from '../../../internal/tls';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('trafficKeys (RFC 8446 §7.3)', () => {
  test('RFC 8448 §3: the server handshake traffic secret gives the trace\'s key and IV', () => {
    const secret = hex('b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38');
    const keys = trafficKeys(secret, 'TLS_AES_128_GCM_SHA256')!;
    assert.equal(keys.key.toString('hex'), '3fce516009c21727d0f2e4e86ee403bc');
    assert.equal(keys.iv.toString('hex'), '5d313eb2671276ee13000b30');
  });

  test('a suite TLS 1.3 does not have (or CCM, not supported here) gives null', () => {
    assert.equal(trafficKeys(Buffer.alloc(32), 0xc02f), null);
    assert.equal(trafficKeys(Buffer.alloc(32), 'TLS_AES_128_CCM_SHA256'), null);
    assert.equal(trafficKeys(Buffer.alloc(48), 0x1302)!.key.length, 32);
  });
});

describe('RecordProtection', () => {
  for (const suite of [0x1301, 0x1302, 0x1303]) {
    test(`suite 0x${suite.toString(16)}: sealed records open in order; a protected alert carries level and description`, () => {
      const keys = trafficKeys(crypto.randomBytes(suite === 0x1302 ? 48 : 32), suite)!;
      const w = new RecordProtection(keys);
      const r = new RecordProtection(keys);
      const a = w.seal(ContentType.handshake, Buffer.from('first'));
      const b = w.alert(AlertDescription.certificate_revoked);
      assert.equal(b[0], ContentType.application_data, 'the outer type hides the alert (RFC 8446 §5.2)');
      assert.equal(b.readUInt16BE(1), 0x0303);
      assert.deepEqual(r.open(a), { type: ContentType.handshake, content: Buffer.from('first') });
      assert.deepEqual(r.open(b), { type: ContentType.alert, content: Buffer.from([2, AlertDescription.certificate_revoked]) });
    });
  }

  test('a record opened out of order (wrong sequence number) or altered does not authenticate', () => {
    const keys = trafficKeys(crypto.randomBytes(32), 0x1301)!;
    const w = new RecordProtection(keys);
    w.seal(ContentType.handshake, Buffer.from('skipped'));
    const second = w.seal(ContentType.handshake, Buffer.from('second'));
    assert.throws(() => new RecordProtection(keys).open(second), (e: unknown) => e instanceof ParseError && /bad_record_mac/.test(e.message));
    const altered = new RecordProtection(keys).seal(ContentType.handshake, Buffer.from('first'));
    altered[altered.length - 1]! ^= 1;
    const r = new RecordProtection(keys);
    assert.throws(() => r.open(altered), ParseError);
  });

  test('a key log line parses; anything else is null', () => {
    const e = parseKeylogLine(`CLIENT_HANDSHAKE_TRAFFIC_SECRET ${'AB'.repeat(32)} ${'01'.repeat(32)}\n`);
    assert.equal(e?.label, 'CLIENT_HANDSHAKE_TRAFFIC_SECRET');
    assert.equal(e?.clientRandom, 'ab'.repeat(32));
    assert.equal(e?.secret.length, 32);
    assert.equal(parseKeylogLine('# comment'), null);
  });
});
