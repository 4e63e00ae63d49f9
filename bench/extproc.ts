/**
 * The Envoy ext_proc gRPC path measured beside the standalone listener, TLS 1.3 intercept:
 * - per-message added latency: for every request the Envoy stand-in (test/support/envoy.ts) sends,
 *   the time until its answer arrives (gRPC encode/decode + the Session's decrypt/re-encrypt),
 *   p50/p99 over all messages of the bulk transfers;
 * - relay throughput: `bytes` from a TLS server to a TLS client through (a) ca-proxy's SNI
 *   listener (standalone) and (b) the stand-in + ca-proxy's gRPC service, rounds alternating.
 *
 * Everything runs in this one process (client, server, stand-in, ca-proxy), so the two paths share
 * the same handicap; the numbers compare paths, not absolute capacity.
 * Run: `node dist/bench/extproc.js [--mib N] [--rounds N]`.
 */
import fs from 'node:fs';
import tls from 'node:tls';
import { performance } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { makeWorld, worldConfig } from '../test/support/world';
import { EnvoyStandIn } from '../test/support/envoy';
import { createRuntime } from '../cmd/ca-proxy/runtime';
import { createLogger } from '../internal/metrics/report';
import { listenSni } from '../internal/proxy/listeners';
import { startExtProcServer } from '../internal/extproc/server';
import { median, percentile } from './support';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}

async function main(): Promise<void> {
  const bytes = arg('mib', 64) * 1048576;
  const rounds = arg('rounds', 4);
  const w = makeWorld();
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  // Echo server for the unloaded per-message latency: one 1 KiB message at a time.
  const echo = tls.createServer({ cert: fs.readFileSync(w.good.certPath, 'utf8') + fs.readFileSync(w.chainPath, 'utf8'), key: fs.readFileSync(w.good.keyPath), minVersion: 'TLSv1.3' }, (s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  const echoPort = (echo.address() as { port: number }).port;
  const server = tls.createServer({ cert: fs.readFileSync(w.good.certPath, 'utf8') + fs.readFileSync(w.chainPath, 'utf8'), key: fs.readFileSync(w.good.keyPath), minVersion: 'TLSv1.3' }, (s) => {
    s.on('error', () => undefined);
    s.once('data', () => {
      let left = bytes;
      const pump = () => {
        while (left > 0) {
          const n = Math.min(left, chunk.length);
          left -= n;
          if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void s.once('drain', pump);
        }
      };
      pump();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const serverPort = (server.address() as { port: number }).port;

  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const config = worldConfig(w);
  config.limits.handshakeTimeoutMs = 30_000;
  const rt = await createRuntime(config, { listen: false, logger: createLogger('warn', sink) });
  const sni = await listenSni(rt.ctx, '127.0.0.1:0', { connectTimeoutMs: 5000, maxConnections: 10000, maxConnectionsPerSource: 10000, requestTimeoutMs: 10000, upstreamPort: serverPort });
  const grpcServer = await startExtProcServer(rt.ctx, { listen: '127.0.0.1:0' });
  const latencies: number[] = [];
  let record = false;
  const envoy = await EnvoyStandIn.start({
    target: grpcServer.address,
    upstream: { host: '127.0.0.1', port: serverPort },
    messageTimeoutMs: 5000,
    onAnswer: (_dir, ms) => {
      if (record) latencies.push(ms);
    },
  });
  const ca = fs.readFileSync(w.interceptionCA.certPath);

  // 1. Unloaded: 1 KiB ping-pong, each message answered before the next is sent.
  const pingLat: number[] = [];
  const rtt: Record<'standalone' | 'grpc', number[]> = { standalone: [], grpc: [] };
  const echoEnvoy = await EnvoyStandIn.start({ target: grpcServer.address, upstream: { host: '127.0.0.1', port: echoPort }, onAnswer: (_d, ms) => pingLat.push(ms) });
  const echoSni = await listenSni(rt.ctx, '127.0.0.1:0', { connectTimeoutMs: 5000, maxConnections: 10000, maxConnectionsPerSource: 10000, requestTimeoutMs: 10000, upstreamPort: echoPort });
  const msg = Buffer.alloc(1024, 0x62);
  for (const path of ['standalone', 'grpc'] as const) {
    const c = tls.connect({ host: '127.0.0.1', port: path === 'grpc' ? echoEnvoy.port : echoSni.address.port, servername: 'localhost', ca });
    await new Promise<void>((r, j) => {
      c.once('secureConnect', () => r());
      c.once('error', j);
    });
    if (path === 'grpc') pingLat.length = 0; // handshake messages are not counted
    for (let i = 0; i < 500; i++) {
      const t0 = performance.now();
      c.write(msg);
      let got = 0;
      await new Promise<void>((r) => {
        const on = (d: Buffer) => {
          got += d.length;
          if (got >= msg.length) {
            c.off('data', on);
            r();
          }
        };
        c.on('data', on);
      });
      rtt[path].push(performance.now() - t0);
    }
    c.destroy();
  }
  echoEnvoy.assertClean();
  await echoEnvoy.close();
  await echoSni.close(100);

  const transfer = (port: number): Promise<number> =>
    new Promise((resolve, reject) => {
      const c = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca });
      let got = 0;
      let t0 = 0;
      c.on('error', reject);
      c.once('secureConnect', () => {
        t0 = performance.now();
        c.write('go\n');
      });
      c.on('data', (d: Buffer) => {
        got += d.length;
        if (got >= bytes) {
          const ms = performance.now() - t0;
          c.destroy();
          resolve(ms);
        }
      });
    });

  const mbps: Record<'standalone' | 'grpc', number[]> = { standalone: [], grpc: [] };
  for (let r = 0; r < rounds; r++) {
    for (const path of r % 2 ? (['grpc', 'standalone'] as const) : (['standalone', 'grpc'] as const)) {
      record = path === 'grpc';
      const ms = await transfer(path === 'grpc' ? envoy.port : sni.address.port);
      record = false;
      mbps[path].push(bytes / 1e6 / (ms / 1000));
    }
  }
  envoy.assertClean();
  const lines = [
    `ext_proc bench: TLS 1.3 intercept, everything in one process (client, server, Envoy stand-in, ca-proxy)`,
    `unloaded, 1 KiB echo ×500: per-message answer time (stand-in request → answer), ${pingLat.length} messages: p50 ${percentile(pingLat, 50).toFixed(3)} ms, p99 ${percentile(pingLat, 99).toFixed(3)} ms`,
    `unloaded, 1 KiB echo round trip: standalone p50 ${percentile(rtt.standalone, 50).toFixed(3)} ms p99 ${percentile(rtt.standalone, 99).toFixed(3)} ms; gRPC path p50 ${percentile(rtt.grpc, 50).toFixed(3)} ms p99 ${percentile(rtt.grpc, 99).toFixed(3)} ms`,
    `bulk ${rounds} rounds × ${bytes / 1048576} MiB server→client:`,
    `  answer time under load (includes waiting behind earlier pipelined requests), ${latencies.length} messages: p50 ${percentile(latencies, 50).toFixed(3)} ms, p99 ${percentile(latencies, 99).toFixed(3)} ms, max ${Math.max(...latencies).toFixed(3)} ms`,
    `  relay throughput (median MB/s): standalone SNI listener ${median(mbps.standalone).toFixed(1)} [${mbps.standalone.map((x) => x.toFixed(0)).join(', ')}], gRPC path ${median(mbps.grpc).toFixed(1)} [${mbps.grpc.map((x) => x.toFixed(0)).join(', ')}] (ratio ${(median(mbps.grpc) / median(mbps.standalone)).toFixed(2)})`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  await envoy.close();
  await grpcServer.close(500);
  await sni.close(100);
  await rt.close();
  server.close();
  echo.close();
  w.cleanup();
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench/extproc: ${(err as Error).stack}\n`);
    process.exit(1);
  },
);
