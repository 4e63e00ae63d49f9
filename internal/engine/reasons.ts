/**
 * The one enumeration of reason codes shared by decisions, metrics labels and logs
 * (in the spirit of rustls-webpki's single error type with precise variants).
 *
 * A reason code is a stable, lower_snake_case string: it appears as the `reason`
 * label of `ca_proxy_connections_total`, in the JSON decision log and in Envoy
 * dynamic metadata, so values are never renamed once released.
 */
export const Reason = {
  /** Allowed: chain trusted, no certificate revoked (or policy allowed an unknown status). */
  ok: 'ok',
  /** Allowed without inspection: the rule's action is `passthrough`. */
  passthrough: 'passthrough',
  /** Allowed under `inspect` without any check: the server chose TLS 1.3 (Certificate encrypted) and the rule's `tls13` is `allowUnchecked`. */
  tls13Unchecked: 'tls13_unchecked',
  /** Denied under `inspect`: the server chose TLS 1.3, whose Certificate cannot be read, and the rule's `tls13` is `deny` (or intercept is impossible). */
  tls13NotInspectable: 'tls13_not_inspectable',
  /** Denied by a rule whose action is `deny`, or no rule matched and the default is deny. */
  policyDeny: 'policy_deny',
  /** A certificate of the server's chain is on a usable CRL (RFC 5280 §5.3.1 reason in the decision). */
  certificateRevoked: 'certificate_revoked',
  /** No usable CRL covers a certificate and the rule is `hardFail`. */
  revocationUnknown: 'revocation_unknown',
  /** The only CRL covering a certificate is past nextUpdate (plus skew) and the rule is `hardFail`. */
  revocationStale: 'revocation_stale',
  /** The server's chain does not lead to a trust anchor in the trust bundle. */
  untrustedServer: 'untrusted_server',
  /** A certificate of the server's chain is outside its validity period. */
  certificateExpired: 'certificate_expired',
  /** The server's certificate does not match the SNI (RFC 6125 host check). */
  hostnameMismatch: 'hostname_mismatch',
  /** The server sent a malformed or unusable Certificate. */
  badServerCertificate: 'bad_server_certificate',
  /** The server sent CertificateRequest and the matching rule has no proxy identity. */
  clientCertificateRequired: 'client_certificate_required',
  /** The workload did not present a certificate and the rule's clientAuth is `require`. */
  workloadCertificateMissing: 'workload_certificate_missing',
  /** The workload's certificate did not verify against the workload CA. */
  workloadCertificateInvalid: 'workload_certificate_invalid',
  /** The workload's first bytes were not a TLS ClientHello (garbage, plain HTTP, SSLv2). */
  notTls: 'not_tls',
  /** The ClientHello had no SNI and the front door knows no destination name. */
  missingSni: 'missing_sni',
  /** A TLS record or handshake message was malformed. */
  malformedHandshake: 'malformed_handshake',
  /** A handshake message exceeded `limits.maxHandshakeMessageBytes`. */
  handshakeTooLarge: 'handshake_too_large',
  /** The handshake did not finish within `limits.handshakeTimeoutMs`. */
  handshakeTimeout: 'handshake_timeout',
  /** The TLS handshake with the server failed (alert from the server, version/cipher mismatch). */
  upstreamHandshakeFailed: 'upstream_handshake_failed',
  /** The TCP connection to the server could not be opened. */
  upstreamConnectFailed: 'upstream_connect_failed',
  /** The TLS handshake with the workload failed after the upstream succeeded. */
  downstreamHandshakeFailed: 'downstream_handshake_failed',
  /** A peer closed the connection before the handshake completed. */
  peerClosed: 'peer_closed',
  /** The ClientHello's server_name does not name the host the front door dials (CONNECT host, or, for passthrough to an address, none of the SNI's addresses). */
  sniMismatch: 'sni_mismatch',
  /** The ClientHello's server_name is not a usable host name (over 253 octets, empty label, non-ASCII), or an IP literal under passthrough or inspect, which forward the ClientHello unchanged. */
  invalidSni: 'invalid_sni',
  /** The address that would be dialled is refused by the destination policy (not publicly routable, or in `destinations.deny`). */
  destinationNotAllowed: 'destination_not_allowed',
  /** The destination is one of ca-proxy's own listeners. */
  forwardingLoop: 'forwarding_loop',
  /** Refused at accept: `limits.maxConnections` connections are open on the listener. */
  connectionLimit: 'connection_limit',
  /** Refused at accept: `limits.maxConnectionsPerSource` connections are open from this source address. */
  sourceConnectionLimit: 'source_connection_limit',
  /** The front door's request was malformed (an HTTP request that is not a valid CONNECT). */
  badRequest: 'bad_request',
  /** The CONNECT request, or a complete ClientHello, did not arrive within `limits.requestTimeoutMs`. */
  requestTimeout: 'request_timeout',
  /** The negotiated protocol version is below the rule's `minVersion`. */
  protocolVersion: 'protocol_version',
  /** The server chose a cipher suite ca-proxy refuses (export, NULL, anonymous, RC4). */
  insufficientSecurity: 'insufficient_security',
  /** The server finished its handshake flight without a Certificate (e.g. an anonymous suite). */
  serverCertificateMissing: 'server_certificate_missing',
  /** An unexpected internal error; the connection is closed, the process lives on. */
  internalError: 'internal_error',
} as const;

export type ReasonCode = (typeof Reason)[keyof typeof Reason];

/** All reason codes, e.g. to pre-create metric label sets. */
export const ALL_REASONS: readonly ReasonCode[] = Object.values(Reason);
