/**
 * `workers` (cmd/ca-proxy/workers.ts): `ca-proxy run` as a real primary with two worker
 * processes, against `openssl s_server -Verify 1`, with curl as the workload:
 * - connections are spread over both workers, and one log stream (the primary's stdout) holds
 *   every worker's decisions, each line whole;
 * - one /metrics: the workers' counters summed, the CRL gauges not multiplied, memory per worker;
 * - a CRL that revokes the server reaches both workers together (both accept the same CRL, then
 *   every connection on either worker is denied certificate_revoked);
 * - a killed worker is restarted and /readyz comes back; SIGTERM stops everything, exit code 0.
 */
import { describe, test, beforeAll, afterAll, expect } from '@jest/globals';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { makeWorld, worldConfig, runCmd, type World } from '../support/world';
import { startSServer, type SServer } from '../support/s-server';
import { until } from '../support/until';
import { repoRoot } from '../support/root';

let w: World;
let server: SServer;
let proxy: ChildProcess;
let stdout = '';
let stderr = '';
let proxyUrl = '';
let adminUrl = '';
let crlDir = '';

interface LogLine {
  pid: number;
  msg?: string;
  decision?: { outcome: string; reason: string };
  accepted?: unknown;
  [k: string]: unknown;
}
const lines = (): LogLine[] => stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as LogLine);
const decisions = (): LogLine[] => lines().filter((l) => l.decision);

async function metrics(): Promise<string> {
  return (await fetch(`${adminUrl}/metrics`)).text();
}
function value(text: string, re: RegExp): number[] {
  return text.split('\n').filter((l) => re.test(l)).map((l) => Number(l.slice(l.lastIndexOf(' ') + 1)));
}

/** `n` curls at once through the proxy; their exit codes. */
async function burst(n: number): Promise<(number | null)[]> {
  const runs = Array.from({ length: n }, () =>
    runCmd('curl', ['-sS', '-o', '/dev/null', '--max-time', '15', '--proxy', proxyUrl, '--cacert', w.interceptionCA.certPath, `https://localhost:${server.port}/`], { ms: 20_000 }),
  );
  return (await Promise.all(runs)).map((r) => r.code);
}

beforeAll(async () => {
  w = makeWorld();
  crlDir = path.join(w.dir, 'workers-crl');
  fs.mkdirSync(crlDir);
  for (const f of fs.readdirSync(w.crlDir)) fs.copyFileSync(path.join(w.crlDir, f), path.join(crlDir, f));
  server = await startSServer({ cert: w.good.certPath, key: w.good.keyPath, chain: w.chainPath, clientCA: w.pki.cas.get('client-ca')!.certPath, version: 'tls1_3' });
  const config = { ...worldConfig(w), workers: 2, log: { level: 'info' as const } };
  config.revocation = { ...config.revocation, crlPaths: [crlDir] };
  const file = path.join(w.dir, 'workers.json');
  fs.writeFileSync(file, JSON.stringify(config));
  proxy = spawn(process.execPath, [path.join(repoRoot(), 'dist/cmd/ca-proxy/main.js'), 'run', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  proxy.stdout!.on('data', (d) => (stdout += d));
  proxy.stderr!.on('data', (d) => (stderr += d));
  await until(() => /admin .* on http:\/\/[\d.]+:\d+/.test(stderr) || proxy.exitCode !== null, 'the banner of ca-proxy run', 30_000);
  assert.equal(proxy.exitCode, null, `ca-proxy run exited: ${stderr}`);
  assert.match(stderr, /ca-proxy is running \(2 workers\)/);
  proxyUrl = `http://${/HTTP CONNECT proxy on ([\d.]+:\d+)/.exec(stderr)![1]}`;
  adminUrl = /admin .* on (http:\/\/[\d.]+:\d+)/.exec(stderr)![1]!;
}, 90_000);

afterAll(async () => {
  if (proxy && proxy.exitCode === null) {
    proxy.kill('SIGKILL');
  }
  await server?.stop();
  w?.cleanup();
});

describe('ca-proxy run with workers: 2', () => {
  test('connections are spread over both workers; one log stream of whole lines holds every decision', async () => {
    const codes = await burst(24);
    expect(codes.every((c) => c === 0)).toBe(true);
    await until(() => decisions().length >= 24, '24 decision lines', 20_000);
    const pids = new Set(decisions().map((d) => d.pid));
    expect(pids.size).toBe(2);
    expect(pids.has(proxy.pid!)).toBe(false); // the primary serves no connection
    expect(decisions().every((d) => d.decision!.outcome === 'allow')).toBe(true);
  });

  test('one /metrics: counters summed over the workers, CRL gauges not multiplied, memory per worker', async () => {
    const text = await metrics();
    const allowed = value(text, /^ca_proxy_connections_total\{.*outcome="allow"/).reduce((a, b) => a + b, 0);
    expect(allowed).toBe(decisions().filter((d) => d.decision!.outcome === 'allow').length);
    // The intermediate's CRL lists one entry (the "revoked" leaf), whatever the number of workers.
    expect(value(text, /^ca_proxy_crl_entries\{issuer=".*intermediate/)).toEqual([1]);
    expect(value(text, /^ca_proxy_workers_up /)).toEqual([2]);
    expect(value(text, /^ca_proxy_ready /)).toEqual([1]);
    for (const worker of ['0', '1']) {
      const [rss] = value(text, new RegExp(`^ca_proxy_worker_memory_bytes\\{worker="${worker}",kind="rss"\\}`));
      expect(rss).toBeGreaterThan(10 * 1024 * 1024);
    }
  });

  test('a CRL revoking the server reaches both workers together; then every connection is denied', async () => {
    const before = lines().length;
    w.pki.revoke('intermediate', w.good.certPath, 'keyCompromise');
    const crl = w.pki.crl('intermediate', { nextUpdateDays: 7 });
    fs.copyFileSync(crl, path.join(crlDir, '.next'));
    fs.renameSync(path.join(crlDir, '.next'), path.join(crlDir, 'intermediate.crl'));
    const reloads = () => lines().slice(before).filter((l) => l.msg === 'CRLs accepted' && JSON.stringify(l.crls).includes('intermediate.crl'));
    await until(() => new Set(reloads().map((l) => l.pid)).size === 2, 'both workers to accept the new CRL', 20_000);
    expect(lines().slice(before).filter((l) => /CRL refused|held/.test(l.msg ?? ''))).toEqual([]);
    const seen = decisions().length;
    const codes = await burst(16);
    expect(codes.every((c) => c !== 0)).toBe(true);
    await until(() => decisions().length >= seen + 16, '16 more decisions', 20_000);
    const after = decisions().slice(seen);
    expect(after.map((d) => d.decision!.reason)).toEqual(after.map(() => 'certificate_revoked'));
  });

  test('a killed worker is restarted, and /readyz comes back', async () => {
    const victim = decisions()[0]!.pid;
    process.kill(victim, 'SIGKILL');
    await until(() => lines().some((l) => l.msg === 'worker died; restarting it' && l.signal === 'SIGKILL'), 'the primary to log the death', 10_000);
    await until(async () => (await fetch(`${adminUrl}/readyz`)).status === 200 && value(await metrics(), /^ca_proxy_workers_up /)[0] === 2, 'two workers up again', 30_000);
    expect(value(await metrics(), /^ca_proxy_worker_restarts_total /)).toEqual([1]);
  });

  test('SIGTERM on the primary stops the workers and exits 0', async () => {
    const workers = [...new Set(decisions().map((d) => d.pid))];
    const exited = new Promise<number | null>((r) => proxy.once('exit', (code) => r(code)));
    proxy.kill('SIGTERM');
    expect(await exited).toBe(0);
    for (const pid of workers) {
      expect(() => process.kill(pid, 0)).toThrow();
    }
  });
});

describe('ca-proxy serve-extproc with workers: 2', () => {
  // Envoy multiplexes its streams over one HTTP/2 connection, and a connection belongs to one
  // worker: workers spread the Envoys (central placement), not one Envoy's streams. So: 8 Envoys.
  test('one Unix socket shared by both workers: the Envoys (stand-ins) are spread over both, decisions in one log', async () => {
    const { EnvoyStandIn } = await import('../support/envoy');
    const tls = await import('node:tls');
    const socket = path.join(w.dir, 'workers-extproc.sock');
    const config = { ...worldConfig(w), workers: 2, log: { level: 'info' as const }, extproc: { ...worldConfig(w).extproc, listen: `unix:${socket}` } };
    const file = path.join(w.dir, 'workers-extproc.json');
    fs.writeFileSync(file, JSON.stringify(config));
    const echo = tls.createServer({ cert: fs.readFileSync(w.good.certPath, 'utf8') + fs.readFileSync(w.chainPath, 'utf8'), key: fs.readFileSync(w.good.keyPath) }, (s) => {
      s.on('error', () => undefined);
      s.end('hello\n');
    });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
    let out = '';
    let err = '';
    const proc = spawn(process.execPath, [path.join(repoRoot(), 'dist/cmd/ca-proxy/main.js'), 'serve-extproc', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout!.on('data', (d) => (out += d));
    proc.stderr!.on('data', (d) => (err += d));
    // message_timeout as the injected bootstrap sets it (1 s): 16 first handshakes at once on a
    // loaded 2-core machine can exceed Envoy's bare 200 ms default.
    const upstream = { host: '127.0.0.1', port: (echo.address() as import('node:net').AddressInfo).port };
    const envoys = await Promise.all(Array.from({ length: 8 }, () => EnvoyStandIn.start({ target: `unix:${socket}`, upstream, messageTimeoutMs: 1000 })));
    try {
      await until(() => /in 2 workers/.test(err) || proc.exitCode !== null, 'serve-extproc to start', 30_000);
      assert.equal(proc.exitCode, null, err);
      const one = (i: number) =>
        new Promise<string>((resolve, reject) => {
          const s = tls.connect({ host: '127.0.0.1', port: envoys[i % envoys.length]!.port, servername: 'localhost', ca: fs.readFileSync(w.interceptionCA.certPath) });
          let got = '';
          s.on('data', (d) => (got += d));
          s.on('end', () => resolve(got));
          s.on('error', reject);
        });
      const got = await Promise.all(Array.from({ length: 16 }, (_, i) => one(i)));
      const failures = envoys.flatMap((e) => e.connections.filter((c) => c.failure).map((c) => c.failure));
      expect({ got, failures }).toEqual({ got: got.map(() => 'hello\n'), failures: [] });
      const logged = () => out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as LogLine).filter((l) => l.decision);
      await until(() => logged().length >= 16, '16 decisions in the primary\'s log', 20_000);
      expect(new Set(logged().map((l) => l.pid)).size).toBe(2);
      for (const e of envoys) e.assertClean();
    } finally {
      await Promise.all(envoys.map((e) => e.close()));
      const exited = new Promise<number | null>((r) => (proc.exitCode !== null ? r(proc.exitCode) : proc.once('exit', (code) => r(code))));
      proc.kill('SIGTERM');
      expect(await exited).toBe(0);
      echo.close();
    }
  });
});
