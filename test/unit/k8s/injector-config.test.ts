/**
 * The `injector` config section (internal/config schema + cmd/ca-proxy/inject.ts
 * `loadInjectorConfig`): defaults that load without an interceptionCA, paths relative to the file,
 * every problem reported with its line, a broken bootstrap template refused at start.
 */
import { test, expect, beforeAll, afterAll } from '@jest/globals';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadInjectorConfig } from '../../../cmd/ca-proxy/inject';
import { ConfigError } from '../../../internal/config/load';
import { DEFAULT_TEMPLATE } from '../../../internal/k8s/injector/bootstrap';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-injector-config-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function write(text: string): string {
  const f = path.join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  fs.writeFileSync(f, text);
  return f;
}

function problems(text: string): string {
  try {
    loadInjectorConfig(write(text));
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  throw new Error('loaded without an error');
}

test('an empty file is a complete injector config (no interceptionCA needed); tls paths are relative to the file', () => {
  const f = write('injector:\n  tls: { cert: certs/tls.crt, key: /abs/tls.key }\n');
  const { injector, template } = loadInjectorConfig(f);
  expect(injector.tls).toEqual({ cert: path.join(dir, 'certs/tls.crt'), key: '/abs/tls.key' });
  expect(injector).toMatchObject({ listen: '0.0.0.0:8443', placement: 'central', proxyUid: 1337, proxyPort: 15001, ports: '443', caBundleConfigMap: 'ca-proxy-ca-bundle' });
  expect(template.source).toBe(DEFAULT_TEMPLATE);
});

test('schema problems are reported together, with file positions', () => {
  const text = [
    'injector:',
    '  placement: everywhere',
    '  proxyUid: 0',
    '  caBundleConfigMap: Not_A_Name',
    '  resources: { envoy: { limits: { memory: lots } } }',
    '  imagePulPolicy: Always',
    '',
  ].join('\n');
  const msg = problems(text);
  expect(msg).toMatch(/:2:14: injector\.placement: must be one of central, sidecar \(got "everywhere"\)/);
  expect(msg).toMatch(/:3:13: injector\.proxyUid: must be at least 1/);
  expect(msg).toMatch(/:4:22: injector\.caBundleConfigMap: must be a Kubernetes object name/);
  expect(msg).toMatch(/injector\.resources\.envoy\.limits\.memory: must be a Kubernetes quantity/);
  expect(msg).toMatch(/injector\.imagePulPolicy: unknown field \(did you mean "imagePullPolicy"\?/);
});

test('cross-field problems: annotation defaults, an IP as the central processor, colliding ports', () => {
  const msg = problems('injector:\n  excludeCidrs: "10.0.0.1/8"\n  processorAddress: "10.0.0.1:9901"\n  readyPort: 15001\n');
  expect(msg).toMatch(/injector: ca-proxy\.io\/exclude-cidrs: "10\.0\.0\.1\/8" has host bits set/);
  expect(msg).toMatch(/injector\.processorAddress: must name the processor Service by DNS name/);
  expect(msg).toMatch(/injector\.readyPort: same port as injector\.proxyPort \(15001\)/);
});

test('a custom bootstrap template that is broken is refused at start, naming the placeholder', () => {
  const tmpl = fs.readFileSync(DEFAULT_TEMPLATE, 'utf8').replace('port_value: "{{proxyPort}}"', 'port_value: "{{proxyPortt}}"');
  const t = path.join(dir, 'custom.template.yaml');
  fs.writeFileSync(t, tmpl);
  expect(problems(`injector:\n  envoyBootstrapTemplate: ${t}\n`)).toMatch(/injector\.envoyBootstrapTemplate: unknown placeholder \{\{proxyPortt\}\}/);
  fs.writeFileSync(t, 'bootstrap: {}\n');
  expect(problems(`injector:\n  envoyBootstrapTemplate: ${t}\n`)).toMatch(/the template has no "egressFilterChain" mapping/);
});
