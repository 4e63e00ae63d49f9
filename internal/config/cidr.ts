/**
 * CIDR ranges as configuration values (`destinations.allow`, `rules[].match.cidr`): parsing, and
 * membership on Node's own `net.BlockList`. IPv4-mapped (`::ffff:a.b.c.d`) and NAT64
 * (`64:ff9b::a.b.c.d`, RFC 6052) IPv6 addresses are judged by the IPv4 address they carry, so a
 * range written in IPv4 also covers them.
 */
import net from 'node:net';

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
      this.list.addSubnet(parsed.address, parsed.prefix, parsed.family);
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

/** `a.b.c.d/n` or `x::y/n` (a bare address means a single host), or null when malformed. */
export function parseCidr(cidr: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | null {
  const m = /^([^/\s]+)(?:\/(\d{1,3}))?$/.exec(cidr.trim());
  if (!m) return null;
  const v = net.isIP(m[1]!);
  if (v === 0) return null;
  const family = v === 4 ? 'ipv4' : 'ipv6';
  const max = v === 4 ? 32 : 128;
  const prefix = m[2] === undefined ? max : Number(m[2]);
  if (prefix > max) return null;
  return { address: m[1]!, prefix, family };
}

/**
 * The address as the policy judges it: IPv4-mapped (`::ffff:a.b.c.d`) and NAT64
 * (`64:ff9b::a.b.c.d`) IPv6 addresses become the IPv4 address they carry. Null for a non-IP.
 */
export function canonicalAddress(address: string): { address: string; family: 'ipv4' | 'ipv6' } | null {
  const bare = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  const v = net.isIP(bare);
  if (v === 4) return { address: bare, family: 'ipv4' };
  if (v !== 6) return null;
  const embedded = embeddedIpv4(bare);
  return embedded ? { address: embedded, family: 'ipv4' } : { address: bare, family: 'ipv6' };
}

function embeddedIpv4(v6: string): string | null {
  const bytes = ipv6Bytes(v6);
  if (!bytes) return null;
  const zero = (from: number, to: number) => bytes.subarray(from, to).every((b) => b === 0);
  const mapped = zero(0, 10) && bytes[10] === 0xff && bytes[11] === 0xff;
  const nat64 = bytes[0] === 0x00 && bytes[1] === 0x64 && bytes[2] === 0xff && bytes[3] === 0x9b && zero(4, 12);
  return mapped || nat64 ? `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}` : null;
}

/** The 16 bytes of an IPv6 literal (with an optional trailing dotted IPv4), or null. */
function ipv6Bytes(v6: string): Buffer | null {
  let s = v6.split('%')[0]!;
  const tail: number[] = [];
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (dotted) {
    tail.push(...dotted[1]!.split('.').map(Number));
    s = s.slice(0, -dotted[1]!.length) + '0:0';
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const part = (h: string) => (h === '' ? [] : h.split(':').map((x) => parseInt(x, 16)));
  const head = part(halves[0]!);
  const rest = halves.length === 2 ? part(halves[1]!) : [];
  const fill = 8 - head.length - rest.length;
  if (fill < 0 || (halves.length === 1 && fill !== 0)) return null;
  const words = [...head, ...new Array<number>(fill).fill(0), ...rest];
  const out = Buffer.alloc(16);
  words.forEach((w, i) => out.writeUInt16BE(w & 0xffff, i * 2));
  if (tail.length) out.set(tail, 12);
  return out;
}

