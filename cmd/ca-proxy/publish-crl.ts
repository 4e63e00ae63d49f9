/**
 * `ca-proxy publish-crl --config FILE`: the CRL publisher controller (docs/kubernetes.md,
 * "Publisher"). Runs until SIGTERM/SIGINT: leader election on the configured Lease, and while
 * leading, fetch → validate → publish every source (internal/k8s/publisher.ts). The admin port
 * serves /metrics (internal/metrics/publisher.ts), /healthz and /readyz.
 *
 * The config file is the processors' format; only `publisher`, `trust`, `revocation.crlSigners`,
 * `revocation.clockSkewSeconds`, `admin` and `log` are used. `interceptionCA` is not needed
 * here (the publisher must not hold that key), so it may be left out.
 */
import crypto, { X509Certificate } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { ConfigError, parseHostPort } from '../../internal/config/load';
import { loadConfigWithoutInterceptionCA } from './load';
import { defaultConfig } from '../../internal/config/defaults';
import type { Config, PublisherConfig } from '../../internal/config/types';
import { createLogger } from '../../internal/metrics/report';
import { inClusterNamespace, loadKubeConfig } from '../../internal/k8s/kubeconfig';
import { LeaderElector } from '../../internal/k8s/lease';
import { Publisher, distributionPointUrls } from '../../internal/k8s/publisher';
import { startAdminServer, type AdminServer } from '../../internal/metrics/admin';
import { createPublisherMetrics, type PublisherMetrics } from '../../internal/metrics/publisher';
import { readPemBundle } from '../../internal/pki/pem';

export interface PublishCrlOptions {
  config: string;
  admin?: string;
  identity?: string;
}

/**
 * Load a config file for publish-crl: the processors' loader and schema, with interceptionCA
 * optional and the publisher's paths (sources.caFiles, kubeconfig) resolved against the file's folder.
 * @throws ConfigError
 */
export function loadPublisherConfig(file: string): { config: Config; publisher: PublisherConfig } {
  const base = path.dirname(path.resolve(file));
  const config = loadConfigWithoutInterceptionCA(file);
  const p = config.publisher ?? defaultConfig().publisher!;
  const r = (f: string): string => path.resolve(base, f);
  const publisher: PublisherConfig = {
    ...p,
    sources: { urls: p.sources.urls, caFiles: p.sources.caFiles.map(r) },
    kubeconfig: p.kubeconfig === null ? null : r(p.kubeconfig),
  };
  const problems = [];
  if (publisher.lease.renewSeconds >= publisher.lease.durationSeconds) {
    problems.push({ path: 'publisher.lease.renewSeconds', message: `must be below durationSeconds (${publisher.lease.durationSeconds}): a leader renews several times per lease` });
  }
  if (publisher.sources.urls.length === 0 && publisher.sources.caFiles.length === 0) {
    problems.push({ path: 'publisher.sources', message: 'needs at least one of urls, caFiles' });
  }
  if (config.trust.caFiles.length === 0 && config.revocation.crlSigners.length === 0 && publisher.sources.caFiles.length === 0 && !config.trust.systemRoots) {
    problems.push({ path: 'trust.caFiles', message: 'no CRL signer: set trust.caFiles, revocation.crlSigners or publisher.sources.caFiles, or no fetched CRL could ever be verified' });
  }
  if (problems.length > 0) throw new ConfigError(file, problems);
  return { config, publisher };
}

export interface RunningPublisher {
  publisher: Publisher;
  elector: LeaderElector;
  metrics: PublisherMetrics;
  admin: AdminServer | null;
  urls: string[];
  /** Stop publishing; `release` (default true) gives the Lease up for a fast takeover. */
  close(opts?: { release?: boolean }): Promise<void>;
}

/**
 * Start a publisher from a loaded config (the command, and tests in-process).
 * @throws Error for unreadable certificate files or a source list that ends up empty
 */
export async function startPublisher(
  config: Config,
  p: PublisherConfig,
  opts: { kubeConfig?: KubeConfig; identity?: string; logger?: Logger; admin?: string | null; minDelayMs?: number; retryBaseDelayMs?: number } = {},
): Promise<RunningPublisher> {
  const logger = opts.logger ?? createLogger(config.log.level);
  const readCerts = (files: string[]): X509Certificate[] => files.flatMap((f) => readPemBundle(f).map((der) => new X509Certificate(der)));
  const caCerts = readCerts(p.sources.caFiles);
  const trust = [...readCerts(config.trust.caFiles), ...readCerts(config.revocation.crlSigners), ...caCerts];
  if (config.trust.systemRoots) trust.push(...tls.rootCertificates.map((pem) => new X509Certificate(pem)));
  const dpUrls = distributionPointUrls(caCerts, (c, e) => logger.warn({ subject: c.subject, err: e.message }, 'cannot read cRLDistributionPoints'));
  const urls = [...new Set([...p.sources.urls, ...dpUrls])];
  if (urls.length === 0) throw new Error('publisher: no CRL source (publisher.sources.urls is empty and the caFiles name no http/https distribution point)');

  const kubeConfig = opts.kubeConfig ?? loadKubeConfig(p.kubeconfig, 'publisher.kubeconfig');
  const namespace = p.namespace ?? inClusterNamespace() ?? 'default';
  const identity = opts.identity ?? `${os.hostname()}_${crypto.randomBytes(4).toString('hex')}`;
  const elector = new LeaderElector({
    kubeConfig,
    namespace,
    name: p.lease.name,
    identity,
    leaseDurationSeconds: p.lease.durationSeconds,
    renewSeconds: p.lease.renewSeconds,
    log: logger,
  });
  let publisher: Publisher | null = null;
  const metrics = createPublisherMetrics(() => publisher?.nextUpdates() ?? new Map());
  publisher = new Publisher({
    kubeConfig,
    namespace,
    configMapName: p.configMapName,
    urls,
    trust,
    leadership: elector,
    intervalMs: p.intervalSeconds * 1000,
    marginMs: p.nextUpdateMarginSeconds * 1000,
    skewMs: config.revocation.clockSkewSeconds * 1000,
    fetch: { ...p.fetch, baseDelayMs: opts.retryBaseDelayMs },
    minDelayMs: opts.minDelayMs,
    metrics,
    log: logger,
  });
  elector.on('leading', () => logger.info({ identity, lease: p.lease.name, namespace }, 'became the leader: publishing'));
  elector.on('stopped-leading', () => logger.info({ identity, lease: p.lease.name }, 'stopped leading'));
  elector.on('leader', (holder: string | null) => logger.info({ holder }, 'Lease holder'));
  publisher.start();
  elector.start();

  let admin: AdminServer | null = null;
  const adminAddr = opts.admin === undefined ? config.admin : opts.admin;
  if (adminAddr) {
    const { host, port } = parseHostPort(adminAddr);
    admin = await startAdminServer({
      host,
      port,
      registry: metrics.registry,
      // Ready once leader election has seen the Lease (leading or following).
      ready: () => {
        const holder = elector.leader;
        const st = publisher!.status();
        const detail = `${elector.isLeader() ? 'leading' : `following ${holder ?? '(no leader yet)'}`}; ${st.map((s) => `${s.url}: ${s.published ? `cRLNumber ${s.published.crlNumber ?? 'none'}` : 'nothing published'}${s.lastError ? ` (${s.lastError})` : ''}`).join('; ')}`;
        return { ready: holder !== null, detail };
      },
    });
  }
  logger.info({ identity, namespace, sources: urls, configMapName: p.configMapName, admin: admin ? `${admin.address.address}:${admin.address.port}` : null }, 'ca-proxy publish-crl started');
  return {
    publisher,
    elector,
    metrics,
    admin,
    urls,
    async close(o = {}) {
      await publisher!.stop();
      await elector.stop({ release: o.release });
      await admin?.close();
    },
  };
}

export async function publishCrlCommand(opts: PublishCrlOptions): Promise<void> {
  const { config, publisher } = loadPublisherConfig(opts.config);
  const run = await startPublisher(config, publisher, { identity: opts.identity, admin: opts.admin });
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await run.close({ release: true });
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}
