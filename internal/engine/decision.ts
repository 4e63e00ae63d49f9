/**
 * The decision record: one per connection, the same object in the JSON log, the metrics,
 * Envoy dynamic metadata (namespace `ca_proxy`) and Kubernetes Events (DESIGN.md "Decision record").
 * Never holds the workload's certificate or subject: only its SHA-256.
 */
import type { Action } from '../config/types';
import type { CrlReason, RevocationStatus } from '../pki/types';
import type { ReasonCode } from './reasons';
import type { ChainResult } from '../pki/chain';
import { dnOf } from '../pki/certinfo';

/**
 * How one peer's stream ended (DESIGN.md "Stream integrity"): `clean` with a TLS close_notify,
 * `truncated` by a TCP FIN (or a TLS error) without one, `reset` by a TCP RST; `fin` for a TCP
 * FIN on a stream ca-proxy relays without terminating it (passthrough, inspect: its TLS close,
 * if any, passed through unread); `proxy` when ca-proxy ended it first (a denial, a timeout,
 * shutdown).
 */
export type StreamEnd = 'clean' | 'truncated' | 'reset' | 'fin' | 'proxy';

/** The rule action, or `none` for a connection refused before any rule applied (connection limit, bad request, timeout). */
export type DecisionAction = Action | 'none';

export interface Decision {
  /** ISO 8601 time the decision was made. */
  time: string;
  connectionId: string;
  source: { address?: string; port?: number; pod?: string; namespace?: string; serviceAccount?: string };
  /** `host`: the name the front door was asked for (HTTP CONNECT authority); `address`: the IP dialled. */
  destination: { sni?: string; host?: string; address?: string; port?: number };
  action: DecisionAction;
  /** Name of the rule that matched, `default`, or null when the connection was refused before any rule applied. */
  rule: string | null;
  outcome: 'allow' | 'deny';
  reason: ReasonCode;
  /** Human-readable detail for the reason (an OpenSSL error, the field that failed). */
  detail?: string;
  tls?: { version?: string; cipher?: string; alpn?: string | null };
  /** The external server's leaf. */
  serverCertificate?: { subject?: string; issuer: string; serial: string; sha256: string; notAfter: string };
  revocation?: {
    status: RevocationStatus;
    /** Set when a certificate is revoked (RFC 5280 §5.3.1). */
    reason?: CrlReason;
    revocationDate?: string;
    /** Serial (hex) of the certificate the status is about (the worst one of the chain). */
    serial?: string;
    cRLNumber?: string | null;
    thisUpdate?: string;
  };
  substitution?: {
    /** The server sent CertificateRequest. */
    requested: boolean;
    /** Name of the proxy identity presented, or null when none was. */
    identity: string | null;
    /** The workload presented a certificate of its own (to the proxy, never beyond). */
    workloadCertificate: boolean;
  };
  /** Workload authentication by the proxy (clientAuth). */
  workload?: { authenticated: boolean; certificateSha256?: string; error?: string };
  /** Milliseconds from the first ClientHello byte to the decision. */
  handshakeMs?: number;
  /** Set when the connection closed: how each peer's stream ended. */
  ends?: { workload: StreamEnd; server: StreamEnd | null };
  /** Set when the connection closed: plaintext (intercept) or TLS (other actions) bytes relayed from each peer. */
  bytes?: { fromWorkload: number; fromServer: number };
  /** Set when the connection closed: milliseconds from accept to close. */
  durationMs?: number;
}

/**
 * The decision fields a checked server chain yields (both intercept and inspect report them):
 * the leaf as `serverCertificate`, and the chain's worst revocation status with the CRL used.
 */
export function chainDecisionFields(chain: ChainResult): Pick<Decision, 'serverCertificate' | 'revocation'> {
  const out: Pick<Decision, 'serverCertificate' | 'revocation'> = {};
  const leaf = chain.path[0];
  if (leaf) {
    out.serverCertificate = {
      subject: dnOf(leaf),
      issuer: dnOf(leaf, 'issuer'),
      serial: leaf.x509.serialNumber.toLowerCase(),
      sha256: leaf.sha256,
      notAfter: new Date(leaf.x509.validTo).toISOString(),
    };
  }
  const res = chain.revocation.result;
  out.revocation = {
    status: chain.revocation.status,
    serial: chain.revocation.serial,
    ...(res && res.status === 'revoked' ? { reason: res.reason, revocationDate: res.revocationDate.toISOString() } : {}),
    ...(res && 'crl' in res ? { cRLNumber: res.crl.cRLNumber, thisUpdate: res.crl.thisUpdate.toISOString() } : {}),
  };
  return out;
}
