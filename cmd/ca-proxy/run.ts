/**
 * `ca-proxy run`: the standalone proxy until SIGINT/SIGTERM. With `workers` above 1 this process
 * is the primary (admin port, log, supervision; cmd/ca-proxy/workers.ts) and its workers run
 * the listeners; with 1 it does everything itself.
 */
import net from 'node:net';
import type { Config } from '../../internal/config/types';
import { createLogger } from '../../internal/metrics/report';
import { parseHostPort } from '../../internal/proxy/listeners';
import { configFromOptions } from './load';
import { createRuntime, type Runtime } from './runtime';
import { isWorker, superviseWorkers, workerCount, workerLink, WorkerStartError } from './workers';

export async function runCommand(opts: { config?: string; dev?: string; listen?: string; admin?: string }): Promise<void> {
  const config = configFromOptions(opts);
  if (opts.listen) config.listen.connect = opts.listen;
  if (opts.admin) config.admin = opts.admin;
  const count = workerCount(config.workers);

  if (isWorker()) return runWorker(config);
  if (count > 1) {
    const logger = createLogger(config.log.level);
    try {
      await superviseWorkers({
        count,
        logger,
        admin: config.admin,
        scheduling: 'kernel',
        graceMs: config.limits.shutdownGraceMs,
        onUp: (where, ready, admin) => {
          const all = admin ? [...where, `admin (/metrics, /healthz, /readyz) on http://${fmt(admin.address)}`] : where;
          logger.info({ listen: all, workers: count, ready }, 'ca-proxy started');
          banner(config, all, ready.detail, count);
        },
      });
    } catch (err) {
      // The worker printed why; a signal death is said here.
      if (err instanceof WorkerStartError && err.code !== null) process.exit(err.code);
      throw err;
    }
    process.exit(0);
  }

  const rt = await createRuntime(config);
  const where = listening(rt);
  if (rt.admin) where.push(`admin (/metrics, /healthz, /readyz) on http://${fmt(rt.admin.address)}`);
  rt.logger.info({ listen: where, ready: rt.readiness() }, 'ca-proxy started');
  banner(config, where, rt.readiness().detail, 1);
  const stop = async (signal: string) => {
    rt.logger.info({ signal, graceMs: config.limits.shutdownGraceMs }, 'shutting down: listeners closed, open connections drain');
    await rt.close(config.limits.shutdownGraceMs);
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
  // Not a reload (CRLs reload by themselves when their files change); but not a death either.
  process.on('SIGHUP', () => rt.logger.warn('SIGHUP ignored: CRLs reload on their own; restart ca-proxy to apply a changed configuration'));
}

/** One worker of several: the listeners and the engine; the primary has the admin port and stdout. */
async function runWorker(config: Config): Promise<void> {
  const link = workerLink();
  const rt = await createRuntime({ ...config, admin: null }, { logger: createLogger(config.log.level, link.log) });
  if (link.primaryAdmin) {
    const { host, port } = parseHostPort(link.primaryAdmin, 'admin');
    rt.ownListeners.add({ address: host, port, family: net.isIPv6(host) ? 'IPv6' : 'IPv4' });
  }
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await rt.close(config.limits.shutdownGraceMs);
    process.exit(0);
  };
  link.up({ where: listening(rt), readiness: rt.readiness, registry: rt.metrics.registry, store: rt.store, reloadPaths: config.revocation.crlPaths, onStop: () => void stop() });
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
  process.on('SIGHUP', () => undefined);
}

function listening(rt: Runtime): string[] {
  const where: string[] = [];
  if (rt.connect) where.push(`HTTP CONNECT proxy on ${fmt(rt.connect.address)}`);
  if (rt.sni) where.push(`SNI-routed TLS listener on ${fmt(rt.sni.address)} (upstream port ${rt.config.listen.sniUpstreamPort})`);
  return where;
}

function banner(config: Config, where: string[], readiness: string, workers: number): void {
  const connect = where.find((w) => w.startsWith('HTTP CONNECT proxy on '));
  const proxy = connect ? `http://${connect.slice('HTTP CONNECT proxy on '.length)}` : null;
  process.stderr.write(
    [
      '',
      `ca-proxy is running${workers > 1 ? ` (${workers} workers)` : ''}:`,
      ...where.map((w) => `  - ${w}`),
      ...(proxy
        ? [
            '',
            'Send traffic through it (workloads must trust the interception CA):',
            `  curl --proxy ${proxy} --cacert ${config.interceptionCA.cert} https://HOST/`,
            `  HTTPS_PROXY=${proxy} SSL_CERT_FILE=${config.interceptionCA.cert} NODE_EXTRA_CA_CERTS=${config.interceptionCA.cert} REQUESTS_CA_BUNDLE=${config.interceptionCA.cert} your-client`,
            `  (curl reads CURL_CA_BUNDLE, not SSL_CERT_FILE: HTTPS_PROXY=${proxy} CURL_CA_BUNDLE=${config.interceptionCA.cert} curl https://HOST/)`,
          ]
        : []),
      '',
      `Readiness: ${readiness}. Stop with Ctrl-C.`,
      '',
    ].join('\n'),
  );
}

function fmt(a: { address: string; port: number; family: string }): string {
  return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}
