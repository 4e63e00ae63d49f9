/**
 * The SecureContexts of intercept mode, each made once and reused: making one parses a
 * certificate chain and a private key, which costs more per connection than the handshake's own
 * signature.
 * - `leaf(name, {minVersion, maxVersion})`: the interception CA's minted leaf for the SNI (the
 *   workload's side), holding the workload CAs for `clientAuth`; one per leaf and version range,
 *   dropped with the leaf when the minter evicts it.
 * - `upstream(identity, minVersion)`: the client side towards the server: the proxy identity's
 *   certificate (or none) and the rule's version floor.
 */
import tls from 'node:tls';
import type { LeafMinter, MintedLeaf } from './mint';
import type { ProxyIdentity } from './identity';

export type TlsVersionName = 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';

export class SecureContexts {
  private readonly leaves = new WeakMap<MintedLeaf, Map<string, tls.SecureContext>>();
  private readonly upstreams = new Map<string, tls.SecureContext>();

  /**
   * @param workloadCA PEM bundles of the CAs that sign workload certificates (asked for under clientAuth)
   */
  constructor(
    private readonly minter: LeafMinter,
    private readonly identities: ReadonlyMap<string, ProxyIdentity>,
    private readonly workloadCA: readonly string[],
  ) {}

  /** Rejects with the minter's MintError when the name cannot be issued for. */
  async leaf(name: string, opts: { minVersion?: TlsVersionName; maxVersion?: 'TLSv1.2' } = {}): Promise<tls.SecureContext> {
    const leaf = await this.minter.mint(name);
    let byVersion = this.leaves.get(leaf);
    if (!byVersion) this.leaves.set(leaf, (byVersion = new Map()));
    const key = `${opts.minVersion ?? ''}-${opts.maxVersion ?? ''}`;
    let sc = byVersion.get(key);
    if (!sc) {
      sc = tls.createSecureContext({
        cert: leaf.chainPem,
        key: leaf.keyPem,
        ...(this.workloadCA.length ? { ca: [...this.workloadCA] } : {}),
        ...(opts.maxVersion ? { maxVersion: opts.maxVersion } : {}),
        ...(opts.minVersion ? { minVersion: opts.minVersion } : {}),
      });
      byVersion.set(key, sc);
    }
    return sc;
  }

  /** @throws Error for an identity name that was not loaded (a configuration bug the loader prevents) */
  upstream(identity: string | null, minVersion: TlsVersionName): tls.SecureContext {
    const key = `${identity ?? ''}\0${minVersion}`;
    let sc = this.upstreams.get(key);
    if (!sc) {
      const id = identity ? this.identities.get(identity) : undefined;
      if (identity && !id) throw new Error(`no proxy identity named ${identity}`);
      sc = tls.createSecureContext({ ...(id?.secureContextOptions ?? {}), minVersion });
      this.upstreams.set(key, sc);
    }
    return sc;
  }
}
