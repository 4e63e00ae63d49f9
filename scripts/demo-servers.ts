/**
 * The two demo HTTPS servers of `make demo` (and of the `make run` end-to-end test): both
 * require a client certificate from `client-ca` (the CA of the proxy identity), like a
 * partner API with mutual TLS. "good" uses demo-good.crt; "revoked" uses demo-revoked.crt,
 * which demo-crl.pem revokes. Each answers with the subject of the client certificate it
 * received, so you can see that it is the proxy's, never the workload's.
 */
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';

export interface DemoServers {
  good: { port: number; url: string };
  revoked: { port: number; url: string };
  close(): Promise<void>;
}

function start(dir: string, base: string, port: number): Promise<https.Server> {
  const server = https.createServer(
    {
      cert: fs.readFileSync(path.join(dir, `${base}.crt`)),
      key: fs.readFileSync(path.join(dir, `${base}.key`)),
      ca: fs.readFileSync(path.join(dir, 'client-ca.crt')),
      requestCert: true,
      rejectUnauthorized: true,
    },
    (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerX509Certificate();
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`hello from ${base}: your client certificate is "${peer?.subject.replace(/\n/g, ', ') ?? 'none'}"\n`);
    },
  );
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

/** Starts both servers on 127.0.0.1 (ports 0 = ephemeral). */
export async function startDemoServers(dir: string, ports = { good: 0, revoked: 0 }): Promise<DemoServers> {
  const good = await start(dir, 'demo-good', ports.good);
  const revoked = await start(dir, 'demo-revoked', ports.revoked);
  const portOf = (s: https.Server) => (s.address() as AddressInfo).port;
  return {
    good: { port: portOf(good), url: `https://good.demo.localhost:${portOf(good)}/` },
    revoked: { port: portOf(revoked), url: `https://revoked.demo.localhost:${portOf(revoked)}/` },
    close: async () => {
      for (const s of [good, revoked]) {
        s.closeAllConnections();
        await new Promise<void>((r) => s.close(() => r()));
      }
    },
  };
}
