/**
 * `make demo`: two mutual-TLS servers (one good, one revoked by the demo CRL), ca-proxy with
 * the development configuration, and curl through the proxy to each. Prints the two decisions
 * and the metric lines that changed, then keeps the servers up for your own curl through
 * `make run` until Ctrl-C (unless stdin is not a terminal).
 *
 *   node dist/scripts/demo.js .local
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { Writable } from 'node:stream';
import { ensureDevPki } from './dev-pki';
import { startDemoServers } from './demo-servers';
import { createRuntime } from '../cmd/ca-proxy/runtime';
import { devConfig } from '../internal/config/defaults';
import { createLogger } from '../internal/metrics/report';
import type { Decision } from '../internal/engine/decision';

const DEMO_PORTS = { good: 8443, revoked: 8444 };

async function metrics(url: string): Promise<Map<string, string>> {
  const text = await (await fetch(url)).text();
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('ca_proxy_')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), line.slice(i + 1));
  }
  return out;
}

function curl(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('curl', args);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', (err) => reject(new Error(`curl is needed for the demo: ${err.message}`)));
    child.on('close', () => resolve(out));
  });
}

async function main(): Promise<void> {
  const dir = path.resolve(process.argv[2] ?? '.local');
  await ensureDevPki(dir);
  const servers = await startDemoServers(dir, DEMO_PORTS).catch(() => startDemoServers(dir));
  const config = { ...devConfig(dir), listen: { connect: '127.0.0.1:0', sni: null, sniUpstreamPort: 443 }, admin: '127.0.0.1:0' };
  const quiet = new Writable({ write: (_c, _e, cb) => cb() });
  const rt = await createRuntime(config, { logger: createLogger('info', quiet) });
  const decisions: Decision[] = [];
  rt.onDecision((d) => decisions.push(d));
  const proxy = `http://127.0.0.1:${rt.connect!.address.port}`;
  const adminUrl = `http://127.0.0.1:${rt.admin!.address.port}/metrics`;
  const before = await metrics(adminUrl);

  for (const [name, url] of [['good', servers.good.url], ['revoked', servers.revoked.url]] as const) {
    const args = ['-sS', '--max-time', '10', '--proxy', proxy, '--cacert', path.join(dir, 'interception-ca.crt'), url];
    console.log(`\n$ curl ${args.join(' ')}`);
    // Asynchronously: the proxy runs in this very process and must keep serving meanwhile.
    process.stdout.write(await curl(args));
    for (let i = 0; i < 50 && decisions.length < (name === 'good' ? 1 : 2); i++) await new Promise((res) => setTimeout(res, 20));
    const d = decisions[decisions.length - 1];
    console.log(`\ndecision for ${name}:`);
    console.log(JSON.stringify(d, null, 2));
  }

  const after = await metrics(adminUrl);
  console.log('\nmetric lines that changed:');
  for (const [k, v] of after) if (before.get(k) !== v && !k.startsWith('ca_proxy_handshake_duration_seconds_bucket')) console.log(`  ${k} ${before.get(k) ?? '(new)'} -> ${v}`);
  await rt.close();

  if (process.stdin.isTTY) {
    console.log(`\nThe demo servers stay up: ${servers.good.url} and ${servers.revoked.url}`);
    console.log(`With \`make run\` in another terminal: curl --proxy http://127.0.0.1:3128 --cacert ${path.join(dir, 'interception-ca.crt')} ${servers.good.url}`);
    console.log('Ctrl-C to stop.');
    process.once('SIGINT', () => void servers.close().then(() => process.exit(0)));
  } else {
    await servers.close();
  }
}

main().catch((err) => {
  console.error(`demo: ${err instanceof Error ? err.message : err}`);
  process.exit(1);
});
