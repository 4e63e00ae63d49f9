/**
 * `make bench`: runs every benchmark and writes docs/benchmarks.md.
 *
 * 1. bench/crl.ts, as a child process (`node dist/bench/crl.js`); it rewrites its own section
 *    of docs/benchmarks.md (between `<!-- crl-bench:begin/end -->`);
 * 2. bench/handshake.ts and bench/relay.ts, against one set of peers (bench/support.ts);
 * 3. docs/benchmarks.md rebuilt: the intro (how to run, the machine), the CRL section as
 *    crl.js left it, the "Handshakes and relay" section, and any other marked section kept.
 *
 * Benchmarks measure and report; they never fail on a number. Everything is bounded: a fixed
 * count of connections and bytes, per-connection time limits, and a watchdog that ends the
 * run (and its child processes) after WATCHDOG_MS.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { handshakeTable, runHandshakeBench, type HandshakeResult } from './handshake';
import { relayTable, runRelayBench, type RelayResult } from './relay';
import { machineInfo, startBenchPeers, type BenchPeers, type MachineInfo } from './support';

const WATCHDOG_MS = 8 * 60_000;
const CRL_TIMEOUT_MS = 180_000;
const DOCS = path.resolve(__dirname, '..', '..', 'docs', 'benchmarks.md');
const MY_BEGIN = '<!-- handshake-relay-bench:begin -->';
const MY_END = '<!-- handshake-relay-bench:end -->';
const CRL_BEGIN = '<!-- crl-bench:begin -->';
const CRL_END = '<!-- crl-bench:end -->';

/** Runs `node dist/bench/crl.js` with inherited output; resolves with its exit code (null = killed). */
function runCrlBench(): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(__dirname, 'crl.js')], { stdio: 'inherit' });
    const t = setTimeout(() => child.kill('SIGKILL'), CRL_TIMEOUT_MS);
    child.once('exit', (code) => {
      clearTimeout(t);
      resolve(code);
    });
  });
}

/** The marked sections (`<!-- NAME:begin -->…<!-- NAME:end -->`) of the current file, by name, in order. */
function markedSections(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/<!-- ([\w-]+):begin -->[\s\S]*?<!-- \1:end -->/g)) out.set(m[1]!, m[0]);
  return out;
}

function intro(m: MachineInfo, loadEnd: number, totalS: number): string {
  return [
    '# Benchmarks',
    '',
    'Numbers from `bench/`, written by the benchmarks themselves. They measure and report; nothing here is asserted.',
    '',
    'Run them all with `make bench` (builds, then `node dist/bench/run.js`, about a minute), or one at a time after',
    '`npx tsc -p .`: `node dist/bench/crl.js`, `node dist/bench/handshake.js [--connections N] [--concurrency N] [--rounds N]`,',
    '`node dist/bench/relay.js [--mib N] [--rounds N]` (these two print their tables; `run.js` writes this file).',
    '',
    `Last run: ${m.date}, ${totalS.toFixed(0)} s in all. Machine: \`nproc\` = ${m.nproc} (${m.cpu}), \`node -v\` = ${m.node}, \`openssl version\` = ${m.openssl}.`,
    `Load average (1 min) ${m.loadavg.toFixed(2)} at the start and ${loadEnd.toFixed(2)} at the end: other work on the machine (other builds and tests) shares the cores and skews every number below.`,
  ].join('\n');
}

function mySection(hs: HandshakeResult, relay: RelayResult, m: MachineInfo): string {
  const h = hs.options;
  const mib = relay.options.bytes / (1024 * 1024);
  const cipher = relay.byPath.proxy.cipher ?? relay.byPath.direct.cipher ?? 'unknown';
  const hsCiphers = h.versions.map((v) => `${v} ${hs.byVersion[v].proxy.cipher ?? hs.byVersion[v].direct.cipher ?? '?'}`).join(', ');
  return [
    MY_BEGIN,
    '## Handshakes and relay',
    '',
    `**Set-up.** Three kinds of process on the same ${m.nproc}-core machine, each with its own event loop: the benchmark client, the upstream TLS servers (Node \`tls.createServer\`, requiring a client certificate issued by \`client-ca\`), and in the middle either ca-proxy (started through \`cmd/ca-proxy/runtime.ts\` as \`ca-proxy run\` does: CONNECT listener, intercept mode, chain and CRL check against the test PKI's CRLs with hardFail, the proxy identity presented on CertificateRequest, one JSON decision log line per connection written to a discarding stream) or a plain TCP CONNECT relay. **Client, proxy and server all share the ${m.nproc} cores** (and with whatever else runs on the machine), so in the proxied runs ca-proxy's CPU time is taken from the same cores the client and the server need: the proxy/direct ratios below are likely lower than where the proxy has cores of its own. The CPU columns say what each process spent, which does not depend on that sharing. Keys and certificates are ECDSA P-256 (test/support/world.ts), all on 127.0.0.1.`,
    '',
    '### New handshakes',
    '',
    `Full handshakes (the client never offers a session to resume; ca-proxy does not resume upstream either), one request/response of 5 bytes each way per connection, then the client closes. *direct*: the client connects to the server and presents the proxy identity itself. *through ca-proxy*: CONNECT, then TLS to ca-proxy trusting the interception CA; ca-proxy completes its own handshake with the server first (presenting the identity, checking the chain and CRLs), then answers the client with a minted leaf (cached per SNI: one destination here, so minting cost is not in the steady state). ${h.connections} connections per side per round at concurrency ${h.concurrency}, ${h.rounds} rounds, the side that goes first alternating each round, after ${h.warmup} unmeasured connections per side. Rate = completed connections / wall time of the round; latency = from TCP connect to the answer, over all measured connections. CPU columns: each process's CPU time (process.cpuUsage) over the measured rounds, divided by connections. Cipher suites: ${hsCiphers}.`,
    '',
    handshakeTable(hs),
    '',
    '### Bulk relay',
    '',
    `One connection carrying ${mib} MiB from the server to the client over TLS 1.3 (${cipher}), timed from the request (written after the handshake) to the last byte counted by the client (the server does not close; the client closes once it has every byte, so neither handshake nor teardown is in the time). *direct TLS*: client ↔ server. *plain TCP relay*: the same end-to-end TLS through a minimal Node CONNECT relay that only \`pipe\`s bytes — the floor for any relay written in Node. *ca-proxy*: intercept, so every byte is decrypted from the server's session and re-encrypted into the client's. ${relay.options.rounds} runs per path, the order rotating each round; MB/s = 10^6 bytes/s; median shown with every run. CPU column: median CPU seconds per transfer of each process ("middle" = the relay or ca-proxy).`,
    '',
    relayTable(relay),
    '',
    summary(hs, relay),
    '',
    ...failures(hs, relay),
    'Run: `make bench` (this section: bench/handshake.ts, bench/relay.ts, bench/support.ts).',
    MY_END,
  ].join('\n');
}

/** ca-proxy's own CPU cost, turned into what one core can sustain. */
function summary(hs: HandshakeResult, relay: RelayResult): string {
  const per = hs.options.versions.map((v) => {
    const ms = hs.byVersion[v].proxy.cpuMsPerConnection.proxy;
    return `${ms.toFixed(2)} ms per ${v} connection (≈ ${(1000 / ms).toFixed(0)} new connections/s per core)`;
  });
  const cpuS = relay.byPath.proxy.cpuMsPerTransfer.middle / 1000;
  const mb = relay.options.bytes / 1e6;
  return [
    `**In short.** ca-proxy's own CPU time: ${per.join(', ')} — both handshakes, the chain and CRL check, the minted-leaf lookup and the decision log;`,
    `and ${cpuS.toFixed(2)} s per ${(relay.options.bytes / (1024 * 1024)).toFixed(0)} MiB relayed in intercept mode (≈ ${(mb / cpuS).toFixed(0)} MB/s per core), against ${(relay.byPath['tcp-relay'].cpuMsPerTransfer.middle / 1000).toFixed(2)} s for the plain TCP relay.`,
  ].join(' ');
}

/** A paragraph on failed connections/transfers, if any (they are left out of the medians). */
function failures(hs: HandshakeResult, relay: RelayResult): string[] {
  const lines: string[] = [];
  for (const v of hs.options.versions) {
    for (const side of ['direct', 'proxy'] as const) {
      const s = hs.byVersion[v][side];
      if (s.errors) lines.push(`${s.errors} of ${hs.options.connections * hs.options.rounds} ${v} connections (${side}) failed: ${s.firstError}.`);
    }
  }
  for (const [p, s] of Object.entries(relay.byPath)) {
    if (s.errors) lines.push(`${s.errors} of ${relay.options.rounds} ${p} transfers failed: ${s.firstError}.`);
  }
  if (!lines.length) return [];
  return [
    `**Failures.** ${lines.join(' ')} Failed runs are counted, not timed: the rates and medians above are over the runs that completed. A \`bad record mac\` at the client means the TLS records it received were not the ones its peer's TLS stack produced — the byte stream was altered on the way.`,
    '',
  ];
}

function writeDocs(m: MachineInfo, loadEnd: number, totalS: number, mine: string, crlFailed: boolean): void {
  const old = fs.existsSync(DOCS) ? fs.readFileSync(DOCS, 'utf8') : '';
  const sections = markedSections(old);
  let crl = sections.get('crl-bench');
  if (!crl) crl = `${CRL_BEGIN}\n## CRL loading and lookup\n\nNot measured: \`node dist/bench/crl.js\` failed in this run.\n${CRL_END}`;
  else if (crlFailed) crl = crl.replace(CRL_END, `\n_The CRL benchmark failed in the run of ${m.date}; these numbers are from an earlier run._\n${CRL_END}`);
  const others = [...sections].filter(([name]) => name !== 'crl-bench' && name !== 'handshake-relay-bench').map(([, body]) => body);
  const text = [intro(m, loadEnd, totalS), crl, mine, ...others].join('\n\n') + '\n';
  fs.mkdirSync(path.dirname(DOCS), { recursive: true });
  fs.writeFileSync(DOCS, text);
  console.log(`\nwrote ${path.relative(process.cwd(), DOCS)}`);
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const m = machineInfo();
  console.log(`ca-proxy benchmarks — nproc ${m.nproc}, node ${m.node}, ${m.openssl}, ${m.date}, load ${m.loadavg.toFixed(2)}\n`);

  let peers: BenchPeers | null = null;
  const watchdog = setTimeout(() => {
    console.error(`bench: still running after ${WATCHDOG_MS / 60_000} min; stopping`);
    void (peers?.close() ?? Promise.resolve()).finally(() => process.exit(2));
  }, WATCHDOG_MS);
  watchdog.unref();

  console.log('== CRL (node dist/bench/crl.js)');
  const crlCode = await runCrlBench();
  if (crlCode !== 0) console.error(`bench/crl.js exited with ${crlCode}`);

  console.log('\n== handshakes and relay');
  peers = await startBenchPeers();
  let hs: HandshakeResult;
  let relay: RelayResult;
  try {
    hs = await runHandshakeBench(peers);
    relay = await runRelayBench(peers);
  } finally {
    await peers.close();
    peers = null;
  }
  const mine = mySection(hs, relay, m);
  console.log('\n' + handshakeTable(hs) + '\n\n' + relayTable(relay));
  writeDocs(m, os.loadavg()[0]!, (Date.now() - t0) / 1000, mine, crlCode !== 0);
  clearTimeout(watchdog);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
