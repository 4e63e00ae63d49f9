/**
 * The message parsers on hand-built bodies: every field, every rule that makes a body
 * malformed, and truncation at every byte. (live.test.ts checks them against OpenSSL's bytes.)
 */
import { describe, test } from '@jest/globals';
import assert from 'node:assert/strict';
import {
  ExtensionType,
  HELLO_RETRY_REQUEST_RANDOM,
  ParseError,
  parseCertificate,
  parseCertificateRequest,
  parseClientHello,
  parseServerHello,
  versionName,
} from '../../../internal/tls';
import { createHash } from 'node:crypto';

// --- a tiny TLS presentation-language builder -------------------------------------------------
type Part = Buffer | number[];
const cat = (...parts: Part[]): Buffer => Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))));
const u16 = (v: number): number[] => [v >> 8, v & 0xff];
const u24 = (v: number): number[] => [v >> 16, (v >> 8) & 0xff, v & 0xff];
/** opaque x<..> with a `lenBytes`-byte length prefix. */
function vec(lenBytes: 1 | 2 | 3, ...parts: Part[]): Buffer {
  const body = cat(...parts);
  const len = lenBytes === 1 ? [body.length] : lenBytes === 2 ? u16(body.length) : u24(body.length);
  return cat(len, body);
}
const ext = (type: number, data: Part): Buffer => cat(u16(type), vec(2, data));
const ascii = (s: string): Buffer => Buffer.from(s, 'latin1');
const sniExt = (...names: [number, Buffer][]) =>
  ext(ExtensionType.server_name, vec(2, ...names.map(([t, n]) => cat([t], vec(2, n)))));
const alpnExt = (...names: string[]) =>
  ext(ExtensionType.application_layer_protocol_negotiation, vec(2, ...names.map((n) => vec(1, ascii(n)))));

const random = Buffer.alloc(32, 0xab);

function clientHello(o: { sid?: Buffer; suites?: Buffer; comp?: Buffer; exts?: Buffer[] | null; trailer?: Buffer } = {}): Buffer {
  return cat(
    u16(0x0303),
    random,
    vec(1, o.sid ?? Buffer.alloc(32, 5)),
    o.suites ?? vec(2, u16(0x1301), u16(0xc02f)),
    o.comp ?? vec(1, [0]),
    o.exts === null ? [] : vec(2, ...(o.exts ?? [])),
    o.trailer ?? [],
  );
}

function serverHello(o: { version?: number; rnd?: Buffer; exts?: Buffer[] | null } = {}): Buffer {
  return cat(u16(o.version ?? 0x0303), o.rnd ?? random, vec(1, Buffer.alloc(32, 5)), u16(0x1301), [0],
    o.exts === null ? [] : vec(2, ...(o.exts ?? [])));
}

function isParseError(code?: ParseError['code']) {
  return (e: unknown) => e instanceof ParseError && (code === undefined || e.code === code);
}

/**
 * Every strict prefix of a valid body must be a ParseError, never another exception — except
 * `validAt`: the hello prefix that ends where the optional extensions block begins, which is
 * itself a valid hello without extensions.
 */
function assertPrefixesFail(body: Buffer, parse: (b: Buffer) => unknown, validAt = -1): void {
  for (let i = 0; i < body.length; i++) {
    if (i === validAt) {
      assert.deepEqual((parse(body.subarray(0, i)) as { extensions: unknown[] }).extensions, []);
      continue;
    }
    assert.throws(() => parse(body.subarray(0, i)), isParseError(), `prefix of ${i}/${body.length} bytes`);
  }
}

// --- ClientHello ----------------------------------------------------------------------------------
describe('parseClientHello', () => {
  const full = clientHello({
    exts: [
      sniExt([0, ascii('a.example')]),
      ext(ExtensionType.supported_versions, vec(1, u16(0x0304), u16(0x0303))),
      alpnExt('h2', 'http/1.1'),
      ext(0xfe0d, []), // an unknown, empty extension is kept as is
      ext(ExtensionType.pre_shared_key, [1, 2, 3]),
    ],
  });

  test('reads every field', () => {
    const h = parseClientHello(full);
    assert.equal(h.legacyVersion, 0x0303);
    assert.deepEqual(h.random, random);
    assert.deepEqual(h.sessionId, Buffer.alloc(32, 5));
    assert.deepEqual(h.cipherSuites, [0x1301, 0xc02f]);
    assert.deepEqual(h.compressionMethods, [0]);
    assert.deepEqual(h.extensions.map((e) => e.type), [0, 43, 16, 0xfe0d, 41]);
    assert.deepEqual(h.extensions[4]!.data, Buffer.from([1, 2, 3]));
    assert.equal(h.sni, 'a.example');
    assert.deepEqual(h.alpn, ['h2', 'http/1.1']);
    assert.deepEqual(h.supportedVersions, [0x0304, 0x0303]);
  });

  test('a hello without an extensions block (TLS ≤ 1.2) and with an empty one', () => {
    for (const exts of [null, []]) {
      const h = parseClientHello(clientHello({ exts, sid: Buffer.alloc(0) }));
      assert.deepEqual(h.extensions, []);
      assert.equal(h.sni, null);
      assert.deepEqual(h.alpn, []);
      assert.deepEqual(h.supportedVersions, []);
      assert.equal(h.sessionId.length, 0);
    }
  });

  test('SNI: other name types are skipped; host_name kept verbatim', () => {
    assert.equal(parseClientHello(clientHello({ exts: [sniExt([1, ascii('xx')], [0, ascii('Host.Example.')])] })).sni, 'Host.Example.');
    assert.equal(parseClientHello(clientHello({ exts: [sniExt([7, ascii('x')])] })).sni, null);
  });

  test('truncated at every byte is a ParseError', () => assertPrefixesFail(full, parseClientHello, 2 + 32 + 33 + 6 + 2));

  const malformed: [string, Buffer][] = [
    ['duplicate extension', clientHello({ exts: [alpnExt('h2'), ext(5, []), alpnExt('h2')] })],
    ['pre_shared_key not last', clientHello({ exts: [ext(ExtensionType.pre_shared_key, [0]), ext(5, [])] })],
    ['session_id of 33 bytes', clientHello({ sid: Buffer.alloc(33) })],
    ['odd cipher_suites', clientHello({ suites: vec(2, [0x13, 0x01, 0x13]) })],
    ['empty cipher_suites', clientHello({ suites: vec(2) })],
    ['empty compression_methods', clientHello({ comp: vec(1) })],
    ['trailing bytes', clientHello({ exts: [], trailer: Buffer.from([0]) })],
    ['empty SNI host_name', clientHello({ exts: [sniExt([0, Buffer.alloc(0)])] })],
    ['non-ASCII SNI', clientHello({ exts: [sniExt([0, Buffer.from('bücher.example', 'utf8')])] })],
    ['SNI with a NUL', clientHello({ exts: [sniExt([0, ascii('a.example\0.evil')])] })],
    ['SNI with a space', clientHello({ exts: [sniExt([0, ascii('a example')])] })],
    ['two SNI host_names', clientHello({ exts: [sniExt([0, ascii('a')], [0, ascii('b')])] })],
    ['empty ServerNameList', clientHello({ exts: [ext(0, vec(2))] })],
    ['SNI extension with bytes after the list', clientHello({ exts: [ext(0, cat(vec(2, [0], vec(2, ascii('a'))), [0]))] })],
    ['empty ALPN list', clientHello({ exts: [ext(16, vec(2))] })],
    ['empty ALPN name', clientHello({ exts: [ext(16, vec(2, vec(1)))] })],
    ['odd supported_versions', clientHello({ exts: [ext(43, vec(1, [3, 4, 3]))] })],
    ['empty supported_versions', clientHello({ exts: [ext(43, vec(1))] })],
  ];
  for (const [name, body] of malformed) {
    test(`malformed: ${name}`, () => assert.throws(() => parseClientHello(body), isParseError('malformed')));
  }

  test('inner vector longer than its outer vector is a ParseError', () => {
    // extensions block claims 4 bytes; the extension inside claims 10.
    const body = cat(u16(0x0303), random, vec(1), vec(2, u16(0x1301)), vec(1, [0]), vec(2, u16(0), u16(10)));
    assert.throws(() => parseClientHello(body), isParseError('truncated'));
    // SNI name longer than the server_name list.
    const sni = ext(0, cat(u16(4), [0], u16(9), ascii('a')));
    assert.throws(() => parseClientHello(clientHello({ exts: [sni] })), isParseError());
    // ALPN name longer than the protocol list.
    const alpn = ext(16, cat(u16(2), [5], ascii('h')));
    assert.throws(() => parseClientHello(clientHello({ exts: [alpn] })), isParseError());
  });
});

// --- ServerHello ----------------------------------------------------------------------------------
describe('parseServerHello', () => {
  test('TLS 1.2: no supported_versions, ALPN selected', () => {
    const s = parseServerHello(serverHello({ exts: [alpnExt('http/1.1'), ext(0xff01, [0])] }));
    assert.equal(s.legacyVersion, 0x0303);
    assert.equal(s.selectedVersion, 0x0303);
    assert.equal(s.cipherSuite, 0x1301);
    assert.equal(s.compressionMethod, 0);
    assert.equal(s.alpn, 'http/1.1');
    assert.equal(s.isHelloRetryRequest, false);
    assert.deepEqual(s.extensions.map((e) => e.type), [16, 0xff01]);
  });

  test('TLS 1.3: selectedVersion from supported_versions', () => {
    const s = parseServerHello(serverHello({ exts: [ext(43, u16(0x0304)), ext(51, [0, 29, 0, 1, 9])] }));
    assert.equal(s.legacyVersion, 0x0303);
    assert.equal(s.selectedVersion, 0x0304);
    assert.equal(s.alpn, null);
  });

  test('HelloRetryRequest: the random is SHA-256("HelloRetryRequest")', () => {
    assert.deepEqual(HELLO_RETRY_REQUEST_RANDOM, createHash('sha256').update('HelloRetryRequest').digest());
    const s = parseServerHello(serverHello({ rnd: HELLO_RETRY_REQUEST_RANDOM, exts: [ext(43, u16(0x0304))] }));
    assert.equal(s.isHelloRetryRequest, true);
  });

  test('SSLv3: no extensions block', () => {
    const s = parseServerHello(serverHello({ version: 0x0300, exts: null }));
    assert.equal(s.selectedVersion, 0x0300);
    assert.deepEqual(s.extensions, []);
  });

  test('truncated at every byte is a ParseError', () =>
    assertPrefixesFail(serverHello({ exts: [ext(43, u16(0x0304)), alpnExt('h2')] }), parseServerHello, 2 + 32 + 33 + 3));

  const malformed: [string, Buffer][] = [
    ['two ALPN names', serverHello({ exts: [alpnExt('h2', 'http/1.1')] })],
    ['supported_versions of 3 bytes', serverHello({ exts: [ext(43, [3, 4, 0])] })],
    ['supported_versions as a list', serverHello({ exts: [ext(43, vec(1, u16(0x0304)))] })],
    ['duplicate extension', serverHello({ exts: [ext(43, u16(0x0304)), ext(43, u16(0x0304))] })],
    ['trailing bytes', cat(serverHello({ exts: [] }), [1])],
  ];
  for (const [name, body] of malformed) {
    test(`malformed: ${name}`, () => assert.throws(() => parseServerHello(body), isParseError('malformed')));
  }
});

// --- Certificate ----------------------------------------------------------------------------------
describe('parseCertificate', () => {
  const leaf = Buffer.from([0x30, 0x03, 1, 2, 3]);
  const ca = Buffer.from([0x30, 0x01, 9]);

  test('TLS 1.2 form, leaf first', () => {
    const body = vec(3, vec(3, leaf), vec(3, ca));
    for (const v of [0x0300, 0x0301, 0x0302, 0x0303]) {
      const c = parseCertificate(body, v);
      assert.deepEqual(c.certificates, [leaf, ca]);
      assert.equal(c.certificateRequestContext, undefined);
    }
  });

  test('an empty list is valid in both forms (client without a certificate)', () => {
    assert.deepEqual(parseCertificate(Buffer.from([0, 0, 0]), 0x0303).certificates, []);
    const c = parseCertificate(Buffer.from([0, 0, 0, 0]), 0x0304);
    assert.deepEqual(c.certificates, []);
    assert.deepEqual(c.certificateRequestContext, Buffer.alloc(0));
  });

  test('TLS 1.3 form: context and per-entry extensions', () => {
    const body = cat(vec(1, [7, 7]), vec(3, vec(3, leaf), vec(2, ext(5, [1, 2])), vec(3, ca), vec(2)));
    const c = parseCertificate(body, 0x0304);
    assert.deepEqual(c.certificates, [leaf, ca]);
    assert.deepEqual(c.certificateRequestContext, Buffer.from([7, 7]));
    assert.deepEqual(c.entryExtensions!.map((es) => es.map((e) => e.type)), [[5], []]);
    assertPrefixesFail(body, (b) => parseCertificate(b, 0x0304));
  });

  test('truncated at every byte is a ParseError', () =>
    assertPrefixesFail(vec(3, vec(3, leaf), vec(3, ca)), (b) => parseCertificate(b, 0x0303)));

  test('malformed: empty ASN.1Cert, trailing bytes, inner length over outer, wrong form', () => {
    assert.throws(() => parseCertificate(vec(3, vec(3)), 0x0303), isParseError('malformed'));
    assert.throws(() => parseCertificate(cat(vec(1), vec(3, vec(3), vec(2))), 0x0304), isParseError('malformed'));
    assert.throws(() => parseCertificate(cat(vec(3, vec(3, leaf)), [0]), 0x0303), isParseError('malformed'));
    assert.throws(() => parseCertificate(cat(u24(6), u24(100), leaf.subarray(0, 3)), 0x0303), isParseError('truncated'));
    // A TLS 1.3 body read as TLS 1.2 (and the other way) does not parse.
    const t13 = cat(vec(1), vec(3, vec(3, leaf), vec(2)));
    assert.throws(() => parseCertificate(t13, 0x0303), isParseError());
    assert.throws(() => parseCertificate(vec(3, vec(3, leaf)), 0x0304), isParseError());
  });
});

// --- CertificateRequest -------------------------------------------------------------------------
describe('parseCertificateRequest', () => {
  const dn1 = Buffer.from('300f310d300b06035504030c0474657374', 'hex'); // CN=test
  const dn2 = Buffer.from([0x30, 0x00]);

  test('TLS 1.2: types, signature algorithms, CA names', () => {
    const body = cat(vec(1, [1, 64]), vec(2, u16(0x0403), u16(0x0804)), vec(2, vec(2, dn1), vec(2, dn2)));
    const r = parseCertificateRequest(body, 0x0303);
    assert.deepEqual(r.certificateTypes, [1, 64]);
    assert.deepEqual(r.signatureAlgorithms, [0x0403, 0x0804]);
    assert.deepEqual(r.certificateAuthorities, [dn1, dn2]);
    assertPrefixesFail(body, (b) => parseCertificateRequest(b, 0x0303));
  });

  test('TLS 1.0/1.1 and SSLv3: no signature algorithms field', () => {
    const body = cat(vec(1, [1]), vec(2, vec(2, dn1)));
    for (const v of [0x0300, 0x0301, 0x0302]) {
      const r = parseCertificateRequest(body, v);
      assert.deepEqual(r.signatureAlgorithms, []);
      assert.deepEqual(r.certificateAuthorities, [dn1]);
    }
    assert.deepEqual(parseCertificateRequest(cat(vec(1, [1]), vec(2)), 0x0301).certificateAuthorities, []);
  });

  test('TLS 1.3: context and extensions', () => {
    const body = cat(vec(1, [1, 2, 3]), vec(2, ext(13, vec(2, u16(0x0807), u16(0x0403))), ext(47, vec(2, vec(2, dn1)))));
    const r = parseCertificateRequest(body, 0x0304);
    assert.equal(r.certificateTypes, undefined);
    assert.deepEqual(r.signatureAlgorithms, [0x0807, 0x0403]);
    assert.deepEqual(r.certificateAuthorities, [dn1]);
    assert.deepEqual(r.certificateRequestContext, Buffer.from([1, 2, 3]));
    assert.deepEqual(r.extensions!.map((e) => e.type), [13, 47]);
    assertPrefixesFail(body, (b) => parseCertificateRequest(b, 0x0304));
    const noCas = parseCertificateRequest(cat(vec(1), vec(2, ext(13, vec(2, u16(0x0403))))), 0x0304);
    assert.deepEqual(noCas.certificateAuthorities, []);
  });

  const malformed: [string, Buffer, number][] = [
    ['1.2: empty certificate_types', cat(vec(1), vec(2, u16(0x0403)), vec(2)), 0x0303],
    ['1.2: odd signature algorithms', cat(vec(1, [1]), vec(2, [4, 3, 8]), vec(2)), 0x0303],
    ['1.2: empty signature algorithms', cat(vec(1, [1]), vec(2), vec(2)), 0x0303],
    ['1.2: empty DistinguishedName', cat(vec(1, [1]), vec(2, u16(0x0403)), vec(2, vec(2))), 0x0303],
    ['1.2: trailing bytes', cat(vec(1, [1]), vec(2, u16(0x0403)), vec(2), [0]), 0x0303],
    ['1.3: no signature_algorithms', cat(vec(1), vec(2, ext(47, vec(2, vec(2, dn1))))), 0x0304],
    ['1.3: empty certificate_authorities', cat(vec(1), vec(2, ext(13, vec(2, u16(0x0403))), ext(47, vec(2)))), 0x0304],
    ['1.3: duplicate extension', cat(vec(1), vec(2, ext(13, vec(2, u16(0x0403))), ext(13, vec(2, u16(0x0403))))), 0x0304],
    ['1.3: signature_algorithms with trailing bytes', cat(vec(1), vec(2, ext(13, cat(vec(2, u16(0x0403)), [0])))), 0x0304],
  ];
  for (const [name, body, v] of malformed) {
    test(`malformed: ${name}`, () => assert.throws(() => parseCertificateRequest(body, v), isParseError('malformed')));
  }
});

test('versionName uses the names of Node getProtocol()', () => {
  assert.deepEqual(
    [0x0300, 0x0301, 0x0302, 0x0303, 0x0304, 0x0200, 0x7f1c].map(versionName),
    ['SSLv3', 'TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3', 'unknown', 'unknown'],
  );
});
