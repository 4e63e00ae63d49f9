/**
 * `ca-proxy serve-extproc`: the Envoy network ext_proc gRPC service (docs/extproc.md), with the
 * same engine, admin port (/metrics, /healthz, /readyz) and decision log as `run`. SIGTERM/SIGINT:
 * stop accepting streams, let open ones finish within `extproc.shutdownDeadlineMs`, exit.
 * With `workers` above 1 the gRPC listener is shared by worker processes (cmd/ca-proxy/workers.ts)
 * and this process keeps the admin port and the log.
 */
import path from 'node:path';
import { configFromOptions } from './load';
import { createRuntime } from './runtime';
import { startAdminServer, type AdminServer } from '../../internal/metrics/admin';
import { parseHostPort } from '../../internal/proxy/listeners';
import { claimUnixSocket, startExtProcServer, type ExtProcServer } from '../../internal/extproc/server';
import { createLogger } from '../../internal/metrics/report';
import { isWorker, superviseWorkers, workerCount, workerLink, WorkerStartError, type WorkerLink } from './workers';

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

  const count = workerCount(config.workers);
  if (count > 1 && !isWorker()) {
    await claimUnixSocket(config.extproc.listen);
    const logger = createLogger(config.log.level);
    try {
      await superviseWorkers({
        count,
        logger,
        admin: config.admin,
        scheduling: 'round-robin',
        // Streams get the deadline; the runtime's own close after it.
        graceMs: config.extproc.shutdownDeadlineMs + config.limits.shutdownGraceMs,
        onUp: (_where, ready, admin) => {
          logger.info({ extproc: config.extproc.listen, workers: count, admin: admin ? `${admin.address.address}:${admin.address.port}` : null, ready }, 'ca-proxy serve-extproc started');
          process.stderr.write(
            `ca-proxy serve-extproc: NetworkExternalProcessor on ${config.extproc.listen}${tls ? ' (TLS, client certificates required)' : ''} in ${count} workers` +
              `${admin ? `, admin on http://${admin.address.address}:${admin.address.port}` : ''}. Readiness: ${ready.detail}.\n`,
          );
        },
      });
    } catch (err) {
      // The worker printed why; a signal death is said here.
      if (err instanceof WorkerStartError && err.code !== null) process.exit(err.code);
      throw err;
    }
    process.exit(0);
  }
  const link: WorkerLink | null = isWorker() ? workerLink() : null;
  if (link) config.admin = null;

  const rt = await createRuntime(config, { listen: false, ...(link ? { logger: createLogger(config.log.level, link.log) } : {}) });
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
      sharedListener: !!link,
      onStreamError: (detail) => rt.logger.warn({ detail }, 'ext_proc stream ended with an error'),
    });
  } catch (err) {
    await Promise.all([admin?.close(), rt.close()]);
    throw err;
  }
  if (link) {
    let stopping = false;
    const stop = async () => {
      if (stopping) return;
      stopping = true;
      await server.close(config.extproc.shutdownDeadlineMs);
      await rt.close();
      process.exit(0);
    };
    link.up({ where: [server.address], readiness: rt.readiness, registry: rt.metrics.registry, store: rt.store, reloadPaths: config.revocation.crlPaths, onStop: () => void stop() });
    process.once('SIGINT', () => void stop());
    process.once('SIGTERM', () => void stop());
    return;
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
