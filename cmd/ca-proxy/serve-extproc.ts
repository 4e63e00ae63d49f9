/**
 * `ca-proxy serve-extproc`: the Envoy network ext_proc gRPC service (docs/extproc.md), with the
 * same engine, admin port (/metrics, /healthz, /readyz) and decision log as `run`. SIGTERM/SIGINT:
 * stop accepting streams, let open ones finish within `extproc.shutdownDeadlineMs`, exit.
 */
import path from 'node:path';
import { configFromOptions } from './load';
import { createRuntime } from './runtime';
import { startAdminServer, type AdminServer } from '../../internal/metrics/admin';
import { parseHostPort } from '../../internal/proxy/listeners';
import { startExtProcServer, type ExtProcServer } from '../../internal/extproc/server';

export interface ServeExtProcOptions {
  config?: string;
  dev?: string;
  listen?: string;
  admin?: string;
}

export async function serveExtProcCommand(opts: ServeExtProcOptions): Promise<void> {
  const config = configFromOptions(opts);
  if (opts.listen) config.extproc.listen = opts.listen;
  if (opts.admin) config.admin = opts.admin;
  // TLS paths are relative to the config file, as every other path in it.
  const base = opts.config ? path.dirname(path.resolve(opts.config)) : process.cwd();
  const tls = config.extproc.tls
    ? { cert: path.resolve(base, config.extproc.tls.cert), key: path.resolve(base, config.extproc.tls.key), clientCA: path.resolve(base, config.extproc.tls.clientCA) }
    : null;

  const rt = await createRuntime(config, { listen: false });
  let admin: AdminServer | null = null;
  if (config.admin) {
    const { host, port } = parseHostPort(config.admin, 'admin');
    admin = await startAdminServer({ host, port, registry: rt.metrics.registry, ready: rt.readiness });
  }
  let server: ExtProcServer;
  try {
    server = await startExtProcServer(rt.ctx, {
      listen: config.extproc.listen,
      tls,
      closeMode: config.extproc.closeMode,
      defaultPort: config.extproc.defaultPort,
      closeStream: config.extproc.closeStream,
      closeBackstopMs: config.limits.handshakeTimeoutMs,
      ready: () => rt.readiness().ready,
      onStreamError: (detail) => rt.logger.warn({ detail }, 'ext_proc stream ended with an error'),
    });
  } catch (err) {
    await Promise.all([admin?.close(), rt.close()]);
    throw err;
  }
  rt.logger.info(
    { extproc: server.address, tls: !!tls, admin: admin ? `${admin.address.address}:${admin.address.port}` : null, ready: rt.readiness() },
    'ca-proxy serve-extproc started',
  );
  process.stderr.write(
    `ca-proxy serve-extproc: NetworkExternalProcessor on ${server.address}${tls ? ' (TLS, client certificates required)' : ''}` +
      `${admin ? `, admin on http://${admin.address.address}:${admin.address.port}` : ''}. Readiness: ${rt.readiness().detail}.\n`,
  );
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    rt.logger.info({ signal, open: server.streams(), deadlineMs: config.extproc.shutdownDeadlineMs }, 'shutting down: no new streams, open ones may finish');
    await server.close(config.extproc.shutdownDeadlineMs);
    await Promise.all([admin?.close(), rt.close()]);
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
}
