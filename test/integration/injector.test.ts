/**
 * `ca-proxy inject` over real HTTPS (cmd/ca-proxy/inject.ts `startInjector`, and the CLI as a
 * process), with a serving certificate from an openssl-made PKI mounted the way kubelet mounts a
 * Secret (files behind a `..data` symlink that is swapped atomically):
 * - curl (the independent client) posts an AdmissionReview, verifying the certificate against
 *   the CA; the patch in the answer applies and the pod validates;
 * - malformed requests (bad JSON, wrong version, wrong path, method, content type, oversized
 *   bodies declared or streamed, a plaintext client, a client that stops sending) get their HTTP
 *   status and the server goes on serving;
 * - the admin port answers /healthz, /readyz and /metrics with the admission counters;
 * - rotation: the files are replaced under the running webhook while clients keep posting; new
 *   connections see the new certificate, no request fails, and a half-written pair is refused
 *   while the good one stays in use.
 */
import { describe, test, beforeAll, afterAll, expect } from '@jest/globals';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import pino from 'pino';
import YAML from 'yaml';
import { loadInjectorConfig, startInjector, type RunningInjector } from '../../cmd/ca-proxy/inject';
import { admissionReview, applyResponse, podFixture, validatePod } from '../support/admission';
import { makePki, type Pki } from '../support/pki';
import { afterThis } from '../support/cleanup';
import { until } from '../support/until';
import { note } from '../support/note';
import { repoRoot } from '../support/root';
import { runCmd } from '../support/world';

const HOST = 'ca-proxy-injector.ca-proxy.svc';
const quiet = pino({ level: 'silent' });
let pki: Pki;
let dir: string;
let secretDir: string;
let generation = 0;

/** Writes a key pair into `secretDir` as kubelet updates a Secret volume: a new timestamped folder, then one rename of `..data`. */
function mountPair(certPem: string, keyPem: string): void {
  const gen = `..gen_${++generation}`;
  fs.mkdirSync(path.join(secretDir, gen));
  fs.writeFileSync(path.join(secretDir, gen, 'tls.crt'), certPem);
  fs.writeFileSync(path.join(secretDir, gen, 'tls.key'), keyPem);
  fs.symlinkSync(gen, path.join(secretDir, '..data_tmp'));
  fs.renameSync(path.join(secretDir, '..data_tmp'), path.join(secretDir, '..data'));
  for (const f of ['tls.crt', 'tls.key']) if (!fs.existsSync(path.join(secretDir, f))) fs.symlinkSync(path.join('..data', f), path.join(secretDir, f));
}

function issue(name: string): { certPem: string; keyPem: string; fingerprint: string } {
  const leaf = pki.issueLeaf(name, { san: [`DNS:${HOST}`, 'IP:127.0.0.1'] });
  // The chain as cert-manager writes tls.crt: leaf, then the issuing CA.
  return { certPem: leaf.certPem + pki.intermediate.certPem, keyPem: fs.readFileSync(leaf.keyPath, 'utf8'), fingerprint: leaf.x509.fingerprint256 };
}

function writeConfig(over: Record<string, unknown> = {}): string {
  const file = path.join(dir, `config-${Math.random().toString(36).slice(2)}.yaml`);
  const doc = {
    admin: '127.0.0.1:0',
    log: { level: 'silent' },
    injector: { listen: '127.0.0.1:0', tls: { cert: 'secret/tls.crt', key: 'secret/tls.key' }, images: { caProxy: 'registry.test/ca-proxy:it', envoy: 'registry.test/envoy:v1.40.0' }, ...over },
  };
  fs.writeFileSync(file, YAML.stringify(doc));
  return file;
}

async function start(over: Record<string, unknown> = {}, opts: { requestTimeoutMs?: number } = {}): Promise<RunningInjector> {
  const { config, injector, template } = loadInjectorConfig(writeConfig(over));
  const run = await startInjector(config, injector, template, { logger: quiet, pollMs: 100, ...opts });
  afterThis(() => run.close(0));
  return run;
}

interface Reply {
  status: number;
  body: string;
  /** SHA-256 fingerprint of the certificate the server presented. */
  fingerprint: string;
}

/** One request on a new connection, verifying the server against the test root. */
function post(run: RunningInjector, body: string | Buffer, o: { path?: string; method?: string; type?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: run.server.address.port,
        servername: HOST,
        ca: pki.root.certPem,
        agent: false,
        method: o.method ?? 'POST',
        path: o.path ?? '/mutate',
        headers: { 'Content-Type': o.type ?? 'application/json', ...o.headers },
      },
      (res) => {
        const fingerprint = (res.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString('utf8'), fingerprint }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')));
    req.end(body);
  });
}

function get(port: number, p: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    fetch(`http://127.0.0.1:${port}${p}`)
      .then(async (r) => resolve({ status: r.status, body: await r.text() }))
      .catch(reject);
  });
}

beforeAll(() => {
  pki = makePki({ keyType: 'ec' });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-injector-it-'));
  secretDir = path.join(dir, 'secret');
  fs.mkdirSync(secretDir);
  const first = issue('webhook-1');
  mountPair(first.certPem, first.keyPem);
});
afterAll(() => {
  pki.cleanup();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('curl posts an AdmissionReview over verified TLS; the answer patches the pod into a valid injected Pod', async () => {
  const run = await start();
  const reviewFile = path.join(dir, 'review.json');
  const review = admissionReview(podFixture(), { uid: 'curl-1' });
  fs.writeFileSync(reviewFile, JSON.stringify(review));
  const port = run.server.address.port;
  const r = await runCmd('curl', ['-sS', '--fail-with-body', '--cacert', pki.root.certPath, '--resolve', `${HOST}:${port}:127.0.0.1`, '-H', 'Content-Type: application/json', '--data-binary', `@${reviewFile}`, `https://${HOST}:${port}/mutate`]);
  assert.equal(r.code, 0, r.stderr);
  const answer = JSON.parse(r.stdout);
  expect(answer).toMatchObject({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: 'curl-1', allowed: true, patchType: 'JSONPatch' } });
  const pod = applyResponse(podFixture(), answer.response);
  validatePod(pod);
  expect(pod.spec!.initContainers!.map((c) => c.name)).toEqual(['ca-proxy-redirect', 'ca-proxy-envoy']);
  expect(pod.spec!.initContainers![0]!.image).toBe('registry.test/ca-proxy:it');
});

describe('malformed and hostile requests get an HTTP status, and the server goes on', () => {
  let run: RunningInjector;
  beforeAll(async () => {
    const { config, injector, template } = loadInjectorConfig(writeConfig({ maxRequestBytes: 65536 }));
    run = await startInjector(config, injector, template, { logger: quiet, requestTimeoutMs: 500 });
  });
  afterAll(() => run.close(0));

  test.each([
    ['bad JSON', 400, { body: '{"kind": "AdmissionRev' }, /malformed AdmissionReview: body is not JSON/],
    ['admission.k8s.io/v1beta1', 400, { body: JSON.stringify({ ...admissionReview(podFixture()), apiVersion: 'admission.k8s.io/v1beta1' }) }, /speaks admission\.k8s\.io\/v1 only/],
    ['no request uid', 400, { body: JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: {} }) }, /request\.uid is missing/],
    ['another path', 404, { body: '{}', path: '/validate' }, /POST \/mutate/],
    ['GET', 405, { body: '', method: 'GET' }, /method not allowed/],
    ['text/plain', 415, { body: '{}', type: 'text/plain' }, /must be application\/json/],
    ['a declared body over the limit', 413, { body: 'x'.repeat(70_000) }, /larger than 65536 bytes/],
  ] as [string, number, { body: string; path?: string; method?: string; type?: string }, RegExp][])('%s → %i', async (_what, status, req, message) => {
    const r = await post(run, req.body, req);
    expect(r.status).toBe(status);
    expect(r.body).toMatch(message);
  });

  test('a streamed (chunked) body over the limit is cut off with 413', async () => {
    const r = await new Promise<number>((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port: run.server.address.port, servername: HOST, ca: pki.root.certPem, agent: false, method: 'POST', path: '/mutate', headers: { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      let sent = 0;
      const pump = (): void => {
        while (sent < 200_000) {
          sent += 16_384;
          if (!req.write(Buffer.alloc(16_384, 0x20))) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    });
    expect(r).toBe(413);
  });

  test('a client that sends half a body and stops is answered 408 (requestTimeout), not held forever', async () => {
    const status = await new Promise<string>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: run.server.address.port, servername: HOST, ca: pki.root.certPem }, () => {
        s.write(`POST /mutate HTTP/1.1\r\nHost: ${HOST}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"apiVersion"`);
      });
      let got = '';
      s.on('data', (c: Buffer) => (got += c.toString()));
      s.on('close', () => resolve(got.split('\r\n')[0] ?? ''));
      s.on('error', reject);
    });
    expect(status).toBe('HTTP/1.1 408 Request Timeout');
  });

  test('a plaintext client on the TLS port is dropped; the next good request is answered', async () => {
    await new Promise<void>((resolve) => {
      const s = net.connect(run.server.address.port, '127.0.0.1', () => s.write('POST /mutate HTTP/1.1\r\nHost: x\r\n\r\n'));
      s.on('error', () => resolve());
      s.on('close', () => resolve());
    });
    const r = await post(run, JSON.stringify(admissionReview(podFixture())));
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).response.allowed).toBe(true);
  });

  test('the admin port: /healthz, /readyz with the certificate in use, /metrics counting each result', async () => {
    const port = run.admin!.address.port;
    expect((await get(port, '/healthz')).status).toBe(200);
    const ready = await get(port, '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body).toMatch(/^serving: sha256 [0-9a-f]{64}, notAfter /);
    const metrics = (await get(port, '/metrics')).body;
    expect(metrics).toMatch(/^ca_proxy_injector_admissions_total\{result="injected"\} [1-9]/m);
    expect(metrics).toMatch(/^ca_proxy_injector_admissions_total\{result="bad_request"\} [1-9]/m);
    expect(metrics).toMatch(/^ca_proxy_injector_admission_duration_seconds_count [1-9]/m);
    expect(metrics).toMatch(/^ca_proxy_injector_certificate_not_after_timestamp_seconds [1-9]/m);
  });
});

test('rotation: the files are replaced under load; new connections see the new certificate, none fails; a half-written pair is refused', async () => {
  const before = new X509Certificate(fs.readFileSync(path.join(secretDir, 'tls.crt'))).fingerprint256;
  const run = await start();
  const body = JSON.stringify(admissionReview(podFixture()));
  const seen = new Map<string, number>();
  const failures: string[] = [];
  let requests = 0;
  let stop = false;
  const client = async (): Promise<void> => {
    while (!stop) {
      try {
        const r = await post(run, body);
        requests++;
        if (r.status !== 200 || JSON.parse(r.body).response.allowed !== true) failures.push(`HTTP ${r.status}: ${r.body.slice(0, 200)}`);
        seen.set(r.fingerprint, (seen.get(r.fingerprint) ?? 0) + 1);
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  };
  const clients = [client(), client(), client()];
  try {
    await until(() => (seen.get(before) ?? 0) >= 10, 'requests served with the first certificate', 60_000);
    const next = issue('webhook-2');
    mountPair(next.certPem, next.keyPem);
    await until(() => (seen.get(next.fingerprint) ?? 0) >= 10, 'new connections presented the rotated certificate', 60_000);

    // cert-manager writes both keys of one Secret at once, but a hand-made update may not: a
    // certificate without its key must not replace the pair in use.
    const third = issue('webhook-3');
    mountPair(third.certPem, next.keyPem);
    await until(() => run.metrics.certificateReloads.get().then((m) => m.values.some((v) => v.labels.result === 'refused' && v.value >= 1)), 'the mismatched pair refused', 60_000);
    const afterRefusal = requests;
    await until(() => requests >= afterRefusal + 10, 'more requests after the refusal', 60_000);
    mountPair(third.certPem, third.keyPem);
    await until(() => (seen.get(third.fingerprint) ?? 0) >= 5, 'the completed pair in use', 60_000);
  } finally {
    stop = true;
    await Promise.all(clients);
  }
  note(`rotation: ${requests} requests on new connections across two rotations and one refused pair; by certificate: ${[...seen.values()].join(', ')}`);
  expect(failures).toEqual([]);
  expect(seen.size).toBe(3);
}, 300_000);

test('the CLI: `ca-proxy inject --config FILE` serves until SIGTERM and exits 0; a bad injector section exits 1 naming the field', async () => {
  const main = path.join(repoRoot(), 'dist/cmd/ca-proxy/main.js');
  const bad = writeConfig({ ports: '443,99999', processorAddress: '10.0.0.1:9901' });
  // Ceilings, not timings: a node process can take many seconds to start on a busy shared machine.
  const r = await runCmd(process.execPath, [main, 'inject', '--config', bad], { ms: 60_000 });
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/injector: ca-proxy\.io\/ports: "99999" is not a port 1-65535/);
  expect(r.stderr).toMatch(/injector\.processorAddress: must name the processor Service by DNS name/);

  const child = spawn(process.execPath, [main, 'inject', '--config', writeConfig()], { stdio: ['ignore', 'ignore', 'pipe'] });
  afterThis(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  await until(() => /AdmissionReviews on https:\/\/127\.0\.0\.1:(\d+)\/mutate/.test(stderr), 'the CLI listening', 60_000);
  const port = Number(/AdmissionReviews on https:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)![1]);
  const reviewFile = path.join(dir, 'cli-review.json');
  fs.writeFileSync(reviewFile, JSON.stringify(admissionReview(podFixture({ spec: { hostNetwork: true } }), { uid: 'cli' })));
  const c = await runCmd('curl', ['-sS', '--cacert', pki.root.certPath, '--resolve', `${HOST}:${port}:127.0.0.1`, '-H', 'Content-Type: application/json', '--data-binary', `@${reviewFile}`, `https://${HOST}:${port}/mutate`], { ms: 60_000 });
  const answer = JSON.parse(c.stdout);
  expect(answer.response).toMatchObject({ uid: 'cli', allowed: true });
  expect(answer.response.warnings[0]).toMatch(/hostNetwork/);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  expect(await exited).toBe(0);
}, 240_000);
