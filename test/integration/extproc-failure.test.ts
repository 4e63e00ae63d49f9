/**
 * The processor killed mid-connection: `ca-proxy serve-extproc` runs as its own process (on a Unix
 * socket, the sidecar placement) and is SIGKILLed while a connection is open. Envoy's filter
 * (the stand-in) then closes the connection with `failure_mode_allow: false`, and with `true`
 * lets traffic pass unprocessed. Also: the health service, and SIGTERM's graceful shutdown.
 */
import { test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { spawn, type ChildProcess } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import YAML from 'yaml';
import { makeWorld, worldConfig, runCmd, type World } from '../support/world';
import { EnvoyStandIn } from '../support/envoy';
import { repoRoot } from '../support/root';
import { loadProtos } from '../../internal/extproc/protos';

let w: World;
let echo: tls.Server;
let echoPort: number;
beforeAll(async () => {
  w = makeWorld();
  // An echo server with the "good" certificate: a long-lived connection to kill the processor under.
  echo = tls.createServer({ cert: fs.readFileSync(w.good.certPath, 'utf8') + fs.readFileSync(w.chainPath, 'utf8'), key: fs.readFileSync(w.good.keyPath) }, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  echoPort = (echo.address() as { port: number }).port;
});
afterAll(async () => {
  await new Promise<void>((r) => echo.close(() => r()));
  w.cleanup();
});

interface Child {
  proc: ChildProcess;
  socket: string;
  stderr: () => string;
}

async function spawnProcessor(name: string): Promise<Child> {
  const socket = path.join(w.dir, `${name}.sock`);
  const cfg = worldConfig(w);
  const file = path.join(w.dir, `${name}.yaml`);
  // One process: SIGKILL must hit the process that holds the streams (workers.test.ts covers several).
  fs.writeFileSync(file, YAML.stringify({ ...cfg, workers: 1, listen: { connect: '127.0.0.1:0', sni: null, sniUpstreamPort: 443 }, extproc: { ...cfg.extproc, listen: `unix:${socket}`, shutdownDeadlineMs: 3000 } }));
  const proc = spawn(process.execPath, [path.join(repoRoot(), 'dist/cmd/ca-proxy/main.js'), 'serve-extproc', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  proc.stdout!.resume();
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`serve-extproc did not start: ${err}`)), 10000);
    const check = () => {
      if (/NetworkExternalProcessor on/.test(err)) {
        clearTimeout(t);
        resolve();
      } else setTimeout(check, 20);
    };
    check();
  });
  return { proc, socket: `unix:${socket}`, stderr: () => err };
}

function exited(proc: ChildProcess): Promise<number | null> {
  return new Promise((r) => (proc.exitCode !== null ? r(proc.exitCode) : proc.once('exit', (code) => r(code))));
}

/** A TLS client through the stand-in that has completed its handshake and one echo round trip. */
async function echoClient(e: EnvoyStandIn): Promise<tls.TLSSocket> {
  const s = tls.connect({ host: '127.0.0.1', port: e.port, servername: 'localhost', ca: fs.readFileSync(w.interceptionCA.certPath) });
  s.on('error', () => undefined);
  await new Promise<void>((r, j) => {
    s.once('secureConnect', () => r());
    s.once('error', j);
  });
  s.write('ping');
  const got = await new Promise<string>((r) => s.once('data', (d) => r(d.toString())));
  assert.equal(got, 'ping');
  return s;
}

test('processor killed mid-connection, failure_mode_allow false: the stand-in closes the connection', async () => {
  const c = await spawnProcessor('kill-closed');
  const e = await EnvoyStandIn.start({ target: c.socket, upstream: { host: '127.0.0.1', port: echoPort }, failureModeAllow: false });
  try {
    const s = await echoClient(e);
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    c.proc.kill('SIGKILL');
    await exited(c.proc);
    await closed;
    await e.connections[0]!.done;
    assert.equal(e.connections[0]!.closedBy, 'failure');
    assert.match(e.connections[0]!.failure ?? '', /stream failed/);
    assert.equal(e.connections[0]!.metadata.ca_proxy?.outcome, 'allow', 'the decision arrived before the kill');
    e.assertClean();
  } finally {
    await e.close();
    c.proc.kill('SIGKILL');
  }
});

test('processor killed, failure_mode_allow true: traffic passes unprocessed (a new connection reaches the server directly)', async () => {
  const c = await spawnProcessor('kill-open');
  const e = await EnvoyStandIn.start({ target: c.socket, upstream: { host: '127.0.0.1', port: echoPort }, failureModeAllow: true });
  try {
    const s = await echoClient(e);
    c.proc.kill('SIGKILL');
    await exited(c.proc);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(e.connections[0]!.bypass, true, 'the open connection is no longer processed');
    s.destroy();
    // Unprocessed: the workload now sees the server's own certificate (root CA), not a minted leaf.
    const direct = tls.connect({ host: '127.0.0.1', port: e.port, servername: 'localhost', ca: fs.readFileSync(w.pki.root.certPath) });
    direct.on('error', () => undefined);
    await new Promise<void>((r, j) => {
      direct.once('secureConnect', () => r());
      direct.once('error', j);
    });
    assert.match(direct.getPeerX509Certificate()!.subject, /good/);
    direct.destroy();
    assert.ok(e.connections[1]!.bypass);
    e.assertClean();
  } finally {
    await e.close();
    c.proc.kill('SIGKILL');
  }
});

test('health: SERVING, NOT_FOUND for other services; SIGTERM: open streams finish, the process exits 0, later connections fail closed', async () => {
  const c = await spawnProcessor('term');
  const { health } = loadProtos();
  const hc = new health(c.socket, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    Check(req: { service: string }, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void): void;
  };
  const check = (service: string) => new Promise<{ err: grpc.ServiceError | null; status?: string }>((r) => hc.Check({ service }, (err, res) => r({ err, status: res?.status })));
  const e = await EnvoyStandIn.start({ target: c.socket, upstream: { host: '127.0.0.1', port: echoPort } });
  try {
    assert.equal((await check('')).status, 'SERVING');
    assert.equal((await check('envoy.service.network_ext_proc.v3.NetworkExternalProcessor')).status, 'SERVING');
    assert.equal((await check('nope')).err?.code, grpc.status.NOT_FOUND);
    const s = await echoClient(e);
    c.proc.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    // The open connection is still served during the shutdown deadline.
    s.write('still here');
    assert.equal(await new Promise<string>((r) => s.once('data', (d) => r(d.toString()))), 'still here');
    s.end();
    assert.equal(await exited(c.proc), 0, c.stderr());
    const res = await runCmd('curl', ['-sS', '--max-time', '3', '--connect-to', `localhost:443:127.0.0.1:${e.port}`, '--cacert', w.interceptionCA.certPath, 'https://localhost/']);
    assert.notEqual(res.code, 0, 'after shutdown no new connection is processed (fail closed)');
    e.assertClean();
  } finally {
    hc.close();
    await e.close();
    c.proc.kill('SIGKILL');
  }
});
