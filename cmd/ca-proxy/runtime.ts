/**
 * Composition root: turns a validated Config into a running ca-proxy (engine context,
 * revocation store with its reload loop, listeners, admin server). `run` and `check` and
 * the integration tests all start ca-proxy through here, so they run the same code.
 */
import dns from 'node:dns';
import fs from 'node:fs';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import type { Config } from '../../internal/config/types';
import type { EngineContext } from '../../internal/engine/context';
import { matchRule } from '../../internal/engine/policy';
import { createLogger, createReporter } from '../../internal/metrics/report';
import type { Decision } from '../../internal/engine/decision';
import { LeafMinter, MintError } from '../../internal/pki/mint';
import { SecureContexts } from '../../internal/pki/secure-contexts';
import { loadIdentities } from '../../internal/pki/identity';
import { pemCertificates } from '../../internal/pki/pem';
import { dnOf } from '../../internal/pki/certinfo';
import { RevocationStore, type LoadReport } from '../../internal/pki/store';
import { ReloadDiff } from '../../internal/pki/reload-changes';
import { errText } from '../../internal/pki/errors';
import { revocationReadiness, type Readiness } from '../../internal/pki/readiness';
import { logReload } from '../../internal/pki/reload-log';
import { createMetrics, observeCrls, observeReload, type Metrics } from '../../internal/metrics/registry';
import { startAdminServer, type AdminServer } from '../../internal/metrics/admin';
import { listenConnect, listenSni, parseHostPort, type Listening } from '../../internal/proxy/listeners';
import { OwnListeners } from '../../internal/proxy/own-listeners';
import { addressPolicy } from '../../internal/engine/destination';
import type { CrlWatcher } from '../../internal/k8s/watcher';

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
  /** Every verdict, in order, as it is made (also counted). */
  onDecision(fn: (d: Decision) => void): void;
  /** Every complete decision record, when its connection has closed (also logged). */
  onRecord(fn: (d: Decision) => void): void;
  /** This process's listeners (for forwarding-loop refusal); front doors started outside add theirs. */
  ownListeners: OwnListeners;
  /** Whether to take connections (pki/readiness.ts: usable, i.e. current, CRLs under a hardFail rule). */
  readiness(): Readiness;
  /** Stops listening; open connections may go on for `graceMs` (default 1000) before they are closed. */
  close(graceMs?: number): Promise<void>;
}

export interface RuntimeOptions {
  logger?: Logger;
  /** Start the listeners and admin server (default true); `check` only needs the engine. */
  listen?: boolean;
}

/** A file named by config field `field`, or an error that names the field, the path and why. */
function readFor(field: string, file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'EISDIR' ? 'is a directory, not a file' : e.code === 'ENOENT' ? 'does not exist' : e.code ?? e.message;
    throw new Error(`${field}: ${file} ${why}`);
  }
}

function readCerts(field: string, files: string[]): X509Certificate[] {
  return files.flatMap((f, i) => {
    const text = readFor(`${field}[${i}]`, f);
    try {
      return pemCertificates(text, f).map((der) => new X509Certificate(der));
    } catch (err) {
      const why = errText(err);
      throw new Error(`${field}[${i}]: ${why.startsWith(f) ? why : `${f}: ${why}`}`);
    }
  });
}

/**
 * A trust anchor that is not a CA certificate (basicConstraints cA false or absent) is allowed —
 * a pinned self-signed server — but is more often a leaf put in the wrong file: say so.
 */
function warnNonCa(logger: Logger, field: string, certs: X509Certificate[]): X509Certificate[] {
  for (const c of certs) if (!c.ca) logger.warn({ field, subject: dnOf(c) }, `${field}: ${dnOf(c)} is not a CA certificate (basicConstraints cA is not TRUE); it can only anchor itself`);
  return certs;
}

/** Builds the engine context and the revocation store; loads CRLs once. */
export async function createRuntime(config: Config, opts: RuntimeOptions = {}): Promise<Runtime> {
  const logger = opts.logger ?? createLogger(config.log.level);
  const metrics = createMetrics();
  const reporter = createReporter({ logger, metrics });
  const listeners: ((d: Decision) => void)[] = [];
  const recordListeners: ((d: Decision) => void)[] = [];
  const ownListeners = new OwnListeners();

  const anchors = readCerts('trust.caFiles', config.trust.caFiles);
  warnNonCa(logger, 'trust.caFiles', anchors);
  if (config.trust.systemRoots) anchors.push(...tls.rootCertificates.map((pem) => new X509Certificate(pem)));
  const crlSigners = readCerts('revocation.crlSigners', config.revocation.crlSigners);

  let store: RevocationStore | null = null;
  const k8sCrls = config.revocation.kubernetes ?? null;
  if (config.revocation.crlPaths.length > 0 || k8sCrls) {
    store = new RevocationStore({ trust: [...anchors, ...crlSigners], clockSkewMs: config.revocation.clockSkewSeconds * 1000 });
    const diff = new ReloadDiff();
    store.on('reload', (r: LoadReport) => {
      const changes = diff.next(r);
      observeReload(metrics, { accepted: changes.accepted.length, refused: changes.refused.length });
      observeCrls(metrics, store!.snapshot());
      logReload(logger, changes);
    });
    if (config.revocation.crlPaths.length > 0) await store.loadPaths(config.revocation.crlPaths);
    if (config.revocation.watch && config.revocation.crlPaths.length > 0) store.watch(config.revocation.crlPaths);
  }
  // Not awaited to sync: readiness follows the store, so an API outage delays readiness, not start-up.
  // The Kubernetes client is loaded only when a Kubernetes feature is configured.
  const crlWatcher = store && k8sCrls ? await (await import('../../internal/k8s/watcher')).startCrlWatcherFromConfig(k8sCrls, store, { paths: config.revocation.crlPaths, logger }) : null;
  const podEvents = config.events?.enabled ? (await import('../../internal/k8s/events')).podEventsFromConfig(config.events, k8sCrls?.kubeconfig ?? null, logger) : null;

  const identities = loadIdentities(config.identities, process.cwd(), { warn: (m) => logger.warn(m) });
  const interceptionCertPem = readFor('interceptionCA.cert', config.interceptionCA.cert);
  if (readCerts('interceptionCA.cert', [config.interceptionCA.cert]).length === 0) throw new Error(`interceptionCA.cert: ${config.interceptionCA.cert} holds no certificate`);
  const interceptionKeyPem = readFor('interceptionCA.key', config.interceptionCA.key);
  let minter: LeafMinter;
  try {
    minter = new LeafMinter({
      caCertPem: interceptionCertPem,
      caKeyPem: interceptionKeyPem,
      validityHours: config.leaf.validityHours,
      cacheSize: config.leaf.cacheSize,
      secureContext: false,
    });
  } catch (err) {
    // Validity is the certificate's own fault: name that field alone.
    if (err instanceof MintError && (err.code === 'ca_expired' || err.code === 'ca_not_yet_valid')) throw new Error(`interceptionCA.cert: ${err.message}`);
    throw new Error(`interceptionCA (${config.interceptionCA.cert}, ${config.interceptionCA.key}): ${errText(err)}`);
  }
  const workloadCA = config.workloadCA.map((f, i) => readFor(`workloadCA[${i}]`, f));
  const contexts = new SecureContexts(minter, identities, workloadCA);

  const destinations = addressPolicy(config.destinations);
  const ctx: EngineContext = {
    limits: config.limits,
    policy: (dest) => matchRule(config, dest),
    destinations,
    resolve: resolveOnce,
    isOwnListener: (address, port) => ownListeners.has(address, port),
    leafContext: (name, opts) => contexts.leaf(name, opts),
    upstreamContext: (identity, minVersion) => contexts.upstream(identity, minVersion),
    identities: new Map([...identities].map(([name]) => [name, { name }])),
    anchors,
    workloadAnchors: warnNonCa(logger, 'workloadCA', readCerts('workloadCA', config.workloadCA)),
    revocation: store,
    decided: (d) => {
      reporter.decided(d);
      podEvents?.report(d);
      for (const fn of listeners) fn(d);
    },
    report: (d) => {
      reporter.report(d);
      for (const fn of recordListeners) fn(d);
    },
    now: () => new Date(),
    activeConnections: metrics.activeConnections,
  };

  const hardFail = config.defaults.revocation === 'hardFail' || config.rules.some((r) => (r.revocation ?? 'softFail') === 'hardFail');
  const readiness = (): Readiness => revocationReadiness(store, { hardFail });

  let connect: Listening | null = null;
  let sni: Listening | null = null;
  let unregisterAdmin = (): void => undefined;
  let admin: AdminServer | null = null;
  if (opts.listen !== false) {
    const listenOpts = {
      connectTimeoutMs: config.limits.connectTimeoutMs,
      maxConnections: config.limits.maxConnections,
      maxConnectionsPerSource: config.limits.maxConnectionsPerSource,
      requestTimeoutMs: config.limits.requestTimeoutMs,
      onListening: (a: import('node:net').AddressInfo) => ownListeners.add(a),
    };
    if (config.listen.connect) connect = await listenConnect(ctx, config.listen.connect, listenOpts);
    if (config.listen.sni) sni = await listenSni(ctx, config.listen.sni, { ...listenOpts, upstreamPort: config.listen.sniUpstreamPort });
    if (config.admin) {
      const { host, port } = parseHostPort(config.admin, 'admin');
      admin = await startAdminServer({ host, port, registry: metrics.registry, ready: readiness });
      unregisterAdmin = ownListeners.add(admin.address); // a CONNECT to the admin port is a loop too
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
    onRecord: (fn) => recordListeners.push(fn),
    ownListeners,
    readiness,
    close: async (graceMs = 1000) => {
      store?.close();
      await Promise.all([crlWatcher?.stop(), podEvents?.close()]);
      // Listeners first (open connections get `graceMs`), the admin port last so /metrics and
      // /healthz answer while connections drain.
      await Promise.all([connect?.close(graceMs), sni?.close(graceMs)]);
      await admin?.close();
      unregisterAdmin();
    },
  };
}

/**
 * One DNS resolution (the addresses in the resolver's order); names under `localhost.` are
 * loopback whatever the resolver says (RFC 6761 §6.3), as curl and browsers treat them.
 */
async function resolveOnce(host: string): Promise<string[]> {
  if (/(^|\.)localhost\.?$/i.test(host)) return ['127.0.0.1'];
  const found = await dns.promises.lookup(host, { all: true, verbatim: true });
  return found.map((a) => a.address);
}
