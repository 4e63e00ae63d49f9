/**
 * `ca-proxy inject --config FILE`: the mutating admission webhook that injects the egress filter
 * into labelled pods (docs/kubernetes.md "Sidecar injection"). HTTPS on `injector.listen`
 * (`POST /mutate`, internal/k8s/injector/server.ts); /metrics, /healthz and /readyz on the admin
 * port. SIGTERM/SIGINT: stop accepting, finish the requests in flight, exit.
 *
 * The config file is the processors' format; `injector`, `admin` and `log` are used, and
 * `interceptionCA` is not needed (the injector must not hold that key).
 */
import net from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';
import { ConfigError, parseHostPort, type ConfigProblem } from '../../internal/config/load';
import { PACKAGE_VERSION, defaultConfig } from '../../internal/config/defaults';
import type { Config, InjectorConfig } from '../../internal/config/types';
import { createLogger } from '../../internal/metrics/report';
import { AnnotationError, redirectSettings } from '../../internal/k8s/injector/annotations';
import { BootstrapTemplate, TemplateError } from '../../internal/k8s/injector/bootstrap';
import type { InjectorSettings } from '../../internal/k8s/injector/pod';
import { startWebhookServer, type WebhookServer } from '../../internal/k8s/injector/server';
import { ServingCertificate } from '../../internal/k8s/injector/serving-cert';
import { startAdminServer, type AdminServer } from '../../internal/metrics/admin';
import { createInjectorMetrics, type InjectorMetrics } from '../../internal/metrics/injector';
import { loadConfigWithoutInterceptionCA } from './load';

export interface InjectOptions {
  config: string;
  listen?: string;
  admin?: string;
}

/**
 * Loads and checks a config file for the injector: the `injector` section with its paths resolved
 * against the file's folder, its defaults for the annotations parsed, its bootstrap template
 * rendered once for each placement.
 * @throws ConfigError
 */
export function loadInjectorConfig(file: string): { config: Config; injector: InjectorConfig; template: BootstrapTemplate } {
  const config = loadConfigWithoutInterceptionCA(file);
  const base = path.dirname(path.resolve(file));
  const i = config.injector ?? defaultConfig().injector!;
  const r = (f: string): string => path.resolve(base, f);
  const injector: InjectorConfig = {
    ...i,
    tls: { cert: r(i.tls.cert), key: r(i.tls.key) },
    envoyBootstrapTemplate: i.envoyBootstrapTemplate === null ? null : r(i.envoyBootstrapTemplate),
  };
  const problems: ConfigProblem[] = [];
  try {
    redirectSettings({}, injector);
  } catch (err) {
    if (!(err instanceof AnnotationError)) throw err;
    problems.push({ path: 'injector', message: err.message.replace(/^injector default for /, '') });
  }
  const host = injector.processorAddress.slice(0, injector.processorAddress.lastIndexOf(':'));
  if (injector.placement === 'central' && net.isIP(host)) {
    problems.push({ path: 'injector.processorAddress', message: `must name the processor Service by DNS name (Envoy checks it as the certificate's SAN), not an IP address (got ${JSON.stringify(host)})` });
  }
  const ports = [['proxyPort', injector.proxyPort], ['readyPort', injector.readyPort], ...(injector.placement === 'sidecar' ? [['processorAdminPort', injector.processorAdminPort]] : [])] as [string, number][];
  for (let a = 1; a < ports.length; a++) {
    for (let b = 0; b < a; b++) if (ports[a]![1] === ports[b]![1]) problems.push({ path: `injector.${ports[a]![0]}`, message: `same port as injector.${ports[b]![0]} (${ports[b]![1]})` });
  }
  let template: BootstrapTemplate | null = null;
  try {
    template = BootstrapTemplate.load(injector.envoyBootstrapTemplate ?? undefined);
    for (const placement of ['central', 'sidecar'] as const) template.render({ ...injector, placement, ports: [443] });
  } catch (err) {
    if (!(err instanceof TemplateError)) throw err;
    problems.push({ path: 'injector.envoyBootstrapTemplate', message: err.message });
  }
  if (problems.length) throw new ConfigError(file, problems);
  return { config, injector, template: template! };
}

export interface RunningInjector {
  server: WebhookServer;
  admin: AdminServer | null;
  certificate: ServingCertificate;
  metrics: InjectorMetrics;
  /** Stop: no new connections, requests in flight finish (at most `graceMs`). */
  close(graceMs?: number): Promise<void>;
}

/**
 * Starts the webhook from a loaded config (the command, and tests in-process).
 * @throws (rejects) when the serving certificate cannot be read or a listener cannot bind
 */
export async function startInjector(
  config: Config,
  injector: InjectorConfig,
  template: BootstrapTemplate,
  opts: { logger?: Logger; listen?: string; admin?: string | null; pollMs?: number; requestTimeoutMs?: number } = {},
): Promise<RunningInjector> {
  const logger = opts.logger ?? createLogger(config.log.level);
  const metrics = createInjectorMetrics();
  const certificate = new ServingCertificate({ certFile: injector.tls.cert, keyFile: injector.tls.key, pollMs: opts.pollMs });
  const settings: InjectorSettings = { config: injector, template, version: PACKAGE_VERSION };
  const listen = parseHostPort(opts.listen ?? injector.listen);
  const server = await startWebhookServer({ host: listen.host, port: listen.port, certificate, settings, metrics, logger, maxRequestBytes: injector.maxRequestBytes, requestTimeoutMs: opts.requestTimeoutMs });
  certificate.start();

  let admin: AdminServer | null = null;
  const adminAddr = opts.admin === undefined ? (injector.admin ?? config.admin) : opts.admin;
  if (adminAddr) {
    const { host, port } = parseHostPort(adminAddr);
    try {
      admin = await startAdminServer({
        host,
        port,
        registry: metrics.registry,
        // Serving with a certificate that is still valid.
        ready: () => {
          const { notAfter, fingerprint } = certificate.current;
          const ok = notAfter.getTime() > Date.now();
          return { ready: ok, detail: `${ok ? 'serving' : 'serving certificate EXPIRED'}: sha256 ${fingerprint}, notAfter ${notAfter.toISOString()}` };
        },
      });
    } catch (err) {
      certificate.stop();
      await server.close(0);
      throw err;
    }
  }
  const c = certificate.current;
  logger.info(
    { webhook: `${server.address.address}:${server.address.port}`, admin: admin ? `${admin.address.address}:${admin.address.port}` : null, placement: injector.placement, template: template.source, certificate: { sha256: c.fingerprint, notAfter: c.notAfter.toISOString() } },
    'ca-proxy inject started',
  );
  return {
    server,
    admin,
    certificate,
    metrics,
    async close(graceMs) {
      certificate.stop();
      await server.close(graceMs);
      await admin?.close();
    },
  };
}

export async function injectCommand(opts: InjectOptions): Promise<void> {
  const { config, injector, template } = loadInjectorConfig(opts.config);
  const run = await startInjector(config, injector, template, { listen: opts.listen, admin: opts.admin });
  process.stderr.write(
    `ca-proxy inject: AdmissionReviews on https://${run.server.address.address}:${run.server.address.port}/mutate (placement ${injector.placement})` +
      `${run.admin ? `, admin on http://${run.admin.address.address}:${run.admin.address.port}` : ''}.\n`,
  );
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await run.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}
