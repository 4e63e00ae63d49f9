/**
 * Issue 10, item 2 (DESIGN.md "Stream integrity"): a cut stream stays cut. Python's ssl on both
 * sides of an intercepting ca-proxy (test/support/tls-ends.py, `suppress_ragged_eofs=False`) tells
 * a close_notify from a TCP end without one and from a reset. For each front door — the CONNECT
 * listener, the SNI listener, and the ext_proc service behind the Envoy stand-in — the server ends
 * its response cleanly, truncates it or resets it, and the workload ends its own stream cleanly or
 * truncates it; the other peer must see the same kind of end, and the decision's `ends` must say
 * how each side ended. GnuTLS (`gnutls-cli`) checks the server-side cases as a second, independent
 * TLS stack; one server speaks only TLS 1.2, whose close_notify is a plaintext-typed record.
 */
import { describe, test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import { makeWorld, worldConfig, startProxy, type World, type RunningProxy } from '../support/world';
import { startProcessor, EnvoyStandIn, type Processor } from '../support/envoy';
import { startEndsServer, runEndsClient, runGnutlsCli, BODY_BYTES, type EndsServer, type ClientSeen, type ServerMode } from '../support/tls-ends';
import { until } from '../support/until';
import type { Decision } from '../../internal/engine/decision';

let w: World;
let server: EndsServer;
let server12: EndsServer;
let p: RunningProxy;
let q: Processor;
let envoy: EnvoyStandIn;
beforeAll(async () => {
  w = makeWorld();
  server = await startEndsServer(w.good, w.chainPath, w.dir);
  server12 = await startEndsServer(w.good, w.chainPath, w.dir, { tls12: true });
  const cfg = worldConfig(w, { sni: true });
  cfg.listen.sniUpstreamPort = server.port;
  p = await startProxy(cfg);
  q = await startProcessor(worldConfig(w), { closeBackstopMs: 500 });
  envoy = await EnvoyStandIn.start({
    target: q.grpc.address,
    upstream: { host: '127.0.0.1', port: server.port },
    initialMetadata: { 'x-ca-proxy-destination-address': '127.0.0.1', 'x-ca-proxy-destination-port': String(server.port) },
  });
});
afterAll(async () => {
  await envoy?.close();
  await q?.stop();
  await p?.stop();
  await server?.stop();
  await server12?.stop();
  w.cleanup();
});

interface Door {
  name: string;
  /** The ext_proc door: the processor learns of ends only through Envoy. */
  behindEnvoy?: boolean;
  /** The server behind the door (default: the TLS 1.3 one). */
  server?: () => EndsServer;
  run(mode: ServerMode, end?: 'clean' | 'truncate'): Promise<ClientSeen>;
  /** The connection's decision once it has closed (its `ends` set). */
  closedDecision(): Promise<Decision>;
}

async function closed(next: () => Promise<Decision>): Promise<Decision> {
  const d = await next();
  await until(() => d.ends !== undefined, `the close of connection ${d.connectionId} (decision ${d.reason})`);
  return d;
}

const DOORS: Door[] = [
  {
    name: 'the CONNECT listener',
    run: (mode, end) => runEndsClient({ proxy: `127.0.0.1:${p.rt.connect!.address.port}`, target: `localhost:${server.port}` }, { servername: 'localhost', cafile: w.interceptionCA.certPath, mode, end }),
    closedDecision: () => closed(() => p.nextDecision()),
  },
  {
    name: 'the CONNECT listener to a TLS 1.2 server',
    server: () => server12,
    run: (mode, end) => runEndsClient({ proxy: `127.0.0.1:${p.rt.connect!.address.port}`, target: `localhost:${server12.port}` }, { servername: 'localhost', cafile: w.interceptionCA.certPath, mode, end }),
    closedDecision: () => closed(() => p.nextDecision()),
  },
  {
    name: 'the SNI listener',
    run: (mode, end) => runEndsClient({ direct: `127.0.0.1:${p.rt.sni!.address.port}` }, { servername: 'localhost', cafile: w.interceptionCA.certPath, mode, end }),
    closedDecision: () => closed(() => p.nextDecision()),
  },
  {
    name: 'the ext_proc service behind the Envoy stand-in',
    behindEnvoy: true,
    run: (mode, end) => runEndsClient({ direct: `127.0.0.1:${envoy.port}` }, { servername: 'localhost', cafile: w.interceptionCA.certPath, mode, end }),
    closedDecision: () => closed(() => q.nextDecision()),
  },
];

for (const door of DOORS) {
  describe(`intercept through ${door.name}`, () => {
    test('the server sends close_notify: the workload gets the whole body and a close_notify; ends clean', async () => {
      const seen = await door.run('clean');
      const d = await door.closedDecision();
      assert.deepEqual(seen, { bytes: BODY_BYTES, end: 'CLEAN' }, JSON.stringify(d));
      assert.deepEqual([d.action, d.outcome, d.reason], ['intercept', 'allow', 'ok']);
      assert.equal(d.ends!.server, 'clean', JSON.stringify(d.ends));
    });

    test('the server cuts TCP without close_notify: the workload sees a ragged EOF, never a close_notify; ends.server truncated', async () => {
      const seen = await door.run('truncate');
      const d = await door.closedDecision();
      assert.equal(seen.end, 'RAGGED', `the workload must not see a clean close: ${JSON.stringify(seen)}`);
      assert.equal(seen.bytes, BODY_BYTES, 'the bytes before the cut still arrive');
      assert.deepEqual([d.action, d.outcome, d.reason], ['intercept', 'allow', 'ok']);
      assert.equal(d.ends!.server, 'truncated', JSON.stringify(d.ends));
    });

    test('the server resets the connection mid-response: the workload sees no close_notify; a reset seen is mirrored as a reset', async () => {
      const seen = await door.run('reset');
      const d = await door.closedDecision();
      assert.ok(seen.end === 'RESET' || seen.end === 'RAGGED', `the workload must see an unclean end: ${JSON.stringify({ seen, ends: d.ends, reason: d.reason, detail: d.detail })}`);
      // Linux reports a RST to the proxy's socket as an error once; when a write consumed it first,
      // the read that follows is a plain EOF, which the proxy can only take for a truncation.
      // Behind Envoy the upstream reset makes Envoy close the downstream and drop the stream: the
      // processor only learns that it lost the connection (`proxy`), never a clean end.
      const unclean = door.behindEnvoy ? ['reset', 'truncated', 'proxy'] : ['reset', 'truncated'];
      assert.ok(unclean.includes(d.ends!.server!), JSON.stringify({ seen, d }));
      if (d.ends!.server === 'reset' && !door.behindEnvoy) {
        // The standalone door mirrors the reset it saw; behind Envoy the processor only learns of an end.
        assert.equal(seen.end, 'RESET', JSON.stringify({ seen, ends: d.ends }));
      }
    });

    test('the workload sends close_notify: the server sees a close_notify; ends.workload clean', async () => {
      const seen = await door.run('read', 'clean');
      const end = await (door.server?.() ?? server).nextEnd();
      const d = await door.closedDecision();
      assert.deepEqual(seen, { sent: 'clean' });
      assert.equal(end.how, 'CLEAN', `the server must see the workload's close_notify: ${JSON.stringify(end)}`);
      assert.equal(d.ends!.workload, 'clean', JSON.stringify(d.ends));
    });

    test('the workload cuts TCP without close_notify: the server sees a ragged EOF; ends.workload truncated', async () => {
      const seen = await door.run('read', 'truncate');
      const end = await (door.server?.() ?? server).nextEnd();
      const d = await door.closedDecision();
      assert.deepEqual(seen, { sent: 'truncate' });
      assert.equal(end.how, 'RAGGED', `the server must not see a clean close: ${JSON.stringify(end)}`);
      assert.equal(d.ends!.workload, 'truncated', JSON.stringify(d.ends));
    });
  });
}

describe('GnuTLS as the workload (a second, independent TLS stack)', () => {
  const doors = [
    { name: 'the SNI listener', port: () => p.rt.sni!.address.port, next: () => closed(() => p.nextDecision()) },
    { name: 'the Envoy stand-in', port: () => envoy.port, next: () => closed(() => q.nextDecision()) },
  ];
  for (const door of doors) {
    test(`through ${door.name}: gnutls-cli sees a proper close after close_notify and a non-proper one after a cut`, async () => {
      const clean = await runGnutlsCli(door.port(), { servername: 'localhost', cafile: w.interceptionCA.certPath, mode: 'clean' });
      const d1 = await door.next();
      assert.match(clean, /Peer has closed the GnuTLS connection/, clean);
      assert.doesNotMatch(clean, /non-properly terminated/);
      assert.equal(d1.ends!.server, 'clean');
      const cut = await runGnutlsCli(door.port(), { servername: 'localhost', cafile: w.interceptionCA.certPath, mode: 'truncate' });
      const d2 = await door.next();
      assert.match(cut, /The TLS connection was non-properly terminated/, cut);
      assert.equal(d2.ends!.server, 'truncated');
    });
  }
});

test('the stand-in kept Envoy\'s lockstep rules on every connection', () => {
  envoy.assertClean();
});
