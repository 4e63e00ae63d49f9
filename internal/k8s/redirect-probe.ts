/**
 * Proof that the redirect is in force where it matters, in the kernel's own packet path, whatever
 * the iptables binaries reported: after applying, `ca-proxy redirect` listens on the proxy port on
 * loopback, connects (as itself, not the proxy uid) to a documentation address on a redirected
 * port, and expects its own listener to answer with a random nonce. A connection that does not
 * arrive means the rules are not what the kernel applies (written into a backend that is not
 * evaluated, overridden by an earlier nat rule of another backend, …): the command fails.
 *
 * Probe addresses are reserved for documentation and never routed (RFC 5737: 192.0.2.1,
 * 198.51.100.1, 203.0.113.1; RFC 3849: 2001:db8::1), so a probe that is not redirected sends one
 * SYN nowhere. REDIRECT in nat OUTPUT sends to 127.0.0.1 (IPv4) or ::1 (IPv6) (Linux
 * nf_nat_redirect, NF_INET_LOCAL_OUT), hence the loopback listener.
 *
 * The probe is skipped, with the reason in the summary, when it cannot prove anything: the
 * process runs as the proxy uid, every probe address is excluded, the family has no route (then
 * nothing can leave over it either: checked with a UDP connect, which sends nothing), or the
 * proxy port is already taken (the sidecar runs; the rules were still read back).
 */
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { cidrContains, inRanges, type RedirectOptions } from './redirect-options';
import type { Family } from './redirect-plan';

const PROBE_ADDRESSES: Record<Family, string[]> = {
  4: ['192.0.2.1', '198.51.100.1', '203.0.113.1'],
  6: ['2001:db8::1', '2001:db8:ffff::1'],
};

export interface ProbeTarget {
  address: string;
  port: number;
}

export type ProbeResult =
  | { status: 'redirected'; target: ProbeTarget }
  | { status: 'skipped'; reason: string; target?: ProbeTarget }
  | { status: 'failed'; reason: string; target: ProbeTarget };

/** A destination the rules must redirect: a documentation address not excluded, a selected port not excluded (pure). */
export function probeTarget(o: RedirectOptions, family: Family): ProbeTarget | { skip: string } {
  const address = PROBE_ADDRESSES[family].find((a) => !o.excludeCidrs.some((c) => cidrContains(c, a)));
  if (!address) return { skip: `every IPv${family} probe address (${PROBE_ADDRESSES[family].join(', ')}) is in --exclude-cidrs` };
  const selected = o.ports === '*' ? [{ from: 1, to: 65535 }] : o.ports;
  const usable = (p: number) => inRanges(p, selected) && !inRanges(p, o.excludePorts);
  let port = [443, ...selected.map((r) => r.from)].find(usable);
  for (const r of selected) for (let p = r.from; p <= r.to && port === undefined; p++) if (usable(p)) port = p;
  if (port === undefined) return { skip: 'every selected port is excluded' };
  return { address, port };
}

/**
 * Whether IPv6 is in use in this network namespace, from `/proc/net/if_inet6` (null: the kernel
 * has no IPv6). In use = an IPv6 address on an interface other than `lo`; with only `::1`, no
 * IPv6 packet can leave the pod (pure).
 */
export function ipv6InUse(ifInet6: string | null): boolean {
  if (ifInet6 === null) return false;
  return ifInet6
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .some((f) => f.length >= 6 && f[5] !== 'lo');
}

/** Whether the kernel has a route to `address` (a UDP connect looks the route up and sends nothing). */
function routeExists(address: string, port: number, family: Family): Promise<string | null> {
  return new Promise((resolve) => {
    const s = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
    s.on('error', (e: NodeJS.ErrnoException) => {
      s.close();
      resolve(e.code ?? e.message);
    });
    // Node reports a failed connect(2) to this callback, not as an 'error' event.
    s.connect(port, address, (err?: NodeJS.ErrnoException) => {
      s.close();
      resolve(err ? (err.code ?? err.message) : null);
    });
  });
}

function listen(port: number, family: Family, nonce: string): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((sock) => {
      sock.on('error', () => undefined);
      sock.end(nonce);
    });
    server.once('error', reject);
    server.listen({ host: family === 4 ? '127.0.0.1' : '::1', port, ipv6Only: family === 6, exclusive: true }, () => resolve(server));
  });
}

function connectAndRead(target: ProbeTarget, family: Family, timeoutMs: number): Promise<{ data: string } | { error: string }> {
  return new Promise((resolve) => {
    let data = '';
    let done = false;
    const finish = (r: { data: string } | { error: string }) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const sock = net.connect({ host: target.address, port: target.port, family });
    const timer = setTimeout(() => finish({ error: `no answer within ${timeoutMs} ms` }), timeoutMs);
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => (data += d));
    sock.on('end', () => finish({ data }));
    sock.on('error', (e: NodeJS.ErrnoException) => finish({ error: e.code ?? e.message }));
  });
}

/** Run the probe for one family (see the module comment). Never throws. */
export async function probeRedirect(o: RedirectOptions, family: Family, timeoutMs = 3000): Promise<ProbeResult> {
  if (typeof process.getuid === 'function' && process.getuid() === o.proxyUid) {
    return { status: 'skipped', reason: `this process runs as the proxy uid ${o.proxyUid}, whose traffic is never redirected` };
  }
  const t = probeTarget(o, family);
  if ('skip' in t) return { status: 'skipped', reason: t.skip };
  const noRoute = await routeExists(t.address, t.port, family);
  if (noRoute) return { status: 'skipped', reason: `no IPv${family} route (${noRoute}): nothing leaves the pod over IPv${family}`, target: t };
  const nonce = crypto.randomBytes(16).toString('hex');
  let server: net.Server;
  try {
    server = await listen(o.proxyPort, family, nonce);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') return { status: 'skipped', reason: `port ${o.proxyPort} on ${family === 4 ? '127.0.0.1' : '::1'} is already in use (the sidecar is running?)`, target: t };
    return { status: 'failed', reason: `cannot listen on the proxy port to probe: ${code ?? (e as Error).message}`, target: t };
  }
  try {
    const r = await connectAndRead(t, family, timeoutMs);
    if ('data' in r && r.data === nonce) return { status: 'redirected', target: t };
    const why = 'error' in r ? r.error : `answered by someone else (${JSON.stringify(r.data.slice(0, 40))})`;
    return { status: 'failed', reason: `a connection to ${fmt(t)} did not reach the proxy port ${o.proxyPort}: ${why}`, target: t };
  } finally {
    await new Promise((r) => server.close(() => r(undefined)));
  }
}

export function fmt(t: ProbeTarget): string {
  return net.isIPv6(t.address) ? `[${t.address}]:${t.port}` : `${t.address}:${t.port}`;
}
