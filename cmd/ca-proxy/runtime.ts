/**
 * Composition root: turns a validated Config into a running ca-proxy (engine context,
 * revocation store with its reload loop, listeners, admin server). `run` and `check` and
 * the integration tests all start ca-proxy through here, so they run the same code.
 */
import fs from 'node:fs';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import type { Config } from '../../internal/config/types';
import type { EngineContext } from '../../internal/engine/context';
import { matchRule } from '../../internal/engine/policy';
import { createLogger, createReporter } from '../../internal/engine/report';
import type { Decision } from '../../internal/engine/decision';
import { LeafMinter, type MintedLeaf } from '../../internal/pki/mint';
import { loadIdentities } from '../../internal/pki/identity';
import { readPemBundle } from '../../internal/pki/pem';
import { RevocationStore } from '../../internal/pki/store';
import { createMetrics, observeCrls, observeReload, type Metrics } from '../../internal/metrics/registry';
import { startAdminServer, type AdminServer } from '../../internal/metrics/admin';
import { listenConnect, listenSni, parseHostPort, type Listening } from '../../internal/proxy/listeners';
import { startCrlWatcherFromConfig, type CrlWatcher } from '../../internal/k8s/watcher';
import { podEventsFromConfig } from '../../internal/k8s/events';

export interface Runtime {
  config: Config;
  ctx: EngineContext;
  store: RevocationStore | null;
  /** The CRL ConfigMap watcher, when `revocation.kubernetes` is set. */
  crlWatcher: CrlWatcher | null;
  metrics: Metrics;
  logger: Logger;
  connect: Listening | null;
  sni: Listening | null;
  admin: AdminServer | null;
  /** Every decision, in order (also logged and counted). */
  onDecision(fn: (d: Decision) => void): void;
  readiness(): { ready: boolean; detail: string };
  close(): Promise<void>;
}

export interface RuntimeOptions {
  logger?: Logger;
  /** Start the listeners and admin server (default true); `check` only needs the engine. */
  listen?: boolean;
}

function readCerts(files: string[]): X509Certificate[] {
  return files.flatMap((f) => readPemBundle(f).map((der) => new X509Certificate(der)));
}

/** Builds the engine context and the revocation store; loads CRLs once. */
export async function createRuntime(config: Config, opts: RuntimeOptions = {}): Promise<Runtime> {
  const logger = opts.logger ?? createLogger(config.log.level);
  const metrics = createMetrics();
  const report = createReporter({ logger, metrics });
  const listeners: ((d: Decision) => void)[] = [];

  const anchors = readCerts(config.trust.caFiles);
  if (config.trust.systemRoots) anchors.push(...tls.rootCertificates.map((pem) => new X509Certificate(pem)));
  const crlSigners = readCerts(config.revocation.crlSigners);

  let store: RevocationStore | null = null;
  const k8sCrls = config.revocation.kubernetes ?? null;
  if (config.revocation.crlPaths.length > 0 || k8sCrls) {
    store = new RevocationStore({ trust: [...anchors, ...crlSigners], clockSkewMs: config.revocation.clockSkewSeconds * 1000 });
    store.on('reload', (r: { accepted: { source: string }[]; refused: { source: string; code: string; message: string }[] }) => {
      observeReload(metrics, { accepted: r.accepted.length, refused: r.refused.length });
      observeCrls(metrics, store!.snapshot());
      for (const bad of r.refused) logger.warn({ crl: bad.source, code: bad.code }, `CRL refused: ${bad.message}`);
      if (r.accepted.length) logger.info({ crls: r.accepted.map((a) => a.source) }, 'CRLs accepted');
    });
    if (config.revocation.crlPaths.length > 0) await store.loadPaths(config.revocation.crlPaths);
    if (config.revocation.watch && config.revocation.crlPaths.length > 0) store.watch(config.revocation.crlPaths);
  }
  // Not awaited to sync: readiness follows the store, so an API outage delays readiness, not start-up.
  const crlWatcher = store && k8sCrls ? await startCrlWatcherFromConfig(k8sCrls, store, { paths: config.revocation.crlPaths, logger }) : null;
  const podEvents = podEventsFromConfig(config.events, k8sCrls?.kubeconfig ?? null, logger);

  const identities = loadIdentities(config.identities, process.cwd(), { warn: (m) => logger.warn(m) });
  const minter = new LeafMinter({
    caCertPem: fs.readFileSync(config.interceptionCA.cert, 'utf8'),
    caKeyPem: fs.readFileSync(config.interceptionCA.key, 'utf8'),
    validityHours: config.leaf.validityHours,
    cacheSize: config.leaf.cacheSize,
    secureContext: false,
  });
  const workloadCA = config.workloadCA.map((f) => fs.readFileSync(f, 'utf8'));
  // One SecureContext per minted leaf and version cap, holding the workload CAs for clientAuth.
  const contexts = new WeakMap<MintedLeaf, Map<string, tls.SecureContext>>();

  const ctx: EngineContext = {
    limits: config.limits,
    policy: (dest) => matchRule(config, dest),
    leafContext: async (name, opts = {}) => {
      const leaf = await minter.mint(name);
      let byVersion = contexts.get(leaf);
      if (!byVersion) contexts.set(leaf, (byVersion = new Map()));
      const key = opts.maxVersion ?? 'any';
      let sc = byVersion.get(key);
      if (!sc) {
        sc = tls.createSecureContext({
          cert: leaf.chainPem,
          key: leaf.keyPem,
          ...(workloadCA.length ? { ca: workloadCA } : {}),
          ...(opts.maxVersion ? { maxVersion: opts.maxVersion } : {}),
        });
        byVersion.set(key, sc);
      }
      return sc;
    },
    identities: new Map([...identities].map(([name, id]) => [name, { name, secureContextOptions: id.secureContextOptions }])),
    anchors,
    workloadAnchors: readCerts(config.workloadCA),
    revocation: store,
    report: (d) => {
      report(d);
      podEvents?.report(d);
      for (const fn of listeners) fn(d);
    },
    now: () => new Date(),
    activeConnections: metrics.activeConnections,
  };

  const everySoft = config.defaults.revocation === 'softFail' && config.rules.every((r) => (r.revocation ?? 'softFail') === 'softFail');
  const readiness = () => {
    if (!store) return everySoft ? { ready: true, detail: 'no CRLs configured; every rule is softFail' } : { ready: false, detail: 'no CRL source configured and a rule is hardFail' };
    if (store.ready) return { ready: true, detail: `${store.snapshot().length} CRL(s) loaded` };
    return everySoft ? { ready: true, detail: 'no usable CRL yet; every rule is softFail' } : { ready: false, detail: 'no usable CRL loaded yet' };
  };

  let connect: Listening | null = null;
  let sni: Listening | null = null;
  let admin: AdminServer | null = null;
  if (opts.listen !== false) {
    if (config.listen.connect) connect = await listenConnect(ctx, config.listen.connect, { connectTimeoutMs: config.limits.connectTimeoutMs });
    if (config.listen.sni) sni = await listenSni(ctx, config.listen.sni, { connectTimeoutMs: config.limits.connectTimeoutMs, upstreamPort: config.listen.sniUpstreamPort });
    if (config.admin) {
      const { host, port } = parseHostPort(config.admin, 'admin');
      admin = await startAdminServer({ host, port, registry: metrics.registry, ready: readiness });
    }
  }

  return {
    config,
    ctx,
    store,
    crlWatcher,
    metrics,
    logger,
    connect,
    sni,
    admin,
    onDecision: (fn) => listeners.push(fn),
    readiness,
    close: async () => {
      store?.close();
      await Promise.all([crlWatcher?.stop(), podEvents?.close()]);
      await Promise.all([connect?.close(1000), sni?.close(1000), admin?.close()]);
    },
  };
}
