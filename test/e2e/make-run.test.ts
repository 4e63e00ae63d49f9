/**
 * Case i: what the README tells a newcomer to do, as separate processes — the development
 * PKI, `ca-proxy run --dev DIR` (what `make run` starts), a demo server, and curl through the
 * proxy trusting the interception CA. Also `crl show` and `check` on the same PKI.
 */
import { test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { repoRoot } from '../support/root';
import { runCmd } from '../support/world';
import { startDemoServers, type DemoServers } from '../../scripts/demo-servers';

const main = () => path.join(repoRoot(), 'dist/cmd/ca-proxy/main.js');
let dir: string;
let proxy: ChildProcess;
let stderr = '';
let proxyAddr = '';
let servers: DemoServers;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-e2e-'));
  const pki = await runCmd('node', [path.join(repoRoot(), 'dist/scripts/dev-pki.js'), dir]);
  assert.equal(pki.code, 0, pki.stderr);
  servers = await startDemoServers(dir);
  proxy = spawn('node', [main(), 'run', '--dev', dir, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  proxy.stdout!.on('data', () => undefined);
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`proxy did not start: ${stderr}`)), 10000);
    proxy.stderr!.on('data', (d) => {
      stderr += d;
      const m = /HTTP CONNECT proxy on (\S+)/.exec(stderr);
      if (m && /Stop with Ctrl-C/.test(stderr)) {
        proxyAddr = m[1]!;
        clearTimeout(t);
        resolve();
      }
    });
  });
});

afterAll(async () => {
  proxy.kill('SIGTERM');
  await servers.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the startup banner says where it listens and how to send traffic', () => {
  assert.match(stderr, /curl --proxy http:\/\/127\.0\.0\.1:\d+ --cacert \S+interception-ca\.crt https:\/\/HOST\//);
  assert.match(stderr, /admin \(\/metrics, \/healthz, \/readyz\) on http:\/\//);
});

test('curl through `run --dev` to the good demo server: the server sees the proxy identity', async () => {
  const res = await runCmd('curl', ['-sS', '--max-time', '10', '--proxy', `http://${proxyAddr}`, '--cacert', path.join(dir, 'interception-ca.crt'), servers.good.url]);
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stdout, /hello from demo-good: your client certificate is ".*proxy.*"/i);
});

test('curl to the revoked demo server: certificate_revoked alert', async () => {
  const res = await runCmd('curl', ['-sS', '--max-time', '10', '--proxy', `http://${proxyAddr}`, '--cacert', path.join(dir, 'interception-ca.crt'), servers.revoked.url]);
  assert.notEqual(res.code, 0);
  assert.match(res.stderr, /certificate revoked|alert number 44/i);
});

test('`crl show --ca` reads the demo CRL and verifies its signature', async () => {
  const res = await runCmd('node', [main(), 'crl', 'show', path.join(dir, 'demo-crl.pem'), '--ca', path.join(dir, 'demo-ca.crt')]);
  assert.equal(res.code, 0, res.stderr + res.stdout);
  assert.match(res.stdout, /entries:\s+1/);
  assert.match(res.stdout, /signature:\s+valid/);
  const wrong = await runCmd('node', [main(), 'crl', 'show', path.join(dir, 'demo-crl.pem'), '--ca', path.join(dir, 'client-ca.crt')]);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stdout, /INVALID/);
});

test('`check` prints allow for the good server and deny/revoked for the revoked one', async () => {
  const ok = await runCmd('node', [main(), 'check', `127.0.0.1:${servers.good.port}`, '--sni', 'good.demo.localhost', '--dev', dir]);
  assert.equal(ok.code, 0, ok.stderr + ok.stdout);
  assert.equal(JSON.parse(ok.stdout).outcome, 'allow');
  const bad = await runCmd('node', [main(), 'check', `127.0.0.1:${servers.revoked.port}`, '--sni', 'revoked.demo.localhost', '--dev', dir]);
  assert.equal(bad.code, 2, bad.stderr + bad.stdout);
  const d = JSON.parse(bad.stdout);
  assert.equal(d.reason, 'certificate_revoked');
});

test('--help on every command', async () => {
  for (const args of [['--help'], ['run', '--help'], ['crl', 'show', '--help'], ['check', '--help']]) {
    const res = await runCmd('node', [main(), ...args]);
    assert.equal(res.code, 0, args.join(' '));
    assert.match(res.stdout, /Usage: ca-proxy/);
  }
});

test('a broken config file is refused with the field named', async () => {
  const cfg = path.join(dir, 'bad.yaml');
  fs.writeFileSync(cfg, 'interceptionCA: {cert: a, key: b}\nrules:\n  - match: {sni: "*.x"}\n    action: allow\n');
  const res = await runCmd('node', [main(), 'run', '--config', cfg]);
  assert.equal(res.code, 1);
  assert.match(res.stderr, /rules\[0\]\.action/);
});
