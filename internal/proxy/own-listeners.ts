/**
 * The addresses this process listens on (CONNECT, SNI, admin, ext_proc), so a destination that is
 * one of them is refused as a forwarding loop (`forwarding_loop`) instead of multiplying
 * connections until descriptors run out. One registry per runtime, handed to the engine through
 * `EngineContext.isOwnListener` (not a process global: two runtimes in one process, as in the
 * tests, each know their own).
 */
import net from 'node:net';
import os from 'node:os';
import { canonicalAddress } from '../config/cidr';

export class OwnListeners {
  private readonly bound = new Map<number, Set<string>>();
  private local: { at: number; addresses: Set<string> } | null = null;

  /** Registers a bound listener; returns its unregistration. */
  add(address: net.AddressInfo): () => void {
    let set = this.bound.get(address.port);
    if (!set) this.bound.set(address.port, (set = new Set()));
    const a = canonicalAddress(address.address)?.address ?? address.address;
    set.add(a);
    return () => {
      set!.delete(a);
      if (set!.size === 0) this.bound.delete(address.port);
    };
  }

  /** Whether a connection to `address:port` would reach one of the registered listeners. */
  has(address: string, port: number): boolean {
    const set = this.bound.get(port);
    if (!set) return false;
    const a = canonicalAddress(address)?.address;
    if (!a) return false;
    for (const b of set) {
      if (b === a) return true;
      // A wildcard listener answers on every address of this host.
      if ((b === '0.0.0.0' || b === '::') && this.isLocal(a)) return true;
    }
    return false;
  }

  private isLocal(address: string): boolean {
    if (/^127\./.test(address) || address === '::1' || address === '0.0.0.0' || address === '::') return true;
    const now = Date.now();
    if (!this.local || now - this.local.at > 5000) {
      const addresses = new Set<string>();
      for (const list of Object.values(os.networkInterfaces())) for (const i of list ?? []) addresses.add(canonicalAddress(i.address)?.address ?? i.address);
      this.local = { at: now, addresses };
    }
    return this.local.addresses.has(address);
  }
}
