/**
 * Which TLS alert (RFC 8446 §6.2, RFC 5246 §7.2.2) tells a peer why ca-proxy stopped it.
 */
import { AlertDescription } from '../tls/alert';
import { Reason, type ReasonCode } from './reasons';

/** The alert that tells a workload still in its plaintext handshake why it was stopped. */
export function alertFor(reason: ReasonCode): number {
  switch (reason) {
    case Reason.certificateRevoked:
      return AlertDescription.certificate_revoked;
    case Reason.untrustedServer:
      return AlertDescription.unknown_ca;
    case Reason.certificateExpired:
      return AlertDescription.certificate_expired;
    case Reason.badServerCertificate:
    case Reason.hostnameMismatch:
      return AlertDescription.bad_certificate;
    case Reason.revocationUnknown:
    case Reason.revocationStale:
      return AlertDescription.certificate_unknown;
    case Reason.handshakeTooLarge:
      return AlertDescription.record_overflow;
    case Reason.malformedHandshake:
    case Reason.notTls:
      return AlertDescription.decode_error;
    case Reason.policyDeny:
      return AlertDescription.access_denied;
    case Reason.internalError:
      return AlertDescription.internal_error;
    default:
      return AlertDescription.handshake_failure;
  }
}

