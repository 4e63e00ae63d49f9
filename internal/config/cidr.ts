/**
 * IP addresses and CIDR ranges, the one implementation every part of ca-proxy uses: the
 * destination policy (`destinations.allow`, `rules[].match.cidr`), `ca-proxy redirect
 * --exclude-cidrs` and the injector's `ca-proxy.io/exclude-cidrs` annotation.
 *
 * - `parseCidr` reads `a.b.c.d/n`, `x::y/n` or a bare address (a host route), and says whether
 *   host bits are set beyond the prefix (`10.1.2.3/8`: a caller refuses it or widens it on purpose).
 * - `formatAddress` writes RFC 5952 text (lowercase, the longest run of ≥ 2 zero groups as `::`),
 *   as iptables-save prints networks.
 * - `CidrSet` tests membership on Node's own `net.BlockList`. IPv4-mapped (`::ffff:a.b.c.d`) and
 *   NAT64 (`64:ff9b::a.b.c.d`, RFC 6052) IPv6 addresses are judged by the IPv4 address they
 *   carry, so a range written in IPv4 also covers them.
 */
import net from 'node:net';

export type Family = 'ipv4' | 'ipv6';

/** A parsed CIDR. `network` is the address with the host bits cleared, in RFC 5952 text. */
export interface Cidr {
  family: Family;
  /** The address as written (for messages). */
  address: string;
  prefix: number;
  network: string;
  /** Bits beyond the prefix are set in `address` (it is not the network address). */
  hostBits: boolean;
}

/** `a.b.c.d/n`, `x::y/n` or a bare address (a /32 or /128), or null when malformed. */
export function parseCidr(text: string): Cidr | null {
  const m = /^([^/\s]+)(?:\/(\d{1,3}))?$/.exec(text.trim());
  if (!m) return null;
  const v = net.isIP(m[1]!);
  if (v === 0) return null;
  const family: Family = v === 4 ? 'ipv4' : 'ipv6';
  const max = v === 4 ? 32 : 128;
  const prefix = m[2] === undefined ? max : Number(m[2]);
  if (prefix > max) return null;
  const bytes = addressBytes(m[1]!)!;
  const masked = Buffer.from(bytes);
  for (let bit = prefix; bit < max; bit++) masked[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return { family, address: m[1]!, prefix, network: formatAddress(masked), hostBits: !masked.equals(bytes) };
}

/** The bytes of an IP literal (4 for IPv4, 16 for IPv6, an embedded dotted IPv4 tail allowed), or null. */
export function addressBytes(address: string): Buffer | null {
  const v = net.isIP(address);
  if (v === 4) return Buffer.from(address.split('.').map(Number));
  if (v !== 6) return null;
  let s = address.split('%')[0]!.toLowerCase();
  const tail: number[] = [];
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (dotted) {
    tail.push(...dotted[1]!.split('.').map(Number));
    s = s.slice(0, -dotted[1]!.length) + '0:0';
  }
  const halves = s.split('::');
  const part = (h: string) => (h === '' ? [] : h.split(':').map((x) => parseInt(x, 16)));
  const head = part(halves[0]!);
  const rest = halves.length === 2 ? part(halves[1]!) : [];
  const words = [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
  const out = Buffer.alloc(16);
  words.forEach((w, i) => out.writeUInt16BE(w & 0xffff, i * 2));
  if (tail.length) out.set(tail, 12);
  return out;
}

/** Dotted quad for 4 bytes; RFC 5952 text for 16. */
export function formatAddress(bytes: Buffer): string {
  if (bytes.length === 4) return [...bytes].join('.');
  const groups = Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/**
 * The address as the policy judges it: IPv4-mapped (`::ffff:a.b.c.d`) and NAT64
 * (`64:ff9b::a.b.c.d`) IPv6 addresses become the IPv4 address they carry. Null for a non-IP.
 */
export function canonicalAddress(address: string): { address: string; family: Family } | null {
  const bare = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  const v = net.isIP(bare);
  if (v === 4) return { address: bare, family: 'ipv4' };
  if (v !== 6) return null;
  const b = addressBytes(bare)!;
  const zero = (from: number, to: number) => b.subarray(from, to).every((x) => x === 0);
  const mapped = zero(0, 10) && b[10] === 0xff && b[11] === 0xff;
  const nat64 = b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zero(4, 12);
  return mapped || nat64 ? { address: `${b[12]}.${b[13]}.${b[14]}.${b[15]}`, family: 'ipv4' } : { address: bare, family: 'ipv6' };
}

/** Whether `address` (an IP literal) lies in `cidr` (both judged as canonicalAddress does). */
export function cidrContains(cidr: Cidr, address: string): boolean {
  const a = canonicalAddress(address);
  const c = canonicalAddress(cidr.network);
  if (!a || !c || a.family !== c.family) return false;
  return parseCidr(`${a.address}/${cidr.prefix}`)?.network === parseCidr(`${c.address}/${cidr.prefix}`)?.network;
}

/** A set of CIDR ranges (IPv4 and IPv6), on Node's `net.BlockList`. */
export class CidrSet {
  private readonly list = new net.BlockList();
  readonly size: number;

  /** @throws Error naming the entry for a malformed CIDR (`what[i]: "…" is not a CIDR`) */
  constructor(
    readonly cidrs: readonly string[],
    what = 'cidr',
  ) {
    cidrs.forEach((c, i) => {
      const parsed = parseCidr(c);
      if (!parsed) throw new Error(`${what}[${i}]: "${c}" is not a CIDR (e.g. 10.0.0.0/8 or fd00::/8)`);
      this.list.addSubnet(parsed.network, parsed.prefix, parsed.family);
    });
    this.size = cidrs.length;
  }

  /** Whether `address` (an IP literal) lies in one of the ranges. */
  has(address: string): boolean {
    const a = canonicalAddress(address);
    if (!a) return false;
    return this.list.check(a.address, a.family);
  }
}
