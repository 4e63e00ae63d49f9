/**
 * Replay real captures (shared/testdata/captures) through RecordReader, HandshakeReader and the
 * parsers, and compare with what the manifest records from tshark and from an independent
 * record-layer walk: record counts and versions, handshake message types and lengths before
 * ChangeCipherSpec, coalescing, cipher suite, negotiated version, HRR, client certificates.
 */
import { describe, test } from '@jest/globals';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import {
  ContentType,
  HandshakeReader,
  HandshakeType,
  RecordReader,
  looksLikeTls,
  parseCertificate,
  parseCertificateRequest,
  parseClientHello,
  parseServerHello,
  versionName,
  type HandshakeMessage,
} from '../../../internal/tls';
import { pcapTcpStreams } from '../../support/pcap';
import { CAPTURES, captureSuite, haveCaptures, MESSAGE_NAMES as NAMES } from '../../support/captures';

/** tshark's version spelling ('TLS1.2', 'SSL3.0') for a ProtocolVersion. */
function tsharkVersion(v: number): string {
  return v === 0x0300 ? 'SSL3.0' : `TLS1.${(v & 0xff) - 1}`;
}

/** "addr:port" with the address in Node's canonical form (compressed IPv6). */
function canonicalEndpoint(ep: string): string {
  const i = ep.lastIndexOf(':');
  const addr = ep.slice(0, i);
  const family = addr.includes(':') ? 'ipv6' : 'ipv4';
  return `${new net.SocketAddress({ address: addr, family }).address}:${ep.slice(i + 1)}`;
}

interface DirectionFacts {
  records_parsed: number;
  record_versions_hex: string[];
  plaintext_handshake_messages: string[];
  messages_spanning_records: number;
  max_complete_messages_in_one_record: number;
  max_record_length: number;
  messages: HandshakeMessage[];
}

/**
 * Walk one direction as the manifest's own check did: every record counted, handshake
 * messages framed only up to this direction's first ChangeCipherSpec (after it they are
 * encrypted). The stream is pushed in uneven chunks to exercise reassembly as well.
 */
function walk(bytes: Buffer): DirectionFacts {
  const rr = new RecordReader();
  const hr = new HandshakeReader();
  const versions = new Set<string>();
  const facts: DirectionFacts = {
    records_parsed: 0,
    record_versions_hex: [],
    plaintext_handshake_messages: [],
    messages_spanning_records: 0,
    max_complete_messages_in_one_record: 0,
    max_record_length: 0,
    messages: [],
  };
  let ccsSeen = false;
  const sizes = [1, 7, 300, 1460, 3];
  let off = 0;
  for (let i = 0; off < bytes.length; i++) {
    const n = sizes[i % sizes.length]!;
    for (const rec of rr.push(bytes.subarray(off, off + n))) {
      facts.records_parsed++;
      versions.add(rec.version.toString(16).padStart(4, '0'));
      facts.max_record_length = Math.max(facts.max_record_length, rec.fragment.length);
      if (rec.type === ContentType.change_cipher_spec) ccsSeen = true;
      if (rec.type !== ContentType.handshake || ccsSeen) continue;
      const spanning = hr.buffered > 0;
      const msgs = hr.push(rec.fragment);
      const whole = msgs.length - (spanning && msgs.length > 0 ? 1 : 0);
      if (spanning && msgs.length > 0) facts.messages_spanning_records++;
      facts.max_complete_messages_in_one_record = Math.max(facts.max_complete_messages_in_one_record, whole);
      for (const m of msgs) {
        facts.messages.push(m);
        facts.plaintext_handshake_messages.push(`${NAMES[m.type] ?? m.type}(${m.body.length})`);
      }
    }
    off += n;
  }
  assert.equal(rr.buffered, 0, 'stream ends on a record boundary');
  facts.record_versions_hex = [...versions].sort();
  return facts;
}

interface ManifestFile {
  file: string;
  tshark_summary: { streams: Record<string, unknown>[] };
  record_layer_facts: { streams: (Record<string, unknown> & { direction: 'client' | 'server' })[] };
}

const manifest: { files: ManifestFile[] } = haveCaptures
  ? JSON.parse(fs.readFileSync(`${CAPTURES}/manifest.json`, 'utf8'))
  : { files: [] };

captureSuite.describe('replay of real captures', () => {
  test('the manifest lists a TLS 1.2 capture with a CertificateRequest', () => {
    assert.ok(manifest.files.some((f) => f.file === 'zeek_client-certificate.pcap'));
  });

  for (const entry of manifest.files) {
    test(entry.file, () => {
      const streams = pcapTcpStreams(fs.readFileSync(`${CAPTURES}/${entry.file}`));
      assert.equal(streams.length, 1);
      const stream = streams[0]!;
      const ts = entry.tshark_summary.streams[0] as {
        client: string;
        server_hello_version: string | null;
        negotiated_via_supported_versions: string | null;
        cipher_suite: string | null;
        flags: string[];
        client_certificate_list_lengths: number[];
      };
      assert.equal(canonicalEndpoint(stream.client), canonicalEndpoint(ts.client), 'client endpoint');

      const facts = entry.record_layer_facts.streams;
      const sslv2 = facts.find((f) => f.direction === 'client')!.sslv2_record_header;
      if (sslv2) {
        // Native SSLv2: not a TLS stream at all.
        assert.equal(looksLikeTls(stream.clientBytes), 'not_tls');
        assert.throws(() => new RecordReader().push(stream.clientBytes), { name: 'ParseError' });
        return;
      }
      assert.equal(looksLikeTls(stream.clientBytes), 'tls');

      const got = { client: walk(stream.clientBytes), server: walk(stream.serverBytes) };
      for (const expected of facts) {
        const g = got[expected.direction];
        const { messages: _m, ...gotFacts } = g;
        for (const k of Object.keys(gotFacts) as (keyof typeof gotFacts)[]) {
          assert.deepEqual(gotFacts[k], expected[k], `${expected.direction} ${k}`);
        }
      }

      // Parse every plaintext message the parsers cover.
      const ch = got.client.messages.find((m) => m.type === HandshakeType.client_hello)!;
      const hello = parseClientHello(ch.body);
      assert.ok(hello.cipherSuites.length > 0);

      const sh = got.server.messages.find((m) => m.type === HandshakeType.server_hello);
      if (!sh) {
        assert.equal(ts.server_hello_version, null);
        return;
      }
      const server = parseServerHello(sh.body);
      assert.equal(tsharkVersion(server.legacyVersion), ts.server_hello_version);
      const negotiated = ts.negotiated_via_supported_versions ?? ts.server_hello_version;
      assert.equal(tsharkVersion(server.selectedVersion), negotiated);
      assert.match(ts.cipher_suite!, new RegExp(`\\(0x${server.cipherSuite.toString(16).padStart(4, '0')}\\)$`));
      assert.equal(server.isHelloRetryRequest, entry.file === 'zeek_hrr.pcap');
      if (server.selectedVersion === 0x0304) {
        assert.ok(hello.supportedVersions.includes(0x0304), 'TLS 1.3 was offered in supported_versions');
        assert.deepEqual(server.sessionId, hello.sessionId, 'TLS 1.3 echoes legacy_session_id');
      }
      assert.notEqual(versionName(server.selectedVersion), 'unknown');

      for (const m of got.server.messages) {
        if (m.type === HandshakeType.certificate) {
          const cert = parseCertificate(m.body, server.selectedVersion);
          assert.ok(cert.certificates.length > 0, 'server sends a chain');
          for (const der of cert.certificates) assert.equal(der[0], 0x30, 'each certificate is a DER SEQUENCE');
        }
        if (m.type === HandshakeType.certificate_request) {
          assert.ok(ts.flags.includes('certificate_request'));
          const req = parseCertificateRequest(m.body, server.selectedVersion);
          assert.ok(req.certificateTypes!.length > 0);
          assert.ok(req.signatureAlgorithms.length > 0, 'TLS 1.2 lists signature algorithms');
        }
      }
      const clientCerts = got.client.messages
        .filter((m) => m.type === HandshakeType.certificate)
        .map((m) => parseCertificate(m.body, server.selectedVersion));
      assert.deepEqual(
        clientCerts.map((c) => c.certificates.reduce((n, der) => n + 3 + der.length, 0)),
        ts.client_certificate_list_lengths,
        'client certificate_list lengths',
      );
    });
  }
});
