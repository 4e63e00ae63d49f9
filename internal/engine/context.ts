/**
 * What a Session needs from the process: policy, PKI material, the revocation store, name
 * resolution and places to report decisions. Built once from the Config by the composition root
 * (cmd/ca-proxy/runtime.ts) and shared by every session of both front doors.
 */
import type { X509Certificate } from 'node:crypto';
import type { SecureContext } from 'node:tls';
import type { Config, MinTlsVersion, RuleSettings } from '../config/types';
import type { RevocationResult } from '../pki/types';
import type { CertInfo } from '../pki/certinfo';
import type { Decision } from './decision';
import type { AddressPolicy } from './destination';
import type { Destination } from './policy';

/** The proxy identity presented upstream on CertificateRequest. */
export interface IdentityRef {
  name: string;
}

export interface EngineContext {
  limits: Config['limits'];
  /** Ordered destination rules; first match wins (internal/engine/policy.ts). */
  policy(dest: Destination): { name: string; settings: RuleSettings };
  /** The destination address policy (`destinations`), checked against the address that is dialled. */
  destinations: AddressPolicy;
  /**
   * Resolves a host name once (the session dials exactly one of these addresses, so a second
   * lookup can never slip past the policy). Names under `localhost.` are loopback (RFC 6761).
   * Rejects with an Error whose message is reported.
   */
  resolve(host: string): Promise<string[]>;
  /** Whether `address:port` is one of this process's own listeners (a forwarding loop). */
  isOwnListener(address: string, port: number): boolean;
  /** The interception CA's minted leaf for a name, as a SecureContext that also holds the workload CAs. */
  leafContext(name: string, opts?: { maxVersion?: 'TLSv1.2'; minVersion?: MinTlsVersion }): Promise<SecureContext>;
  /** The client SecureContext for the upstream session: the identity's certificate (or none), cached per identity and version floor. */
  upstreamContext(identity: string | null, minVersion: MinTlsVersion): SecureContext;
  identities: Map<string, IdentityRef>;
  /** Trust anchors for server chains. */
  anchors: X509Certificate[];
  /** CAs that sign workload certificates (clientAuth optional/require). */
  workloadAnchors: X509Certificate[];
  /** The revocation index, or null when no CRL source is configured. */
  revocation: { check(cert: CertInfo, issuer: CertInfo | X509Certificate): RevocationResult } | null;
  /** The verdict, as soon as it is made (metrics, Envoy metadata, Pod Events): once per connection. */
  decided?(decision: Decision): void;
  /** The complete decision record when the connection has closed (how each side ended, bytes, duration): the JSON log line. */
  report(decision: Decision): void;
  /** Open sessions (the `ca_proxy_active_connections` gauge): +1 when one starts, -1 when it closes. */
  activeConnections?: { inc(): void; dec(): void };
  now(): Date;
}
