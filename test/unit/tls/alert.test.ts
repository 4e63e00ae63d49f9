import { describe, test } from '@jest/globals';
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import {
  AlertDescription,
  AlertLevel,
  ContentType,
  ParseError,
  RecordReader,
  alertName,
  buildAlert,
  parseAlert,
} from '../../../internal/tls';

/**
 * Answer a real Node/OpenSSL client's ClientHello with `alert` and return the error the
 * client reports: OpenSSL is the independent judge of the bytes buildAlert produces.
 */
async function clientErrorFor(alert: Buffer, opts: tls.ConnectionOptions = {}): Promise<NodeJS.ErrnoException> {
  const server = net.createServer((sock) => {
    sock.on('error', () => {});
    sock.once('data', () => sock.end(alert));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  try {
    return await new Promise<NodeJS.ErrnoException>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('client did not fail within 5 s')), 5000);
      const client = tls.connect({ host: '127.0.0.1', port, servername: 'a.example', ...opts });
      client.on('secureConnect', () => reject(new Error('handshake unexpectedly succeeded')));
      client.on('error', (e) => {
        clearTimeout(timer);
        client.destroy();
        resolve(e);
      });
    });
  } finally {
    server.close();
  }
}

describe('alerts', () => {
  test('buildAlert: a 7-byte plaintext alert record, fatal, version 0x0303 by default', () => {
    assert.deepEqual(buildAlert(AlertDescription.certificate_revoked), Buffer.from([21, 3, 3, 0, 2, 2, 44]));
    assert.deepEqual(
      buildAlert(AlertDescription.close_notify, { level: AlertLevel.warning, version: 0x0301 }),
      Buffer.from([21, 3, 1, 0, 2, 1, 0]),
    );
  });

  test('buildAlert output frames as one alert record and parses back', () => {
    for (const d of Object.values(AlertDescription)) {
      const recs = new RecordReader().push(buildAlert(d));
      assert.equal(recs.length, 1);
      assert.equal(recs[0]!.type, ContentType.alert);
      assert.deepEqual(parseAlert(recs[0]!.fragment), { level: 2, description: d });
    }
  });

  test('buildAlert rejects out-of-range arguments', () => {
    assert.throws(() => buildAlert(256), RangeError);
    assert.throws(() => buildAlert(-1), RangeError);
    assert.throws(() => buildAlert(1.5), RangeError);
    assert.throws(() => buildAlert(40, { level: 3 }), RangeError);
    assert.throws(() => buildAlert(40, { version: 0x10000 }), RangeError);
  });

  test('parseAlert: exactly two bytes, a known level', () => {
    assert.deepEqual(parseAlert(Buffer.from([1, 0])), { level: 1, description: 0 });
    assert.throws(() => parseAlert(Buffer.alloc(0)), (e: unknown) => e instanceof ParseError && e.code === 'truncated');
    assert.throws(() => parseAlert(Buffer.from([2])), (e: unknown) => e instanceof ParseError && e.code === 'truncated');
    assert.throws(() => parseAlert(Buffer.from([2, 40, 2, 40])), (e: unknown) => e instanceof ParseError && e.code === 'malformed');
    assert.throws(() => parseAlert(Buffer.from([3, 40])), (e: unknown) => e instanceof ParseError && e.code === 'malformed');
    assert.throws(() => parseAlert(Buffer.from([0, 40])), (e: unknown) => e instanceof ParseError && e.code === 'malformed');
  });

  test('AlertDescription values and names (RFC 8446 §6, RFC 5246 §7.2)', () => {
    const expected: Record<string, number> = {
      close_notify: 0, unexpected_message: 10, bad_record_mac: 20, record_overflow: 22, handshake_failure: 40,
      bad_certificate: 42, unsupported_certificate: 43, certificate_revoked: 44, certificate_expired: 45,
      certificate_unknown: 46, illegal_parameter: 47, unknown_ca: 48, access_denied: 49, decode_error: 50,
      decrypt_error: 51, protocol_version: 70, insufficient_security: 71, internal_error: 80,
      inappropriate_fallback: 86, user_canceled: 90, missing_extension: 109, unsupported_extension: 110,
      unrecognized_name: 112, bad_certificate_status_response: 113, unknown_psk_identity: 115,
      certificate_required: 116, no_application_protocol: 120,
    };
    for (const [name, code] of Object.entries(expected)) {
      assert.equal((AlertDescription as Record<string, number>)[name], code, name);
      assert.equal(alertName(code), name);
    }
    assert.equal(alertName(200), 'unknown(200)');
  });

  // OpenSSL names each alert it receives in its error ("SSL alert number N", reason code).
  const interop: [number, string][] = [
    [AlertDescription.handshake_failure, 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE'],
    [AlertDescription.certificate_revoked, 'ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED'],
    [AlertDescription.unknown_ca, 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA'],
    [AlertDescription.access_denied, 'ERR_SSL_TLSV1_ALERT_ACCESS_DENIED'],
    [AlertDescription.internal_error, 'ERR_SSL_TLSV1_ALERT_INTERNAL_ERROR'],
    [AlertDescription.certificate_required, 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED'],
  ];
  for (const [code, nodeCode] of interop) {
    test(`OpenSSL client understands buildAlert(${alertName(code)})`, async () => {
      const err = await clientErrorFor(buildAlert(code));
      assert.equal(err.code, nodeCode);
      assert.match(err.message, new RegExp(`SSL alert number ${code}\\b`));
    });
  }

  test('OpenSSL client (TLS 1.2 only) understands a TLS 1.0 record version alert', async () => {
    const err = await clientErrorFor(buildAlert(AlertDescription.certificate_revoked, { version: 0x0301 }), {
      maxVersion: 'TLSv1.2',
    });
    assert.equal(err.code, 'ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED');
  });
});
