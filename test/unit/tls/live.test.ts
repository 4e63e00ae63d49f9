/**
 * The parsers against bytes produced by an independent implementation: Node's TLS (OpenSSL)
 * on loopback. A ClientHello is captured from `tls.connect` by a plain TCP server; it is then
 * replayed to a real `tls.createServer` over a plain TCP socket, whose first flight
 * (ServerHello, Certificate, CertificateRequest, HelloRetryRequest, alerts) is parsed.
 * Certificates come from a test PKI built with the openssl CLI.
 */
import 'reflect-metadata';
import { describe, test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { Name } from '@peculiar/x509';
import {
  AlertDescription,
  ContentType,
  ExtensionType,
  HandshakeReader,
  HandshakeType,
  RecordReader,
  parseAlert,
  parseCertificate,
  parseCertificateRequest,
  parseClientHello,
  parseServerHello,
  type HandshakeMessage,
  type TlsRecord,
} from '../../../internal/tls';
import { makePki, type LeafHandle, type Pki } from '../../support/pki';

const TIMEOUT_MS = 5000;

async function listen(server: net.Server | tls.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** The first TLS record a Node client sends (its ClientHello), as raw bytes. */
async function captureClientHello(opts: tls.ConnectionOptions): Promise<Buffer> {
  const server = net.createServer();
  const port = await listen(server);
  let client: tls.TLSSocket | undefined;
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no ClientHello within 5 s')), TIMEOUT_MS);
      server.once('connection', (sock) => {
        sock.on('error', () => {});
        let got = Buffer.alloc(0);
        sock.on('data', (d: Buffer) => {
          got = Buffer.concat([got, d]);
          // Completeness from the record header alone, independent of the code under test.
          if (got.length >= 5 && got.length >= 5 + got.readUInt16BE(3)) {
            clearTimeout(timer);
            sock.destroy();
            resolve(got.subarray(0, 5 + got.readUInt16BE(3)));
          }
        });
      });
      client = tls.connect({ host: '127.0.0.1', port, ...opts });
      client.on('error', () => {}); // the capturing server hangs up mid-handshake
    });
  } finally {
    client?.destroy();
    server.close();
  }
}

interface Flight {
  records: TlsRecord[];
  messages: HandshakeMessage[];
}

/**
 * Send `clientHello` to a real TLS server and collect what it answers, framing it as it
 * arrives, until `done` says so or the server closes.
 */
async function serverFlight(clientHello: Buffer, serverOpts: tls.TlsOptions, done: (f: Flight) => boolean): Promise<Flight> {
  const server = tls.createServer(serverOpts);
  server.on('tlsClientError', () => {});
  const port = await listen(server);
  const sock = net.connect(port, '127.0.0.1');
  try {
    return await new Promise<Flight>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('server flight incomplete after 5 s')), TIMEOUT_MS);
      const flight: Flight = { records: [], messages: [] };
      const rr = new RecordReader();
      const hr = new HandshakeReader();
      let ccs = false;
      const finish = () => {
        clearTimeout(timer);
        resolve(flight);
      };
      sock.on('error', () => {});
      sock.on('connect', () => sock.write(clientHello));
      sock.on('data', (d: Buffer) => {
        try {
          for (const r of rr.push(d)) {
            flight.records.push(r);
            if (r.type === ContentType.change_cipher_spec) ccs = true;
            if (r.type === ContentType.handshake && !ccs) flight.messages.push(...hr.push(r.fragment));
          }
        } catch (e) {
          reject(e);
        }
        if (done(flight)) finish();
      });
      sock.on('close', finish);
    });
  } finally {
    sock.destroy();
    server.close();
  }
}

const hasType = (t: number) => (f: Flight) => f.messages.some((m) => m.type === t);

function onlyMessage(f: Flight, type: number): HandshakeMessage {
  const ms = f.messages.filter((m) => m.type === type);
  assert.equal(ms.length, 1, `exactly one message of type ${type}`);
  return ms[0]!;
}

function messagesOf(recordBytes: Buffer): HandshakeMessage[] {
  const out: HandshakeMessage[] = [];
  const hr = new HandshakeReader();
  for (const r of new RecordReader().push(recordBytes)) out.push(...hr.push(r.fragment));
  return out;
}

describe('against Node/OpenSSL on loopback', () => {
  let pki: Pki;
  let leaf: LeafHandle;
  let serverOpts: tls.TlsOptions;
  let hello13: Buffer; // a default client: offers TLS 1.3 and 1.2, SNI, ALPN

  beforeAll(async () => {
    pki = makePki({ keyType: 'ec' });
    leaf = pki.issueLeaf('srv', { san: ['DNS:a.example'] });
    serverOpts = {
      key: fs.readFileSync(leaf.keyPath),
      cert: leaf.certPem + pki.intermediate.certPem,
    };
    hello13 = await captureClientHello({ servername: 'a.example', ALPNProtocols: ['h2', 'http/1.1'] });
  });
  afterAll(() => pki?.cleanup());

  test('ClientHello: SNI, ALPN, supported_versions as the client was configured', () => {
    const msgs = messagesOf(hello13);
    assert.equal(msgs.length, 1);
    assert.equal(msgs[0]!.type, HandshakeType.client_hello);
    const h = parseClientHello(msgs[0]!.body);
    assert.equal(h.legacyVersion, 0x0303);
    assert.equal(h.sni, 'a.example');
    assert.deepEqual(h.alpn, ['h2', 'http/1.1']);
    assert.deepEqual(h.supportedVersions, [0x0304, 0x0303]);
    assert.deepEqual(h.compressionMethods, [0]);
    for (const s of [0x1301, 0x1302, 0x1303]) assert.ok(h.cipherSuites.includes(s), `offers 0x${s.toString(16)}`);
    assert.equal(h.sessionId.length, 32, 'middlebox-compatibility session id (RFC 8446 Appendix D.4)');
    assert.ok(h.extensions.some((e) => e.type === ExtensionType.key_share));
  });

  test('ClientHello: same message whatever the chunking', () => {
    const whole = messagesOf(hello13)[0]!;
    const rr = new RecordReader();
    const hr = new HandshakeReader();
    const got: HandshakeMessage[] = [];
    for (let i = 0; i < hello13.length; i++) {
      for (const r of rr.push(hello13.subarray(i, i + 1))) {
        // and one handshake byte per push as well
        for (let j = 0; j < r.fragment.length; j++) got.push(...hr.push(r.fragment.subarray(j, j + 1)));
      }
    }
    assert.equal(got.length, 1);
    assert.deepEqual(Buffer.from(got[0]!.raw), Buffer.from(whole.raw));
  });

  test('ClientHello: a TLS 1.2-only client to an IP address has no SNI and no supported_versions', async () => {
    const h = parseClientHello(messagesOf(await captureClientHello({ maxVersion: 'TLSv1.2' }))[0]!.body);
    assert.equal(h.sni, null);
    assert.deepEqual(h.alpn, []);
    assert.deepEqual(h.supportedVersions, []);
    assert.ok(!h.cipherSuites.includes(0x1301));
  });

  test('TLS 1.2 flight: ServerHello, Certificate chain, CertificateRequest with CA names', async () => {
    const f = await serverFlight(
      hello13,
      { ...serverOpts, maxVersion: 'TLSv1.2', requestCert: true, ca: [pki.root.certPem], ALPNProtocols: ['http/1.1'] },
      hasType(HandshakeType.server_hello_done),
    );
    assert.deepEqual(
      f.messages.map((m) => m.type),
      [HandshakeType.server_hello, HandshakeType.certificate, HandshakeType.server_key_exchange,
        HandshakeType.certificate_request, HandshakeType.server_hello_done],
    );
    const client = parseClientHello(messagesOf(hello13)[0]!.body);
    const sh = parseServerHello(onlyMessage(f, HandshakeType.server_hello).body);
    assert.equal(sh.selectedVersion, 0x0303);
    assert.equal(sh.isHelloRetryRequest, false);
    assert.equal(sh.alpn, 'http/1.1');
    assert.ok(client.cipherSuites.includes(sh.cipherSuite));
    assert.equal(sh.legacyVersion, 0x0303);

    const cert = parseCertificate(onlyMessage(f, HandshakeType.certificate).body, sh.selectedVersion);
    assert.deepEqual(cert.certificates, [leaf.certDer, pki.intermediate.certDer], 'leaf first, then the intermediate');

    const req = parseCertificateRequest(onlyMessage(f, HandshakeType.certificate_request).body, sh.selectedVersion);
    assert.ok(req.certificateTypes!.includes(64), 'ecdsa_sign (RFC 8422 §5.5)');
    assert.ok(req.signatureAlgorithms.includes(0x0403), 'ecdsa_secp256r1_sha256');
    assert.equal(req.certificateAuthorities.length, 1);
    const dn = req.certificateAuthorities[0]!;
    assert.ok(pki.root.certDer.includes(dn), 'the DN is the root certificate’s own encoding');
    assert.equal(new Name(dn).toString(), 'O=ca-proxy test, CN=root');
  });

  test('TLS 1.3 ServerHello: supported_versions, echoed session id, then CCS and encrypted records', async () => {
    const f = await serverFlight(hello13, serverOpts, (fl) => fl.records.length >= 3);
    const client = parseClientHello(messagesOf(hello13)[0]!.body);
    const sh = parseServerHello(onlyMessage(f, HandshakeType.server_hello).body);
    assert.equal(sh.legacyVersion, 0x0303);
    assert.equal(sh.selectedVersion, 0x0304);
    assert.equal(sh.isHelloRetryRequest, false);
    assert.deepEqual(sh.sessionId, client.sessionId);
    assert.ok([0x1301, 0x1302, 0x1303].includes(sh.cipherSuite));
    assert.equal(sh.alpn, null, 'TLS 1.3 sends ALPN in EncryptedExtensions');
    assert.deepEqual(
      f.records.slice(0, 3).map((r) => r.type),
      [ContentType.handshake, ContentType.change_cipher_spec, ContentType.application_data],
    );
  });

  test('HelloRetryRequest: a server that only takes P-384', async () => {
    const f = await serverFlight(hello13, { ...serverOpts, ecdhCurve: 'P-384' }, hasType(HandshakeType.server_hello));
    const hrr = parseServerHello(onlyMessage(f, HandshakeType.server_hello).body);
    assert.equal(hrr.isHelloRetryRequest, true);
    assert.equal(hrr.selectedVersion, 0x0304);
    const ks = hrr.extensions.find((e) => e.type === ExtensionType.key_share)!;
    assert.deepEqual(ks.data, Buffer.from([0x00, 0x18]), 'key_share asks for secp384r1 (RFC 8446 §4.2.8)');
  });

  test('an OpenSSL alert parses: TLS 1.3-only server, TLS 1.2-only client', async () => {
    const hello12 = await captureClientHello({ maxVersion: 'TLSv1.2', servername: 'a.example' });
    const f = await serverFlight(hello12, { ...serverOpts, minVersion: 'TLSv1.3' }, (fl) => fl.records.length > 0);
    assert.equal(f.records[0]!.type, ContentType.alert);
    assert.deepEqual(parseAlert(f.records[0]!.fragment), { level: 2, description: AlertDescription.protocol_version });
  });
});
