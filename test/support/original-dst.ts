/**
 * `SO_ORIGINAL_DST` of an accepted TCP socket: the destination the client dialled before a nat
 * REDIRECT/DNAT rewrote it, which is what Envoy's `envoy.filters.listener.original_dst` reads
 * (getsockopt SOL_IP/SO_ORIGINAL_DST = 80, linux/netfilter_ipv4.h; SOL_IPV6/IP6T_SO_ORIGINAL_DST =
 * 80, linux/netfilter_ipv6/ip6_tables.h). Node has no getsockopt, so the socket's descriptor is
 * handed to a `python3` child as fd 3 (child_process stdio duplicates it) and read there; the
 * kernel answers from the socket's own network namespace, wherever the child runs.
 *
 * Needs `python3` (Debian's python3 package). Rejects with the kernel's error when the
 * connection has no conntrack entry (it was not NATed: ENOENT).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import type net from 'node:net';

/** Debian's interpreter when present (a version manager's shim on PATH costs half a second per call). */
const PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

const PY = `
import json, socket, struct
s = socket.socket(fileno=3)
try:
    if s.family == socket.AF_INET:
        raw = s.getsockopt(socket.SOL_IP, 80, 16)          # struct sockaddr_in
        addr = socket.inet_ntop(socket.AF_INET, raw[4:8])
    else:
        raw = s.getsockopt(socket.IPPROTO_IPV6, 80, 28)    # struct sockaddr_in6
        addr = socket.inet_ntop(socket.AF_INET6, raw[8:24])
    print(json.dumps({"address": addr, "port": struct.unpack("!H", raw[2:4])[0]}))
except OSError as e:
    print(json.dumps({"error": "%s (errno %d)" % (e.strerror, e.errno)}))
finally:
    s.detach()
`;

export interface OriginalDst {
  address: string;
  port: number;
}

/** Read SO_ORIGINAL_DST of `socket` (an accepted, still open TCP socket). */
export function originalDst(socket: net.Socket, timeoutMs = 10_000): Promise<OriginalDst> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, ['-c', PY], { stdio: ['ignore', 'pipe', 'pipe', socket], timeout: timeoutMs });
    let out = '';
    let err = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      try {
        const r = JSON.parse(out) as OriginalDst | { error: string };
        if ('error' in r) reject(new Error(`SO_ORIGINAL_DST: ${r.error}`));
        else resolve(r);
      } catch {
        reject(new Error(`SO_ORIGINAL_DST: python3 exited ${code}: ${err.trim() || out.trim()}`));
      }
    });
  });
}
