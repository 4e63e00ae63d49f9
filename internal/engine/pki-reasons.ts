/**
 * pki's error codes (internal/pki/errors.ts) as decision reasons (reasons.ts): the one place the
 * engine translates a chain verdict, so pki never names a reason and a reason's meaning stays
 * with the engine. The alert that goes with a reason is alerts.ts `alertFor`.
 */
import type { ChainResult } from '../pki/chain';
import type { ChainErrorCode } from '../pki/errors';
import { Reason, type ReasonCode } from './reasons';

/** The decision reason for each way a server (or workload) chain can fail. */
const CHAIN_REASONS: Record<ChainErrorCode, ReasonCode> = {
  no_certificate: Reason.badServerCertificate,
  malformed: Reason.badServerCertificate,
  required_eku_not_found: Reason.badServerCertificate,
  unknown_issuer: Reason.untrustedServer,
  // A signature that does not verify, or names that do not chain: the path does not lead to the anchor.
  bad_signature: Reason.untrustedServer,
  name_chaining: Reason.untrustedServer,
  certificate_expired: Reason.certificateExpired,
  // A path that exists but breaks a constraint on the way: the server's certificates are unusable.
  not_ca: Reason.badServerCertificate,
  key_usage: Reason.badServerCertificate,
  path_length: Reason.badServerCertificate,
  name_constraints: Reason.badServerCertificate,
  unsupported_critical_extension: Reason.badServerCertificate,
  not_valid_for_name: Reason.hostnameMismatch,
  revoked: Reason.certificateRevoked,
  revocation_unknown: Reason.revocationUnknown,
  revocation_stale: Reason.revocationStale,
};

/** The reason for a chain pki refused with `code`. */
export function reasonForChainError(code: ChainErrorCode): ReasonCode {
  return CHAIN_REASONS[code];
}

/** The reason a checked chain stands for: `ok` when pki found nothing wrong. */
export function chainReason(chain: Pick<ChainResult, 'error'>): ReasonCode {
  return chain.error === null ? Reason.ok : CHAIN_REASONS[chain.error];
}
