/**
 * The Grafana dashboard (deploy/helm/ca-proxy/files/dashboard.json) loads as a Grafana dashboard
 * model: the JSON is type-checked against `Dashboard` of `@grafana/schema` (Grafana's published
 * schema; TypeScript's excess-property check refuses unknown fields, as in k8s-schema.ts), with a
 * schema version, panels, and a Prometheus datasource variable every query uses. The Prometheus
 * query fields (`expr`, `legendFormat`, …) are not in that package; they are checked against the
 * fields Grafana's Prometheus data source defines, and every expression parses as PromQL.
 * test/integration/monitoring-metrics.test.ts checks the metric names against a running ca-proxy.
 */
import { describe, expect, test } from '@jest/globals';
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { CHART_DIR } from '../../support/helm';
import { metricNames } from '../../support/promql';
import { repoRoot } from '../../support/root';

type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const dashboard = JSON.parse(fs.readFileSync(path.join(CHART_DIR, 'files', 'dashboard.json'), 'utf8')) as Any;
const panels = (dashboard.panels as Any[]).filter((p) => p.type !== 'row');
const targets = panels.flatMap((p) => (p.targets ?? []) as Any[]);

/** Grafana's Prometheus query model (public/app/plugins/datasource/prometheus, PromQuery), Grafana 11–13. */
const PROMETHEUS_QUERY_FIELDS = new Set(['refId', 'datasource', 'hide', 'queryType', 'expr', 'legendFormat', 'range', 'instant', 'format', 'interval', 'intervalFactor', 'exemplar', 'editorMode', 'step']);

function typeErrors(source: string): string[] {
  const dir = fs.mkdtempSync(path.join(repoRoot(), 'node_modules', '.cache-grafana-'));
  try {
    const file = path.join(dir, 'dashboard.ts');
    fs.writeFileSync(file, source);
    const program = ts.createProgram([file], { strict: true, noEmit: true, skipLibCheck: true, types: [], lib: ['lib.es2022.d.ts'], module: ts.ModuleKind.CommonJS, moduleResolution: ts.ModuleResolutionKind.Node10 });
    return ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, ' '));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('Grafana dashboard', () => {
  test("type-checks as @grafana/schema's Dashboard; a misspelt field would not", () => {
    // The query fields are Prometheus-specific (checked below); the model's DataQuery has refId, datasource, hide, queryType.
    const model = JSON.parse(JSON.stringify(dashboard)) as Any;
    for (const p of model.panels as Any[]) for (const t of (p.targets ?? []) as Any[]) for (const k of Object.keys(t)) if (!['refId', 'datasource', 'hide', 'queryType'].includes(k)) delete t[k];
    const good = `import type { Dashboard } from '@grafana/schema';\nexport const d: Dashboard = ${JSON.stringify(model, null, 1)};\n`;
    const bad = `import type { Dashboard } from '@grafana/schema';\nexport const d: Dashboard = ${JSON.stringify({ ...model, schemaVerison: 39 })};\n`;
    const errors = typeErrors(`${good}\nexport const negative: Dashboard = ${bad.split('export const d: Dashboard = ')[1]}`);
    // Exactly one error: the misspelt field of the negative copy.
    expect(errors).toEqual([expect.stringMatching(/schemaVerison.*does not exist in type 'Dashboard'/)]);
  }, 120_000);

  test('has a schema version, a uid, panels with unique ids and grid positions', () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.uid).toBe('ca-proxy');
    const ids = (dashboard.panels as Any[]).map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of dashboard.panels as Any[]) expect(p.gridPos).toEqual({ h: expect.any(Number), w: expect.any(Number), x: expect.any(Number), y: expect.any(Number) });
    expect(panels.length).toBeGreaterThanOrEqual(15);
  });

  test('a Prometheus datasource variable, used by every panel and query', () => {
    const ds = (dashboard.templating.list as Any[]).find((v) => v.name === 'datasource');
    expect(ds).toMatchObject({ type: 'datasource', query: 'prometheus' });
    for (const p of panels) expect([p.title, p.datasource]).toEqual([p.title, { type: 'prometheus', uid: '${datasource}' }]);
    for (const t of targets) expect(t.datasource).toEqual({ type: 'prometheus', uid: '${datasource}' });
  });

  test('every query uses only Prometheus query fields, parses as PromQL and names at least one metric', () => {
    expect(targets.length).toBeGreaterThanOrEqual(25);
    for (const t of targets) {
      for (const k of Object.keys(t)) expect([t.expr, k, PROMETHEUS_QUERY_FIELDS.has(k)]).toEqual([t.expr, k, true]);
      expect(metricNames(t.expr).length).toBeGreaterThan(0);
    }
  });

  test('shows what the issue asks for: decisions, latency quantiles, connections, CRLs, reloads, publisher, event loop, Envoy', () => {
    const exprs = targets.map((t) => t.expr as string).join('\n');
    for (const needle of ['by (outcome)', 'by (reason)', 'histogram_quantile(0.99', 'ca_proxy_active_connections', 'ca_proxy_crl_this_update_timestamp_seconds', 'ca_proxy_crl_entries', 'ca_proxy_crl_reloads_total', 'ca_proxy_publisher_fetches_total', 'nodejs_eventloop_lag_p99_seconds', 'envoy_network_ext_proc_ca_proxy_streams_started']) {
      expect([needle, exprs.includes(needle)]).toEqual([needle, true]);
    }
  });
});
