/**
 * Webhook latency: AdmissionReviews answered by `ca-proxy inject` (the CLI, as its own process)
 * over HTTPS, as the API server sends them — one keep-alive connection, one review at a time
 * (the API server calls a webhook once per admission and reuses its connections). Measured at the
 * client, from writing the request to the last byte of the answer:
 * - 1,000 reviews of a labelled Pod (two containers, one init container) for each placement,
 *   after 100 unmeasured ones; p50, p99, max;
 * - 200 reviews each on a new TLS connection (the cost of a handshake per call, for contrast).
 * The answers are checked (allowed, with a patch); a failed review is counted, not timed. Also the
 * webhook process's CPU time per review (/proc/PID/stat), which other load on the machine does not inflate.
 *
 * Prints a table and rewrites its section of docs/benchmarks.md (`<!-- webhook-bench:begin/end -->`).
 * Run: `node dist/bench/webhook.js [--reviews N] [--no-docs]` (after `npx tsc -p .`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { admissionReview, podFixture } from '../test/support/admission';
import { makePki } from '../test/support/pki';
import { machineInfo, mdTable, percentile } from './support';

const args = process.argv.slice(2);
const arg = (name: string, dflt: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const REVIEWS = arg('--reviews', 1000);
const WARMUP = 100;
const NEW_CONNECTIONS = 200;
const WRITE_DOCS = !args.includes('--no-docs');
const HOST = 'ca-proxy-injector.ca-proxy.svc';
const MAIN = path.resolve(__dirname, '..', 'cmd', 'ca-proxy', 'main.js');

interface Series {
  label: string;
  ms: number[];
  errors: number;
  firstError?: string;
  /** CPU time (user + system) the webhook process spent per measured review, ms. */
  cpuMsPerReview: number;
}

/** CPU time of a process so far, ms (Linux /proc; clock ticks of 10 ms, fine over hundreds of reviews). */
function cpuMs(pid: number): number {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN;
  }
}

function startWebhook(configFile: string): Promise<{ child: ChildProcess; port: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, 'inject', '--config', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    const t = setTimeout(() => reject(new Error(`ca-proxy inject did not start: ${err}`)), 30_000);
    child.stderr!.on('data', (c: Buffer) => {
      err += c.toString();
      const m = /AdmissionReviews on https:\/\/127\.0\.0\.1:(\d+)/.exec(err);
      if (m) {
        clearTimeout(t);
        resolve({ child, port: Number(m[1]) });
      }
    });
    child.once('exit', (code) => reject(new Error(`ca-proxy inject exited with ${code}: ${err}`)));
  });
}

function post(port: number, ca: string, agent: https.Agent | false, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const req = https.request({ host: '127.0.0.1', port, servername: HOST, ca, agent, method: 'POST', path: '/mutate', headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        const text = Buffer.concat(chunks).toString('utf8');
        const r = res.statusCode === 200 ? (JSON.parse(text) as { response: { allowed: boolean; patch?: string } }).response : null;
        if (!r || r.allowed !== true || !r.patch) reject(new Error(`HTTP ${res.statusCode}: ${text.slice(0, 120)}`));
        else resolve(ms);
      });
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.end(body);
  });
}

async function series(label: string, n: number, warmup: number, pid: number, port: number, ca: string, agent: https.Agent | false, body: string): Promise<Series> {
  const s: Series = { label, ms: [], errors: 0, cpuMsPerReview: NaN };
  let cpu0 = 0;
  for (let i = 0; i < warmup + n; i++) {
    if (i === warmup) cpu0 = cpuMs(pid);
    try {
      const ms = await post(port, ca, agent, body);
      if (i >= warmup) s.ms.push(ms);
    } catch (e) {
      s.errors++;
      s.firstError ??= (e as Error).message;
    }
  }
  s.cpuMsPerReview = (cpuMs(pid) - cpu0) / n;
  return s;
}

async function main(): Promise<void> {
  const machine = machineInfo();
  const pki = makePki({ keyType: 'ec' });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-webhook-bench-'));
  const children: ChildProcess[] = [];
  try {
    const leaf = pki.issueLeaf('webhook', { san: [`DNS:${HOST}`] });
    fs.writeFileSync(path.join(dir, 'tls.crt'), leaf.certPem + pki.intermediate.certPem);
    fs.copyFileSync(leaf.keyPath, path.join(dir, 'tls.key'));
    const pod = podFixture({
      spec: {
        initContainers: [{ name: 'migrate', image: 'registry.test/migrate:1' }],
        containers: [
          { name: 'app', image: 'registry.test/app:1', env: [{ name: 'PORT', value: '8080' }], volumeMounts: [{ name: 'data', mountPath: '/data' }] },
          { name: 'worker', image: 'registry.test/worker:1' },
        ],
        volumes: [{ name: 'data', emptyDir: {} }],
      },
    });
    const body = JSON.stringify(admissionReview(pod));
    const results: Series[] = [];
    for (const placement of ['central', 'sidecar'] as const) {
      const file = path.join(dir, `${placement}.yaml`);
      fs.writeFileSync(file, YAML.stringify({ admin: null, log: { level: 'warn' }, injector: { listen: '127.0.0.1:0', placement, tls: { cert: 'tls.crt', key: 'tls.key' }, images: { caProxy: 'registry.test/ca-proxy:bench', envoy: 'registry.test/envoy:v1.40.0' } } }));
      const { child, port } = await startWebhook(file);
      children.push(child);
      const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
      results.push(await series(`${placement}, one keep-alive connection`, REVIEWS, WARMUP, child.pid!, port, pki.root.certPem, agent, body));
      agent.destroy();
      if (placement === 'central') results.push(await series('central, a new TLS connection per review', NEW_CONNECTIONS, 10, child.pid!, port, pki.root.certPem, false, body));
      child.kill('SIGTERM');
    }
    const fmt = (x: number): string => `${x.toFixed(2)} ms`;
    const table = mdTable(
      ['reviews', 'n', 'p50', 'p99', 'max', 'webhook CPU per review', 'failed'],
      results.map((s) => [s.label, String(s.ms.length), fmt(percentile(s.ms, 50)), fmt(percentile(s.ms, 99)), fmt(Math.max(...s.ms)), fmt(s.cpuMsPerReview), s.errors ? `${s.errors} (${s.firstError})` : '0']),
    );
    const context =
      `\`ca-proxy inject\` (the CLI, its own process) and the client on the same ${machine.nproc}-core machine (${machine.cpu}, Node ${machine.node}), load average ${os.loadavg()[0]!.toFixed(2)} at the end. ` +
      `The review is a Pod CREATE with one init container and two containers (about ${(Buffer.byteLength(body) / 1024).toFixed(1)} KiB); the answer carries the JSON Patch (redirect and Envoy containers, the bootstrap rendered for the pod, the CA bundle on three containers). ` +
      `Latency at the client, request written → answer read, reviews sent one at a time after ${WARMUP} unmeasured ones; ECDSA P-256 serving certificate, TLS 1.3. The CPU column (the webhook process's user + system time over the measured reviews, from /proc) does not depend on how busy the machine is; the latencies do: with other work on the cores, most of a review's time is waiting to be scheduled.`;
    console.log(`${context}\n\n${table}`);
    if (WRITE_DOCS) writeDocs(`${context}\n\n${table}\n\nRun: \`node dist/bench/webhook.js\` (after \`npx tsc -p .\`). Measured ${new Date().toISOString().slice(0, 10)}.`);
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    pki.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Replace the webhook section of docs/benchmarks.md (between markers), leaving other sections alone. */
function writeDocs(body: string): void {
  const file = path.resolve(__dirname, '..', '..', 'docs', 'benchmarks.md');
  const begin = '<!-- webhook-bench:begin -->';
  const end = '<!-- webhook-bench:end -->';
  const section = `${begin}\n## Admission webhook latency\n\n${body}\n${end}`;
  let text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Benchmarks\n\nNumbers from `bench/`, written by the benchmarks themselves.\n';
  const a = text.indexOf(begin);
  const b = text.indexOf(end);
  if (a >= 0 && b > a) text = text.slice(0, a) + section + text.slice(b + end.length);
  else text = text.trimEnd() + '\n\n' + section + '\n';
  fs.writeFileSync(file, text);
  console.log(`\nwrote ${path.relative(process.cwd(), file)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
