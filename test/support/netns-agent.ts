/**
 * The program test/support/netns.ts starts inside a network namespace (`ip netns exec NS node
 * netns-agent.js MODE JSON`). Not a test; run by the harness only.
 *
 *   serve   [{host, port, says, originalDst?}]  listen on each; every connection is answered with
 *           one JSON line {says, local, remote, originalDst?} and closed. Prints "ready" once all
 *           listen; runs until killed.
 *   connect [{host, port}] (+ timeoutMs)        connect to each in turn, read until the peer
 *           closes, print one JSON array: {said} (the peer's JSON line, parsed) or {error}.
 *
 * It knows nothing of who it runs as: the harness starts it under `setpriv` for another uid.
 */
import net from 'node:net';
import { originalDst } from './original-dst';

interface Listener {
  host: string;
  port: number;
  says: string;
  originalDst?: boolean;
}

function addr(a: string | undefined, p: number | undefined): string {
  return a && a.includes(':') ? `[${a}]:${p}` : `${a}:${p}`;
}

async function serve(listeners: Listener[]): Promise<void> {
  await Promise.all(
    listeners.map(
      (l) =>
        new Promise<void>((resolve, reject) => {
          const server = net.createServer((sock) => {
            sock.on('error', () => undefined);
            const reply: Record<string, unknown> = { says: l.says, local: addr(sock.localAddress, sock.localPort), remote: addr(sock.remoteAddress, sock.remotePort) };
            const answer = () => sock.end(`${JSON.stringify(reply)}\n`);
            if (!l.originalDst) return answer();
            originalDst(sock).then(
              (d) => {
                reply.originalDst = addr(d.address, d.port);
                answer();
              },
              (e: Error) => {
                reply.originalDst = `error: ${e.message}`;
                answer();
              },
            );
          });
          server.once('error', reject);
          server.listen({ host: l.host, port: l.port, ipv6Only: l.host.includes(':') }, () => resolve());
        }),
    ),
  );
  process.stdout.write('ready\n');
  process.on('SIGTERM', () => process.exit(0));
}

function connectOne(host: string, port: number, timeoutMs: number): Promise<{ said?: unknown; error?: string }> {
  return new Promise((resolve) => {
    let data = '';
    const sock = net.connect({ host, port });
    const timer = setTimeout(() => {
      sock.destroy();
      resolve({ error: `ETIMEDOUT (no answer within ${timeoutMs} ms)` });
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => (data += d));
    sock.on('end', () => {
      clearTimeout(timer);
      try {
        resolve({ said: JSON.parse(data) });
      } catch {
        resolve({ said: data });
      }
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ error: e.code ?? e.message });
    });
  });
}

async function connect(spec: { targets: { host: string; port: number }[]; timeoutMs?: number }): Promise<void> {
  const results = [];
  for (const t of spec.targets) results.push(await connectOne(t.host, t.port, spec.timeoutMs ?? 3000));
  process.stdout.write(`${JSON.stringify(results)}\n`);
}

const [mode, json] = process.argv.slice(2);
const arg = JSON.parse(json ?? 'null');
(mode === 'serve' ? serve(arg) : mode === 'connect' ? connect(arg) : Promise.reject(new Error(`netns-agent: unknown mode ${mode}`))).catch((e: Error) => {
  process.stderr.write(`netns-agent: ${e.message}\n`);
  process.exit(1);
});
