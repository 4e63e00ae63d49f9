/**
 * The chart's PrometheusRule, checked by Prometheus' own promtool (Debian package `prometheus`):
 * `promtool check rules` on the rendered groups (expressions and annotation templates parse), and
 * `promtool test rules` with ./alerts.promtool.yaml, where each alert fires on a synthetic series
 * that should trigger it and stays silent on one that should not. promtool compares annotations
 * too: the alerts whose cases give `exp_annotations` keep theirs (their templates are checked as
 * rendered); for the others the annotations are left out of the unit-test copy, so the cases state
 * only what triggers an alert.
 */
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { helmAvailable, template } from '../../support/helm';
import { repoRoot } from '../../support/root';
import { describeWithTool, hasProgram } from '../../support/tools';

const FIXTURE = path.join(repoRoot(), 'test', 'unit', 'chart', 'alerts.promtool.yaml');

interface Rule {
  alert?: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
let groups: { name: string; rules: Rule[] }[];
let dir: string;

const promtool = (args: string[]) => spawnSync('promtool', args, { cwd: dir, encoding: 'utf8', timeout: 120_000 });

describeWithTool(helmAvailable() && hasProgram('promtool'), 'helm and promtool (Debian package prometheus)', 'PrometheusRule', () => {
  beforeAll(() => {
    const objs = template({ publisher: { enabled: true, sources: { urls: ['http://pki.example/a.crl'] } }, trust: { systemRoots: true }, monitoring: { prometheusRule: { enabled: true } } });
    const rule = objs.find((o) => o.kind === 'PrometheusRule');
    if (!rule) throw new Error('no PrometheusRule rendered');
    groups = (rule as unknown as { spec: { groups: typeof groups } }).spec.groups;
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-rules-'));
  }, 120_000);
  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('promtool check rules accepts the rendered groups', () => {
    fs.writeFileSync(path.join(dir, 'full.yaml'), YAML.stringify({ groups }));
    const r = promtool(['check', 'rules', 'full.yaml']);
    expect([r.status, r.stdout + r.stderr]).toEqual([0, expect.stringMatching(/SUCCESS: \d+ rules found/)]);
  });

  test('every alert has a severity, a summary, a description and a runbook', () => {
    const alerts = groups.flatMap((g) => g.rules).filter((r) => r.alert);
    expect(alerts.length).toBeGreaterThanOrEqual(12);
    for (const a of alerts) {
      expect([a.alert, a.labels?.severity]).toEqual([a.alert, expect.stringMatching(/^(warning|critical)$/)]);
      expect([a.alert, Object.keys(a.annotations ?? {}).sort()]).toEqual([a.alert, ['description', 'runbook_url', 'summary']]);
    }
  });

  test('promtool test rules: each alert fires when it should and stays silent otherwise', () => {
    const fixture = YAML.parse(fs.readFileSync(FIXTURE, 'utf8')) as { tests: { alert_rule_test: { alertname: string; exp_alerts: { exp_annotations?: object }[] }[] }[] };
    const cases = fixture.tests.flatMap((t) => t.alert_rule_test);
    const withAnnotations = new Set(cases.filter((c) => c.exp_alerts.some((a) => a.exp_annotations)).map((c) => c.alertname));
    // Every alert of the rule is exercised, firing at least once and silent at least once.
    const alerts = groups.flatMap((g) => g.rules).map((r) => r.alert).filter((a): a is string => !!a);
    for (const a of alerts) {
      const mine = cases.filter((c) => c.alertname === a);
      expect([a, mine.some((c) => c.exp_alerts.length > 0)]).toEqual([a, true]);
    }
    const unitGroups = groups.map((g) => ({
      name: g.name,
      rules: g.rules.map((r) => (r.alert && !withAnnotations.has(r.alert) ? { ...r, annotations: undefined } : r)),
    }));
    fs.writeFileSync(path.join(dir, 'rules.yaml'), YAML.stringify({ groups: unitGroups }));
    fs.copyFileSync(FIXTURE, path.join(dir, 'alerts.promtool.yaml'));
    const r = promtool(['test', 'rules', 'alerts.promtool.yaml']);
    expect([r.status, r.stdout + r.stderr]).toEqual([0, expect.stringMatching(/SUCCESS/)]);
  });

  test('silence is tested too: the cases include alerts expected not to fire', () => {
    const fixture = YAML.parse(fs.readFileSync(FIXTURE, 'utf8')) as { tests: { input_series: { series: string }[]; alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[] };
    const silent = fixture.tests.flatMap((t) => t.alert_rule_test).filter((c) => c.exp_alerts.length === 0);
    expect(silent.length).toBeGreaterThanOrEqual(5);
    // Firing cases sit beside series that must not fire (other issuers, pods, namespaces, reasons).
    expect(fixture.tests.every((t) => t.input_series.length >= 1)).toBe(true);
  });
});
