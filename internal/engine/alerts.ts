/**
 * Which TLS alert (RFC 8446 §6.2, RFC 5246 §7.2.2) tells a peer why ca-proxy stopped it.
 */
import { AlertDescription } from '../tls/alert';
import type { ParseError } from '../bytes/reader';
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
    case Reason.destinationNotAllowed:
    case Reason.forwardingLoop:
      return AlertDescription.access_denied;
    case Reason.sniMismatch:
    case Reason.invalidSni:
      return AlertDescription.illegal_parameter;
    case Reason.protocolVersion:
      return AlertDescription.protocol_version;
    case Reason.insufficientSecurity:
      return AlertDescription.insufficient_security;
    case Reason.serverCertificateMissing:
      return AlertDescription.handshake_failure;
    case Reason.internalError:
      return AlertDescription.internal_error;
    default:
      return AlertDescription.handshake_failure;
  }
}


/** The alert for input that does not parse: `unexpected_message`, `record_overflow` or `decode_error`. */
export function parseErrorAlert(err: ParseError): number {
  if (err.code === 'unexpected') return AlertDescription.unexpected_message;
  if (err.code === 'too_large') return AlertDescription.record_overflow;
  return AlertDescription.decode_error;
}
