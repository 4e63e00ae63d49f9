/**
 * The servers at the far end of every contender:
 *
 * - `openssl s_server -Verify 1 -verify_return_error` (OpenSSL's own server, requiring a client
 *   certificate from client-ca) for the handshake, latency and resumption scenarios. `-rev`
 *   answers each line reversed (`ping` → `gnip`). It serves one connection at a time, which is
 *   what a load generator running one connection at a time needs. Session cache and tickets off
 *   (`-no_cache -num_tickets 0`) unless resumption is measured.
 * - `tlsbench server` (bench/tlsbench.c, a thread per connection, the same certificate checks)
 *   where s_server would be the bottleneck: bulk transfers, 64 parallel transfers, 1,000 held
 *   connections, the ext_proc and inspect comparisons.
 */
import path from 'node:path';
import type { Upstream } from './contenders';
import type { BenchPki } from './pki';
import { freePort, startProcess, waitForPort, type Proc } from './processes';
import { startTlsbenchServer } from './tlsbench';

export interface RunningUpstream extends Upstream {
  kind: 's_server' | 'tlsbench';
  proc: Proc;
  stop(): Promise<void>;
}

export async function startSServer(pki: BenchPki, dir: string, o: { tls?: '1.2' | '1.3'; resumption?: boolean } = {}): Promise<RunningUpstream> {
  const tls = o.tls ?? '1.3';
  const port = await freePort();
  const args = [
    's_server', '-accept', `127.0.0.1:${port}`, '-cert', pki.serverCert, '-key', pki.serverKey, '-cert_chain', pki.intermediate,
    '-CAfile', pki.clientCa, '-Verify', '1', '-verify_return_error', tls === '1.3' ? '-tls1_3' : '-tls1_2', '-rev',
    ...(o.resumption ? [] : ['-no_cache', '-num_tickets', '0']),
  ];
  const proc = startProcess('openssl s_server', 'openssl', args, { logFile: path.join(dir, `s_server-${port}.log`) });
  await waitForPort(port, proc);
  return { kind: 's_server', port, tls, proc, stop: () => proc.stop() };
}

export async function startFastUpstream(pki: BenchPki, o: { tls?: '1.2' | '1.3' } = {}): Promise<RunningUpstream> {
  const tls = o.tls ?? '1.3';
  const port = await freePort();
  const proc = await startTlsbenchServer({ port, cert: pki.serverChain, key: pki.serverKey, clientCa: pki.clientCa, tls });
  return { kind: 'tlsbench', port, tls, proc, stop: () => proc.stop() };
}
