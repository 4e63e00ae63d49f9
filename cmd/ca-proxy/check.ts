/**
 * `ca-proxy check HOST:PORT`: runs one connection through the real engine — the same policy,
 * revocation store and identities as `run` — with an in-process workload, and prints the
 * decision. The workload side accepts whatever leaf the proxy mints (it is only a probe).
 */
import net from 'node:net';
import tls from 'node:tls';
import { configFromOptions } from './load';
import { createRuntime } from './runtime';
import { serveConnection } from '../../internal/proxy/pipe';
import { parseHostPort } from '../../internal/proxy/listeners';
import type { Decision } from '../../internal/engine/decision';
import { createLogger } from '../../internal/metrics/report';

export async function checkCommand(target: string, opts: { sni?: string; config?: string; dev?: string; waitReady?: string }): Promise<void> {
  const { host, port } = parseHostPort(target, 'target');
  const waitSeconds = opts.waitReady === undefined ? 0 : Number(opts.waitReady);
  if (!Number.isInteger(waitSeconds) || waitSeconds < 0 || waitSeconds > 3600) throw new Error(`--wait-ready: not a number of seconds 0–3600: ${JSON.stringify(opts.waitReady)}`);
  const config = configFromOptions(opts);
  const rt = await createRuntime(config, { listen: false, logger: createLogger('error', process.stderr) });
  if (waitSeconds > 0) {
    // CRLs from ConfigMaps arrive after start (the informer's list): without waiting, a hardFail
    // rule would answer revocation_unknown for a CRL that is only a moment away.
    const deadline = Date.now() + waitSeconds * 1000;
    while (!rt.readiness().ready) {
      if (Date.now() >= deadline) {
        await rt.close();
        throw new Error(`not ready after ${waitSeconds} s: ${rt.readiness().detail}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  const decision = await new Promise<Decision>((resolve, reject) => {
    const server = net.createServer((sock) => {
      serveConnection(rt.ctx, sock, { host, port }, { connectTimeoutMs: config.limits.connectTimeoutMs });
    });
    rt.onDecision((d) => {
      server.close();
      resolve(d);
    });
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port: local } = server.address() as net.AddressInfo;
      const sni = opts.sni ?? (net.isIP(host) ? undefined : host);
      const probe = tls.connect({ host: '127.0.0.1', port: local, servername: sni, rejectUnauthorized: false });
      probe.on('secureConnect', () => probe.end());
      probe.on('error', () => undefined);
    });
  });
  await rt.close();
  process.stdout.write(JSON.stringify(decision, null, 2) + '\n');
  // Exit now: the probe's sockets may still be draining, and there is nothing more to report.
  process.exit(decision.outcome === 'allow' ? 0 : 2);
}
