/**
 * TLS handshake layer: framing handshake messages out of handshake-record fragments, and
 * pure parsers for the messages ca-proxy must read in the clear — ClientHello, ServerHello,
 * Certificate and CertificateRequest (RFC 8446 §4, RFC 5246 §7.4).
 *
 *   struct { HandshakeType msg_type; uint24 length; opaque body[length]; } Handshake;
 *
 * Every parser reads through BoundedReader and throws only ParseError.
 */
import { BoundedReader, ParseError } from '../bytes/reader';
import { Framer } from './framer';

/** HandshakeType values (RFC 8446 §4; RFC 5246 §7.4). */
export const HandshakeType = {
  hello_request: 0,
  client_hello: 1,
  server_hello: 2,
  new_session_ticket: 4,
  end_of_early_data: 5,
  encrypted_extensions: 8,
  certificate: 11,
  server_key_exchange: 12,
  certificate_request: 13,
  server_hello_done: 14,
  certificate_verify: 15,
  client_key_exchange: 16,
  finished: 20,
  certificate_status: 22,
  key_update: 24,
  message_hash: 254,
} as const;

const HANDSHAKE_TYPE_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(HandshakeType).map(([k, v]) => [v, k]),
);

/** The RFC name of a handshake type ('client_hello'), or 'unknown(N)'. */
export function handshakeTypeName(type: number): string {
  return HANDSHAKE_TYPE_NAMES[type] ?? `unknown(${type})`;
}

/** ExtensionType values that the parsers here read (RFC 8446 §4.2, RFC 6066, RFC 7301). */
export const ExtensionType = {
  server_name: 0,
  supported_groups: 10,
  signature_algorithms: 13,
  application_layer_protocol_negotiation: 16,
  pre_shared_key: 41,
  supported_versions: 43,
  certificate_authorities: 47,
  signature_algorithms_cert: 50,
  key_share: 51,
} as const;

/** ProtocolVersion values. */
export const ProtocolVersion = {
  SSLv3: 0x0300,
  TLSv1: 0x0301,
  TLSv1_1: 0x0302,
  TLSv1_2: 0x0303,
  TLSv1_3: 0x0304,
} as const;

/**
 * The name Node's `TLSSocket.getProtocol()` uses for a ProtocolVersion: 'SSLv3', 'TLSv1',
 * 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'; 'unknown' otherwise (as Node says for versions it lacks).
 */
export function versionName(v: number): string {
  switch (v) {
    case 0x0300:
      return 'SSLv3';
    case 0x0301:
      return 'TLSv1';
    case 0x0302:
      return 'TLSv1.1';
    case 0x0303:
      return 'TLSv1.2';
    case 0x0304:
      return 'TLSv1.3';
    default:
      return 'unknown';
  }
}

/** The ProtocolVersion of a name `versionName` returns ('TLSv1.2' → 0x0303); 0 for an unknown name. */
export function versionNumber(name: string): number {
  for (const v of [0x0300, 0x0301, 0x0302, 0x0303, 0x0304]) if (versionName(v) === name) return v;
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------------

/** Bytes in a handshake message header: msg_type(1) + uint24 length. */
export const HANDSHAKE_HEADER_BYTES = 4;

/** Default largest handshake message body accepted by HandshakeReader: 256 KiB. */
export const DEFAULT_MAX_HANDSHAKE_MESSAGE_BYTES = 262144;

/** One handshake message. Buffers are views (no copy) when the message lay in one fragment. */
export interface HandshakeMessage {
  /** HandshakeType. */
  type: number;
  /** The message body (`length` bytes, header excluded). */
  body: Buffer;
  /** Header + body, as received (what the transcript hash covers). */
  raw: Buffer;
}

export interface HandshakeReaderOptions {
  /** Largest accepted message body, in bytes (default 262144). Checked on the 4-byte header. */
  maxMessageBytes?: number;
}

/**
 * Incremental handshake message framer for one direction, fed with the fragments of
 * plaintext handshake records in order (RFC 5246 §6.2.1, RFC 8446 §5.1: a message may span
 * records, and a record may carry several messages).
 *
 * Messages wholly inside a fragment are returned as views; a message spanning fragments is
 * copied once, when complete. A message length above `maxMessageBytes` is rejected as soon
 * as its header is in (ParseError 'too_large'), before any of its body is buffered.
 * After a ParseError every later `push()` throws the same error.
 */
export class HandshakeReader {
  readonly maxMessageBytes: number;
  private readonly framer: Framer;

  constructor(opts: HandshakeReaderOptions = {}) {
    const max = opts.maxMessageBytes ?? DEFAULT_MAX_HANDSHAKE_MESSAGE_BYTES;
    if (!Number.isInteger(max) || max < 0 || max > 0xffffff) {
      throw new RangeError(`maxMessageBytes must be an integer in 0..2^24-1, got ${max}`);
    }
    this.maxMessageBytes = max;
    this.framer = new Framer(HANDSHAKE_HEADER_BYTES, (buf, off) => {
      const len = (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!;
      if (len > max) throw new ParseError('too_large', `handshake ${handshakeTypeName(buf[off]!)}: length ${len} exceeds ${max}`);
      return len;
    });
  }

  /**
   * Bytes held for a message that is not yet complete. Non-zero at a ChangeCipherSpec or key
   * change means a message spans a key change, which RFC 8446 §5.1 forbids.
   */
  get buffered(): number {
    return this.framer.buffered;
  }

  /**
   * Feed the next handshake-record fragment.
   * @returns messages completed by this fragment, in order (possibly none)
   * @throws ParseError 'too_large' when a header announces more than maxMessageBytes
   */
  push(fragment: Buffer): HandshakeMessage[] {
    return this.framer.push(fragment).map(toMessage);
  }
}

function toMessage(raw: Buffer): HandshakeMessage {
  return { type: raw[0]!, body: raw.subarray(HANDSHAKE_HEADER_BYTES), raw };
}

// ---------------------------------------------------------------------------------------------
// Extensions (shared by the hello parsers)
// ---------------------------------------------------------------------------------------------

/** One extension as it appeared: `struct { ExtensionType extension_type; opaque extension_data<0..2^16-1>; }`. */
export interface Extension {
  type: number;
  /** extension_data (a view into the message body). */
  data: Buffer;
}

/**
 * Read `Extension extensions<0..2^16-1>` from `r` (the vector's length prefix included).
 * @throws ParseError 'malformed' on a duplicate extension type (RFC 8446 §4.2)
 */
function readExtensions(r: BoundedReader, what: string): Extension[] {
  const list = r.vector(2, `${what} extensions`);
  const out: Extension[] = [];
  const seen = new Set<number>();
  while (!list.atEnd) {
    const type = list.u16(`${what} extension type`);
    const data = list.vector(2, `${what} extension data`);
    if (seen.has(type)) throw new ParseError('malformed', `${what}: duplicate extension ${type}`);
    seen.add(type);
    out.push({ type, data: data.bytes(data.remaining) });
  }
  return out;
}

function findExtension(exts: Extension[], type: number): Extension | undefined {
  for (const e of exts) if (e.type === type) return e;
  return undefined;
}

/** Read the 32-byte Random and `opaque legacy_session_id<0..32>`. */
function readRandomAndSessionId(r: BoundedReader, what: string): { random: Buffer; sessionId: Buffer } {
  const random = r.bytes(32, `${what} random`);
  const sid = r.vector(1, `${what} session_id`);
  if (sid.remaining > 32) throw new ParseError('malformed', `${what}: session_id of ${sid.remaining} bytes (max 32)`);
  return { random, sessionId: sid.bytes(sid.remaining) };
}

/**
 * server_name extension_data (RFC 6066 §3): `ServerName server_name_list<1..2^16-1>`, each
 * `NameType name_type; opaque name<1..2^16-1>`. Returns the host_name (type 0), or null.
 * Other name types are skipped (they share the layout in practice, as OpenSSL and Go assume).
 * The name must be non-empty printable ASCII (0x21..0x7E); it is returned verbatim.
 */
function parseServerName(data: Buffer): string | null {
  const r = new BoundedReader(data);
  const list = r.vector(2, 'server_name list');
  r.expectEnd('server_name extension');
  if (list.atEnd) throw new ParseError('malformed', 'server_name: empty ServerNameList');
  let host: string | null = null;
  while (!list.atEnd) {
    const nameType = list.u8('server_name name_type');
    const name = list.vector(2, 'server_name name');
    if (nameType !== 0) continue;
    if (host !== null) throw new ParseError('malformed', 'server_name: more than one host_name (RFC 6066 §3)');
    if (name.remaining === 0) throw new ParseError('malformed', 'server_name: empty host_name');
    const bytes = name.bytes(name.remaining);
    for (let i = 0; i < bytes.length; i++) {
      const c = bytes[i]!;
      if (c < 0x21 || c > 0x7e) {
        throw new ParseError('malformed', `server_name: host_name byte 0x${c.toString(16)} is not printable ASCII`);
      }
    }
    host = bytes.toString('latin1');
  }
  return host;
}

/**
 * ALPN extension_data (RFC 7301 §3.1): `ProtocolName protocol_name_list<2..2^16-1>`, each
 * `opaque ProtocolName<1..2^8-1>`. Names are decoded as latin1 so that any byte string
 * round-trips (registered names are ASCII).
 */
function parseAlpnList(data: Buffer): string[] {
  const r = new BoundedReader(data);
  const list = r.vector(2, 'ALPN protocol_name_list');
  r.expectEnd('ALPN extension');
  if (list.atEnd) throw new ParseError('malformed', 'ALPN: empty protocol_name_list');
  const out: string[] = [];
  while (!list.atEnd) {
    const name = list.vector(1, 'ALPN ProtocolName');
    if (name.remaining === 0) throw new ParseError('malformed', 'ALPN: empty ProtocolName');
    out.push(name.bytes(name.remaining).toString('latin1'));
  }
  return out;
}

/** The one protocol a server selects with ALPN (RFC 7301 §3.1), or null when it sent none. */
function selectedAlpn(extensions: Extension[], what: string): string | null {
  const ext = findExtension(extensions, ExtensionType.application_layer_protocol_negotiation);
  if (!ext) return null;
  const names = parseAlpnList(ext.data);
  if (names.length !== 1) throw new ParseError('malformed', `${what} ALPN: ${names.length} names, expected 1`);
  return names[0]!;
}

/** `SignatureScheme supported_signature_algorithms<2..2^16-2>` (RFC 8446 §4.2.3, RFC 5246 §7.4.1.4.1). */
function readSignatureSchemes(r: BoundedReader, what: string): number[] {
  const list = r.vector(2, what);
  if (list.remaining === 0 || list.remaining % 2 !== 0) {
    throw new ParseError('malformed', `${what}: length ${list.remaining} is not a non-zero even number`);
  }
  const out: number[] = [];
  while (!list.atEnd) out.push(list.u16(what));
  return out;
}

/** `DistinguishedName authorities<0..2^16-1>` with `opaque DistinguishedName<1..2^16-1>` (DER Names). */
function readDistinguishedNames(r: BoundedReader, what: string): Buffer[] {
  const list = r.vector(2, what);
  const out: Buffer[] = [];
  while (!list.atEnd) {
    const dn = list.vector(2, `${what} DistinguishedName`);
    if (dn.remaining === 0) throw new ParseError('malformed', `${what}: empty DistinguishedName`);
    out.push(dn.bytes(dn.remaining));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// ClientHello
// ---------------------------------------------------------------------------------------------

/** A parsed ClientHello (RFC 8446 §4.1.2; RFC 5246 §7.4.1.2). Buffers are views into the body. */
export interface ClientHello {
  legacyVersion: number;
  random: Buffer;
  sessionId: Buffer;
  cipherSuites: number[];
  compressionMethods: number[];
  /** In wire order; empty when the hello has no extensions block (allowed before TLS 1.3). */
  extensions: Extension[];
  /** host_name from server_name (RFC 6066 §3), or null when absent. */
  sni: string | null;
  /** ALPN protocol names offered (RFC 7301), in preference order; [] when absent. */
  alpn: string[];
  /** supported_versions (RFC 8446 §4.2.1), in preference order; [] when absent. */
  supportedVersions: number[];
}

/**
 * Parse a ClientHello body.
 * @throws ParseError 'truncated' or 'malformed' (bad vector lengths, trailing bytes, duplicate
 *         extensions, pre_shared_key not last (RFC 8446 §4.2.11), bad SNI/ALPN/supported_versions)
 */
export function parseClientHello(body: Buffer): ClientHello {
  const r = new BoundedReader(body);
  const legacyVersion = r.u16('ClientHello legacy_version');
  const { random, sessionId } = readRandomAndSessionId(r, 'ClientHello');

  const cs = r.vector(2, 'ClientHello cipher_suites');
  if (cs.remaining === 0 || cs.remaining % 2 !== 0) {
    throw new ParseError('malformed', `ClientHello: cipher_suites length ${cs.remaining} is not a non-zero even number`);
  }
  const cipherSuites: number[] = [];
  while (!cs.atEnd) cipherSuites.push(cs.u16('cipher suite'));

  const cm = r.vector(1, 'ClientHello compression_methods');
  if (cm.remaining === 0) throw new ParseError('malformed', 'ClientHello: empty compression_methods');
  const compressionMethods: number[] = [];
  while (!cm.atEnd) compressionMethods.push(cm.u8());

  const extensions = r.atEnd ? [] : readExtensions(r, 'ClientHello');
  r.expectEnd('ClientHello');

  const psk = extensions.findIndex((e) => e.type === ExtensionType.pre_shared_key);
  if (psk >= 0 && psk !== extensions.length - 1) {
    throw new ParseError('malformed', 'ClientHello: pre_shared_key is not the last extension');
  }

  const sniExt = findExtension(extensions, ExtensionType.server_name);
  const alpnExt = findExtension(extensions, ExtensionType.application_layer_protocol_negotiation);
  const svExt = findExtension(extensions, ExtensionType.supported_versions);

  let supportedVersions: number[] = [];
  if (svExt) {
    // ProtocolVersion versions<2..254>
    const sr = new BoundedReader(svExt.data);
    const list = sr.vector(1, 'supported_versions');
    sr.expectEnd('supported_versions extension');
    if (list.remaining === 0 || list.remaining % 2 !== 0) {
      throw new ParseError('malformed', `supported_versions: length ${list.remaining} is not a non-zero even number`);
    }
    while (!list.atEnd) supportedVersions.push(list.u16('supported version'));
  }

  return {
    legacyVersion,
    random,
    sessionId,
    cipherSuites,
    compressionMethods,
    extensions,
    sni: sniExt ? parseServerName(sniExt.data) : null,
    alpn: alpnExt ? parseAlpnList(alpnExt.data) : [],
    supportedVersions,
  };
}

// ---------------------------------------------------------------------------------------------
// ServerHello
// ---------------------------------------------------------------------------------------------

/** The ServerHello.random of a HelloRetryRequest: SHA-256("HelloRetryRequest") (RFC 8446 §4.1.3). */
export const HELLO_RETRY_REQUEST_RANDOM = Buffer.from(
  'cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c',
  'hex',
);

/** A parsed ServerHello (RFC 8446 §4.1.3; RFC 5246 §7.4.1.3). */
export interface ServerHello {
  legacyVersion: number;
  random: Buffer;
  sessionId: Buffer;
  cipherSuite: number;
  compressionMethod: number;
  extensions: Extension[];
  /** supported_versions.selected_version when present, else legacyVersion. */
  selectedVersion: number;
  /** The random is the special HelloRetryRequest value (RFC 8446 §4.1.3). */
  isHelloRetryRequest: boolean;
  /** The single ALPN protocol selected (RFC 7301 §3.1), or null. */
  alpn: string | null;
}

/**
 * Parse a ServerHello body (also a HelloRetryRequest, which shares its layout).
 * @throws ParseError 'truncated' or 'malformed' (bad lengths, trailing bytes, duplicate
 *         extensions, supported_versions not exactly one version, ALPN not exactly one name)
 */
export function parseServerHello(body: Buffer): ServerHello {
  const r = new BoundedReader(body);
  const legacyVersion = r.u16('ServerHello legacy_version');
  const { random, sessionId } = readRandomAndSessionId(r, 'ServerHello');
  const cipherSuite = r.u16('ServerHello cipher_suite');
  const compressionMethod = r.u8('ServerHello compression_method');
  const extensions = r.atEnd ? [] : readExtensions(r, 'ServerHello');
  r.expectEnd('ServerHello');

  let selectedVersion = legacyVersion;
  const sv = findExtension(extensions, ExtensionType.supported_versions);
  if (sv) {
    if (sv.data.length !== 2) {
      throw new ParseError('malformed', `ServerHello supported_versions: ${sv.data.length} bytes, expected 2`);
    }
    selectedVersion = sv.data.readUInt16BE(0);
  }

  const alpn = selectedAlpn(extensions, 'ServerHello');

  return {
    legacyVersion,
    random,
    sessionId,
    cipherSuite,
    compressionMethod,
    extensions,
    selectedVersion,
    isHelloRetryRequest: random.equals(HELLO_RETRY_REQUEST_RANDOM),
    alpn,
  };
}

// ---------------------------------------------------------------------------------------------
// EncryptedExtensions
// ---------------------------------------------------------------------------------------------

/** A parsed EncryptedExtensions (RFC 8446 §4.3.1): in TLS 1.3 the server's ALPN choice is here. */
export interface EncryptedExtensions {
  extensions: Extension[];
  /** The single ALPN protocol selected (RFC 7301 §3.1), or null. */
  alpn: string | null;
}

/**
 * Parse an EncryptedExtensions body: `Extension extensions<0..2^16-1>`.
 * @throws ParseError 'truncated' or 'malformed' (bad lengths, duplicates, ALPN not exactly one name)
 */
export function parseEncryptedExtensions(body: Buffer): EncryptedExtensions {
  const r = new BoundedReader(body);
  const extensions = readExtensions(r, 'EncryptedExtensions');
  r.expectEnd('EncryptedExtensions');
  return { extensions, alpn: selectedAlpn(extensions, 'EncryptedExtensions') };
}

// ---------------------------------------------------------------------------------------------
// Certificate
// ---------------------------------------------------------------------------------------------

/** A parsed Certificate message. */
export interface CertificateMessage {
  /** DER certificates in the order sent: the end-entity first (RFC 8446 §4.4.2, RFC 5246 §7.4.2). */
  certificates: Buffer[];
  /** TLS 1.3 only: certificate_request_context (empty for a server's Certificate). */
  certificateRequestContext?: Buffer;
  /** TLS 1.3 only: each CertificateEntry's extensions, parallel to `certificates`. */
  entryExtensions?: Extension[][];
}

/**
 * Parse a Certificate body for the negotiated `version`.
 *
 * TLS ≤ 1.2 (and SSLv3), RFC 5246 §7.4.2: `ASN.1Cert certificate_list<0..2^24-1>`, each
 * `opaque ASN.1Cert<1..2^24-1>`. TLS 1.3, RFC 8446 §4.4.2: `opaque
 * certificate_request_context<0..2^8-1>; CertificateEntry certificate_list<0..2^24-1>` with
 * `opaque cert_data<1..2^24-1>; Extension extensions<0..2^16-1>` (X.509 entries only; raw
 * public keys are not negotiated by ca-proxy). An empty list is valid (a client without a
 * certificate). The DER itself is not parsed here.
 * @throws ParseError 'truncated' or 'malformed'
 */
export function parseCertificate(body: Buffer, version: number): CertificateMessage {
  const r = new BoundedReader(body);
  const certificates: Buffer[] = [];
  if (version >= ProtocolVersion.TLSv1_3) {
    const ctx = r.vector(1, 'Certificate certificate_request_context');
    const certificateRequestContext = ctx.bytes(ctx.remaining);
    const list = r.vector(3, 'Certificate certificate_list');
    r.expectEnd('Certificate');
    const entryExtensions: Extension[][] = [];
    while (!list.atEnd) {
      const cert = list.vector(3, 'CertificateEntry cert_data');
      if (cert.remaining === 0) throw new ParseError('malformed', 'CertificateEntry: empty cert_data');
      certificates.push(cert.bytes(cert.remaining));
      entryExtensions.push(readExtensions(list, 'CertificateEntry'));
    }
    return { certificates, certificateRequestContext, entryExtensions };
  }
  const list = r.vector(3, 'Certificate certificate_list');
  r.expectEnd('Certificate');
  while (!list.atEnd) {
    const cert = list.vector(3, 'ASN.1Cert');
    if (cert.remaining === 0) throw new ParseError('malformed', 'Certificate: empty ASN.1Cert');
    certificates.push(cert.bytes(cert.remaining));
  }
  return { certificates };
}

// ---------------------------------------------------------------------------------------------
// CertificateRequest
// ---------------------------------------------------------------------------------------------

/** A parsed CertificateRequest. */
export interface CertificateRequest {
  /** TLS ≤ 1.2 only: ClientCertificateType list (RFC 5246 §7.4.4). */
  certificateTypes?: number[];
  /** SignatureSchemes the server accepts; [] before TLS 1.2, which had no such field. */
  signatureAlgorithms: number[];
  /** DER-encoded X.501 Names of acceptable CAs, in the order sent; [] when none. */
  certificateAuthorities: Buffer[];
  /** TLS 1.3 only. */
  certificateRequestContext?: Buffer;
  /** TLS 1.3 only: all extensions, in wire order. */
  extensions?: Extension[];
}

/**
 * Parse a CertificateRequest body for the negotiated `version`.
 *
 * TLS 1.2, RFC 5246 §7.4.4: `ClientCertificateType certificate_types<1..2^8-1>;
 * SignatureAndHashAlgorithm supported_signature_algorithms<2..2^16-2>; DistinguishedName
 * certificate_authorities<0..2^16-1>`. TLS 1.0/1.1 and SSLv3 (RFC 4346 §7.4.4) lack the
 * signature algorithms. TLS 1.3, RFC 8446 §4.3.2: `opaque certificate_request_context<0..2^8-1>;
 * Extension extensions<2..2^16-1>`, where signature_algorithms is required and
 * certificate_authorities (§4.2.4) optional.
 * @throws ParseError 'truncated' or 'malformed' (including a TLS 1.3 request without
 *         signature_algorithms, and duplicate extensions)
 */
export function parseCertificateRequest(body: Buffer, version: number): CertificateRequest {
  const r = new BoundedReader(body);
  if (version >= ProtocolVersion.TLSv1_3) {
    const ctx = r.vector(1, 'CertificateRequest certificate_request_context');
    const certificateRequestContext = ctx.bytes(ctx.remaining);
    const extensions = readExtensions(r, 'CertificateRequest');
    r.expectEnd('CertificateRequest');
    const sa = findExtension(extensions, ExtensionType.signature_algorithms);
    if (!sa) throw new ParseError('malformed', 'CertificateRequest: no signature_algorithms extension (RFC 8446 §4.3.2)');
    const sar = new BoundedReader(sa.data);
    const signatureAlgorithms = readSignatureSchemes(sar, 'signature_algorithms');
    sar.expectEnd('signature_algorithms extension');
    let certificateAuthorities: Buffer[] = [];
    const ca = findExtension(extensions, ExtensionType.certificate_authorities);
    if (ca) {
      const car = new BoundedReader(ca.data);
      certificateAuthorities = readDistinguishedNames(car, 'certificate_authorities');
      car.expectEnd('certificate_authorities extension');
      if (certificateAuthorities.length === 0) {
        throw new ParseError('malformed', 'certificate_authorities: empty list (RFC 8446 §4.2.4 requires at least one)');
      }
    }
    return { signatureAlgorithms, certificateAuthorities, certificateRequestContext, extensions };
  }

  const ct = r.vector(1, 'CertificateRequest certificate_types');
  if (ct.remaining === 0) throw new ParseError('malformed', 'CertificateRequest: empty certificate_types');
  const certificateTypes: number[] = [];
  while (!ct.atEnd) certificateTypes.push(ct.u8());
  const signatureAlgorithms =
    version >= ProtocolVersion.TLSv1_2 ? readSignatureSchemes(r, 'supported_signature_algorithms') : [];
  const certificateAuthorities = readDistinguishedNames(r, 'certificate_authorities');
  r.expectEnd('CertificateRequest');
  return { certificateTypes, signatureAlgorithms, certificateAuthorities };
}
