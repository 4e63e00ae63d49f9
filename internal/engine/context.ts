/**
 * What a Session needs from the process: policy, PKI material, the revocation store and a
 * place to report decisions. Built once from the Config by `createEngineContext` and
 * shared by every session of both front doors.
 */
import type { X509Certificate } from 'node:crypto';
import type { SecureContext } from 'node:tls';
import type { Config, RuleSettings } from '../config/types';
import type { RevocationResult } from '../pki/types';
import type { CertInfo } from '../pki/certinfo';
import type { Decision } from './decision';

/** The proxy identity presented upstream on CertificateRequest. */
export interface IdentityRef {
  name: string;
  /** Options merged into `tls.connect()` (cert+key or pfx+passphrase). */
  secureContextOptions: Record<string, unknown>;
}

export interface EngineContext {
  limits: Config['limits'];
  /** Ordered destination rules; first match wins (internal/engine/policy.ts). */
  policy(dest: { sni: string | null; port: number | undefined }): { name: string; settings: RuleSettings };
  /** The interception CA's minted leaf for a name, as a SecureContext that also holds the workload CAs. */
  leafContext(name: string, opts?: { maxVersion?: 'TLSv1.2' }): Promise<SecureContext>;
  identities: Map<string, IdentityRef>;
  /** Trust anchors for server chains. */
  anchors: X509Certificate[];
  /** CAs that sign workload certificates (clientAuth optional/require). */
  workloadAnchors: X509Certificate[];
  /** The revocation index, or null when no CRL source is configured. */
  revocation: { check(cert: CertInfo, issuer: CertInfo | X509Certificate): RevocationResult } | null;
  report(decision: Decision): void;
  /** Open sessions (the `ca_proxy_active_connections` gauge): +1 when one starts, -1 when it closes. */
  activeConnections?: { inc(): void; dec(): void };
  now(): Date;
}
