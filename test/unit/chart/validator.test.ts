/**
 * The strict schema check (test/support/k8s-schema.ts) really rejects what it claims to: unknown
 * fields at any depth, wrong types, enum values and kinds outside the schemas — for core,
 * Prometheus Operator and cert-manager objects. Without these, a chart test that "validates"
 * could pass on anything. (One check over every case: each TypeScript program costs seconds.)
 */
import { beforeAll, describe, expect, test } from '@jest/globals';
import { schemaProblems } from '../../support/k8s-schema';

const deployment = (container: Record<string, unknown>) => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'a' },
  spec: { selector: { matchLabels: { a: 'b' } }, template: { metadata: { labels: { a: 'b' } }, spec: { containers: [container] } } },
});
const rule = (r: Record<string, unknown>) => ({ apiVersion: 'monitoring.coreos.com/v1', kind: 'PrometheusRule', metadata: { name: 'r' }, spec: { groups: [{ name: 'g', rules: [r] }] } });
const certificate = (spec: Record<string, unknown>) => ({ apiVersion: 'cert-manager.io/v1', kind: 'Certificate', metadata: { name: 'c' }, spec });
const service = (spec: Record<string, unknown>) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name: 's' }, spec });

const CASES: Record<string, Record<string, unknown>> = {
  'valid deployment': deployment({ name: 'c', image: 'i', ports: [{ containerPort: 80, protocol: 'TCP' }] }),
  'valid rule': rule({ alert: 'A', expr: 'up == 0', labels: { severity: 'warning' } }),
  'valid certificate': certificate({ secretName: 's', issuerRef: { name: 'i', kind: 'ClusterIssuer' }, dnsNames: ['a.b'] }),
  'unknown container field': deployment({ name: 'c', image: 'i', imagee: 'typo' }),
  'unknown top-level field': { apiVersion: 'v1', kind: 'Service', metadata: { name: 's' }, spex: {} },
  'string port': service({ ports: [{ port: 'https' }] }),
  'null image': deployment({ name: 'c', image: null }),
  'unknown rule field': rule({ alert: 'A', expr: '1', severity: 'x' }),
  'unknown certificate field': certificate({ secretName: 's', issuerRef: { name: 'i' }, dnsName: ['a'] }),
  'enum outside the schema': service({ ports: [{ port: 1, protocol: 'QUIC' }] }),
  'unknown kind': { apiVersion: 'apps/v1', kind: 'Deploymnet', metadata: { name: 'a' } },
  'unknown group': { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'a' } },
};

let problems: Map<string, string>;
beforeAll(() => {
  const all = schemaProblems(Object.entries(CASES).map(([label, object]) => ({ label, object })));
  problems = new Map(Object.keys(CASES).map((label) => [label, all.filter((p) => p.startsWith(`${label}: `)).join('\n')]));
});

describe('strict Kubernetes schema check', () => {
  test('accepts valid objects of every family the chart uses', () => {
    for (const label of ['valid deployment', 'valid rule', 'valid certificate']) expect([label, problems.get(label)]).toEqual([label, '']);
  });

  test('rejects unknown fields at any depth, in core and CRD objects', () => {
    expect(problems.get('unknown container field')).toMatch(/imagee.*does not exist in type/);
    expect(problems.get('unknown top-level field')).toMatch(/spex.*does not exist in type/);
    expect(problems.get('unknown rule field')).toMatch(/severity.*does not exist in type/);
    expect(problems.get('unknown certificate field')).toMatch(/dnsName.*does not exist in type/);
  });

  test('rejects wrong types: by the validator, and null where a string belongs by the type check', () => {
    expect(problems.get('string port')).toMatch(/port must be integer/);
    expect(problems.get('null image')).toMatch(/image.*null/);
  });

  test('rejects an enum value outside the schema', () => {
    expect(problems.get('enum outside the schema')).toMatch(/protocol/);
  });

  test('rejects a kind or API group it has no schema for', () => {
    expect(problems.get('unknown kind')).toBe('unknown kind: no schema for apps/v1 Deploymnet');
    expect(problems.get('unknown group')).toBe('unknown group: no schema for example.com/v1 Widget');
  });
});
