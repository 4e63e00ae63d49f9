/**
 * What an egress rule may reach (DESIGN.md "Egress policy: a rule reaches only what it names"):
 * host-name hygiene for the ClientHello's server_name, and the destination address policy checked
 * against the one address that is dialled.
 *
 * Address policy, in order (the first that applies decides):
 * 1. `destinations.deny` CIDRs: denied.
 * 2. `destinations.allow` CIDRs: allowed (this is how a deployment reaches an internal range).
 * 3. Addresses that are not publicly routable (`NON_PUBLIC`: loopback, link-local including the
 *    cloud metadata address 169.254.169.254, unspecified, multicast, RFC 1918, RFC 4193,
 *    100.64.0.0/10, and the other IANA special-purpose ranges that are not globally reachable):
 *    denied, as Stripe's Smokescreen does by default.
 * 4. Anything else: allowed.
 * IPv4-mapped and NAT64 (64:ff9b::/96) IPv6 addresses are judged by the IPv4 address they carry.
 */
import net from 'node:net';
import { CidrSet, canonicalAddress } from '../config/cidr';

export { CidrSet, canonicalAddress, parseCidr } from '../config/cidr';

/** Special-purpose ranges that are not publicly routable (IANA IPv4/IPv6 Special-Purpose Address Registries). */
export const NON_PUBLIC: readonly string[] = [
  '0.0.0.0/8', // "this network", unspecified
  '10.0.0.0/8', // RFC 1918
  '100.64.0.0/10', // RFC 6598 shared address space (carrier-grade NAT)
  '127.0.0.0/8', // loopback
  '169.254.0.0/16', // link-local, cloud metadata (169.254.169.254)
  '172.16.0.0/12', // RFC 1918
  '192.0.0.0/24', // IETF protocol assignments
  '192.0.2.0/24', // TEST-NET-1
  '192.168.0.0/16', // RFC 1918
  '198.18.0.0/15', // benchmarking
  '198.51.100.0/24', // TEST-NET-2
  '203.0.113.0/24', // TEST-NET-3
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved, broadcast
  '::/128', // unspecified
  '::1/128', // loopback
  '100::/64', // discard-only
  '2001:db8::/32', // documentation
  'fc00::/7', // RFC 4193 unique local
  'fe80::/10', // link-local
  'ff00::/8', // multicast
];

const NON_PUBLIC_SET = new CidrSet(NON_PUBLIC, 'NON_PUBLIC');

/** Whether an address lies outside the publicly routable space (see NON_PUBLIC). */
export function isNonPublic(address: string): boolean {
  return NON_PUBLIC_SET.has(address);
}

/** The configured address policy. */
export interface AddressPolicy {
  allow: CidrSet;
  deny: CidrSet;
}

export function addressPolicy(cfg: { allow: readonly string[]; deny: readonly string[] }): AddressPolicy {
  return { allow: new CidrSet(cfg.allow, 'destinations.allow'), deny: new CidrSet(cfg.deny, 'destinations.deny') };
}

/** Why the policy refuses `address`, or null when it may be dialled. */
export function addressRefusal(policy: AddressPolicy, address: string): string | null {
  const a = canonicalAddress(address);
  if (!a) return `${address} is not an IP address`;
  if (policy.deny.has(a.address)) return `${address} is in destinations.deny`;
  if (policy.allow.has(a.address)) return null;
  if (isNonPublic(a.address)) return `${address} is not a publicly routable address (allow it with destinations.allow)`;
  return null;
}

// ───────────────────────────── host names ─────────────────────────────

/** The longest host name, in octets without a trailing dot (RFC 1035 §2.3.4). */
export const MAX_HOST_NAME_OCTETS = 253;

/**
 * A server_name as the policy compares it (RFC 6066 §3: ASCII host names; comparison is
 * case-insensitive; one trailing dot ignored): lower-cased ASCII, no trailing dot.
 */
export function normalizeHostName(name: string): string {
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  return trimmed.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));
}

/** Why `name` (already normalized) is not a usable host name, or null. IP literals are handled by the caller. */
export function hostNameProblem(name: string): string | null {
  if (name.length === 0) return 'empty server_name';
  if (name.length > MAX_HOST_NAME_OCTETS) return `server_name of ${name.length} octets (at most ${MAX_HOST_NAME_OCTETS})`;
  // eslint-disable-next-line no-control-regex
  if (/[^\x21-\x7e]/.test(name)) return 'server_name holds bytes outside printable ASCII (host names are A-labels, RFC 6066 §3)';
  for (const label of name.split('.')) {
    if (label.length === 0) return 'server_name has an empty label';
    if (label.length > 63) return `server_name has a label of ${label.length} octets (at most 63)`;
  }
  return null;
}

/** Whether a server_name is an IP literal (RFC 6066 §3 forbids them; they are treated as absent). */
export function isIpLiteral(name: string): boolean {
  const bare = name.startsWith('[') && name.endsWith(']') ? name.slice(1, -1) : name;
  return net.isIP(bare) !== 0;
}
