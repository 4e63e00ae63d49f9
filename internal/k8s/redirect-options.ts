/**
 * The flags of `ca-proxy redirect`, parsed and validated into one plain object (pure: no I/O).
 * Every bad value is a `RedirectUsageError` naming the flag, the value and what would be valid,
 * so the init container's log says exactly what to fix in the pod's annotations.
 *
 * Lists are comma-separated (the form of the `ca-proxy.io/ports`, `ca-proxy.io/exclude-ports` and
 * `ca-proxy.io/exclude-cidrs` annotations); spaces around items are ignored, empty items refused.
 */
import net from 'node:net';
import { parseCidr as parseCidrText } from '../config/cidr';

/** An inclusive TCP port range; a single port has `from === to`. */
export interface PortRange {
  from: number;
  to: number;
}

/** A network in canonical form: the address with its host bits cleared, and the prefix length. */
export interface Cidr {
  family: 4 | 6;
  /** Network address as iptables-save prints it (`10.0.0.0`, `2001:db8::`). */
  address: string;
  prefix: number;
}

export type Ipv6Mode = 'auto' | 'on' | 'off';
export type IptablesMode = 'auto' | 'nft' | 'legacy';

export interface RedirectOptions {
  /** The sidecar's listener port on loopback (REDIRECT --to-ports). */
  proxyPort: number;
  /** The sidecar's uid: its own outbound connections are never redirected (no loop). */
  proxyUid: number;
  /** Destination ports redirected: `'*'` for every TCP port. Sorted, merged. */
  ports: '*' | PortRange[];
  /** Destination ports never redirected (checked before `ports`). Sorted, merged. */
  excludePorts: PortRange[];
  /** Destination networks never redirected. */
  excludeCidrs: Cidr[];
  ipv6: Ipv6Mode;
  iptablesMode: IptablesMode;
  dryRun: boolean;
  cleanup: boolean;
}

/** The raw flag values as commander hands them over (strings; booleans for switches). */
export interface RedirectFlags {
  proxyPort?: string;
  proxyUid?: string;
  ports?: string;
  excludePorts?: string;
  excludeCidrs?: string;
  ipv6?: string;
  iptablesMode?: string;
  dryRun?: boolean;
  cleanup?: boolean;
}

export const DEFAULTS = {
  proxyPort: '15001',
  proxyUid: '1337',
  ports: '443',
  ipv6: 'auto',
  iptablesMode: 'auto',
} as const;

export class RedirectUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RedirectUsageError';
  }
}

const DECIMAL = /^[0-9]+$/;

/** A TCP port, 1–65535, in decimal. */
export function parsePort(flag: string, text: string): number {
  const t = text.trim();
  if (!DECIMAL.test(t)) throw new RedirectUsageError(`${flag}: "${text}" is not a port number (1-65535)`);
  const n = Number(t);
  if (n < 1 || n > 65535) throw new RedirectUsageError(`${flag}: port ${t} is out of range (1-65535)`);
  return n;
}

/**
 * A uid as the kernel's owner match takes it: decimal, 0 … 4294967294 (4294967295 is the
 * kernel's "no uid", `(uid_t)-1`). Names are refused: resolving them would need the pod's
 * passwd database, which the init container does not share with the sidecar.
 */
export function parseUid(flag: string, text: string): number {
  const t = text.trim();
  if (!DECIMAL.test(t)) throw new RedirectUsageError(`${flag}: "${text}" is not a numeric uid (0-4294967294; names are not resolved)`);
  const n = Number(t);
  if (n > 4294967294) throw new RedirectUsageError(`${flag}: uid ${t} is out of range (0-4294967294)`);
  return n;
}

function items(flag: string, text: string): string[] {
  if (text.trim() === '') return [];
  const parts = text.split(',').map((s) => s.trim());
  if (parts.some((p) => p === '')) throw new RedirectUsageError(`${flag}: "${text}" has an empty item (use commas between items, no trailing comma)`);
  return parts;
}

/** Sort and merge overlapping or adjacent ranges, so the rules are minimal and comparable. */
export function mergeRanges(ranges: PortRange[]): PortRange[] {
  const sorted = [...ranges].sort((a, b) => a.from - b.from || a.to - b.to);
  const out: PortRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.from <= last.to + 1) last.to = Math.max(last.to, r.to);
    else out.push({ ...r });
  }
  return out;
}

/** `443,8000-8100` (or `8000:8100`, iptables' spelling) → merged ranges. An empty text is an empty list. */
export function parsePortList(flag: string, text: string): PortRange[] {
  const ranges = items(flag, text).map((item) => {
    const m = /^([^-:]+)[-:]([^-:]+)$/.exec(item);
    if (!m) {
      const p = parsePort(flag, item);
      return { from: p, to: p };
    }
    const from = parsePort(flag, m[1]);
    const to = parsePort(flag, m[2]);
    if (from > to) throw new RedirectUsageError(`${flag}: range "${item}" ends before it starts`);
    return { from, to };
  });
  return mergeRanges(ranges);
}

/** `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128). Host bits are cleared, as iptables would. */
export function parseCidr(flag: string, text: string): Cidr {
  const c = parseCidrText(text);
  if (!c) {
    const slash = text.trim().indexOf('/');
    const family = net.isIP(slash < 0 ? text.trim() : text.trim().slice(0, slash));
    if (family === 0) throw new RedirectUsageError(`${flag}: "${text}" is not an IPv4 or IPv6 address or CIDR (e.g. 10.0.0.0/8, fd00::/8)`);
    throw new RedirectUsageError(`${flag}: "${text}" has a bad prefix length (0-${family === 4 ? 32 : 128} for IPv${family})`);
  }
  return { family: c.family === 'ipv4' ? 4 : 6, address: c.network, prefix: c.prefix };
}

/** Whether `address` (a literal of the CIDR's family) lies in `cidr`. */
export function cidrContains(cidr: Cidr, address: string): boolean {
  if (net.isIP(address) !== cidr.family) return false;
  return parseCidrText(`${address}/${cidr.prefix}`)?.network === cidr.address;
}

function oneOf<T extends string>(flag: string, text: string, allowed: readonly T[]): T {
  const t = text.trim() as T;
  if (!allowed.includes(t)) throw new RedirectUsageError(`${flag}: "${text}" must be one of ${allowed.join(', ')}`);
  return t;
}

/** Whether `port` lies in one of `ranges`. */
export function inRanges(port: number, ranges: PortRange[]): boolean {
  return ranges.some((r) => port >= r.from && port <= r.to);
}

/**
 * Validate every flag. Refuses a selection that redirects nothing (every selected port also
 * excluded): an init container that "succeeds" while filtering nothing is the failure this
 * command exists to prevent.
 * @throws RedirectUsageError
 */
export function parseRedirectFlags(f: RedirectFlags): RedirectOptions {
  const proxyPort = parsePort('--proxy-port', f.proxyPort ?? DEFAULTS.proxyPort);
  const proxyUid = parseUid('--proxy-uid', f.proxyUid ?? DEFAULTS.proxyUid);
  const portsText = (f.ports ?? DEFAULTS.ports).trim();
  const ports: '*' | PortRange[] = portsText === '*' ? '*' : parsePortList('--ports', portsText);
  if (ports !== '*' && ports.length === 0) throw new RedirectUsageError('--ports: the list is empty; give ports (e.g. 443,8443) or * for every TCP port');
  const excludePorts = parsePortList('--exclude-ports', f.excludePorts ?? '');
  const excludeCidrs = dedupeCidrs(items('--exclude-cidrs', f.excludeCidrs ?? '').map((c) => parseCidr('--exclude-cidrs', c)));
  const ipv6 = oneOf('--ipv6', f.ipv6 ?? DEFAULTS.ipv6, ['auto', 'on', 'off'] as const);
  const iptablesMode = oneOf('--iptables-mode', f.iptablesMode ?? DEFAULTS.iptablesMode, ['auto', 'nft', 'legacy'] as const);
  if (!f.cleanup && ports !== '*' && ports.every((r) => rangeCovered(r, excludePorts))) {
    throw new RedirectUsageError(`--exclude-ports excludes every port of --ports (${formatPorts(ports)}): nothing would be redirected`);
  }
  return { proxyPort, proxyUid, ports, excludePorts, excludeCidrs, ipv6, iptablesMode, dryRun: f.dryRun === true, cleanup: f.cleanup === true };
}

function rangeCovered(r: PortRange, by: PortRange[]): boolean {
  for (let p = r.from; p <= r.to; p++) if (!inRanges(p, by)) return false;
  return true;
}

function dedupeCidrs(list: Cidr[]): Cidr[] {
  const seen = new Set<string>();
  return list.filter((c) => {
    const k = `${c.address}/${c.prefix}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** `443,8000-8100` (the flag's own spelling, for messages and the summary). */
export function formatPorts(ports: '*' | PortRange[]): string {
  if (ports === '*') return '*';
  return ports.map((r) => (r.from === r.to ? `${r.from}` : `${r.from}-${r.to}`)).join(',');
}
