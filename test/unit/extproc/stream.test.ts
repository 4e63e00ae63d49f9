/**
 * The ext_proc service driven by a raw gRPC client (no stand-in): bad requests end only their own
 * stream with a clear status; 1,000 concurrent streams are answered in lockstep and their
 * memory is released after they close.
 */
import { describe, test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Duplex } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { makeWorld, worldConfig, type World } from '../../support/world';
import { startProcessor, type Processor } from '../../support/envoy';
import { loadProtos, fromStruct, toStruct, type ProcessingRequest, type ProcessingResponse } from '../../../internal/extproc/protos';
import { ATTRIBUTES_FILTER_NAME } from '../../../internal/extproc/connection-info';
import { until } from '../../support/until';
import { checkRequest } from '../../../internal/extproc/stream';

type Call = grpc.ClientDuplexStream<ProcessingRequest, ProcessingResponse>;

let w: World;
let p: Processor;
let client: grpc.Client;
beforeAll(async () => {
  w = makeWorld();
  p = await startProcessor(worldConfig(w, { rules: [{ name: 'pass', match: { sni: 'pass.localhost' }, action: 'passthrough' }] }));
  client = new (loadProtos().extProc)(p.grpc.address, grpc.credentials.createInsecure());
});
afterAll(async () => {
  client.close();
  await p.stop();
  w.cleanup();
});

/** A Process stream for a connection whose original destination is 127.0.0.1 (what Envoy < 1.40 can say in a header). */
function open(): Call {
  const md = new grpc.Metadata();
  md.set('x-ca-proxy-destination-address', '127.0.0.1');
  return (client as unknown as { Process(md: grpc.Metadata): Call }).Process(md);
}

/** A real ClientHello from Node's TLS client for `servername`. */
function clientHello(servername: string): Promise<Buffer> {
  return new Promise((resolve) => {
    const sock = new Duplex({
      read() {},
      write(chunk: Buffer, _e, cb) {
        resolve(Buffer.from(chunk));
        cb();
        setImmediate(() => s.destroy());
      },
    });
    const s = tls.connect({ socket: sock, servername, rejectUnauthorized: false });
    s.on('error', () => undefined);
  });
}

function status(call: Call): Promise<grpc.StatusObject> {
  return new Promise((resolve) => call.on('status', resolve));
}

function next(call: Call): Promise<ProcessingResponse> {
  return new Promise((resolve, reject) => {
    call.once('data', resolve);
    call.once('error', reject);
  });
}

describe('protocol errors end only their own stream', () => {
  test('checkRequest names both and neither', () => {
    assert.match(checkRequest({ read_data: { data: Buffer.alloc(1) }, write_data: { data: Buffer.alloc(1) } })!, /both read_data and write_data/);
    assert.match(checkRequest({})!, /neither read_data nor write_data/);
    assert.equal(checkRequest({ read_data: {} }), null);
  });

  test('a request with both fields: INVALID_ARGUMENT; a request with neither: INVALID_ARGUMENT; a parallel stream is unaffected', async () => {
    const good = open();
    const both = open();
    const neither = open();
    const st1 = status(both);
    const st2 = status(neither);
    both.on('error', () => undefined);
    neither.on('error', () => undefined);
    both.write({ read_data: { data: Buffer.from('x') }, write_data: { data: Buffer.from('y') } });
    neither.write({});
    const [s1, s2] = await Promise.all([st1, st2]);
    assert.equal(s1.code, grpc.status.INVALID_ARGUMENT);
    assert.match(s1.details, /both read_data and write_data/);
    assert.equal(s2.code, grpc.status.INVALID_ARGUMENT);
    assert.match(s2.details, /neither read_data nor write_data/);

    const hello = await clientHello('pass.localhost');
    good.write({ read_data: { data: hello } });
    const res = await next(good);
    assert.deepEqual(res.read_data?.data, hello, 'passthrough: the ClientHello goes upstream unchanged');
    assert.equal(res.data_processing_status, 'MODIFIED');
    assert.equal(res.write_data, undefined);
    good.end();
    await status(good);
  });

  test('a malformed protobuf message: the stream ends with an error status naming it; the server keeps serving', async () => {
    const raw = client.makeBidiStreamRequest(
      '/envoy.service.network_ext_proc.v3.NetworkExternalProcessor/Process',
      (b: Buffer) => b,
      (b: Buffer) => b,
    );
    raw.on('error', () => undefined);
    const st = new Promise<grpc.StatusObject>((r) => raw.on('status', r));
    raw.write(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])); // field 1, length far beyond the message
    const s = await st;
    assert.notEqual(s.code, grpc.status.OK);
    assert.match(s.details, /deserializ|parse|invalid|index out of range/i, s.details);

    const good = open();
    const hello = await clientHello('pass.localhost');
    good.write({ read_data: { data: hello } });
    assert.deepEqual((await next(good)).read_data?.data, hello);
    good.end();
    await status(good);
  });
});

describe('connection attributes (Envoy 1.40) of the first request', () => {
  test('route the ClientHello even when it spans requests; a later request\'s attributes change nothing', async () => {
    const call = open();
    const hello = await clientHello('pass.localhost');
    const attrs = (v: Record<string, unknown>) => ({ [ATTRIBUTES_FILTER_NAME]: toStruct(v) });
    call.write({ read_data: { data: hello.subarray(0, 20) }, attributes: attrs({ 'destination.port': 8443, 'source.address': '10.0.0.9:5555' }) });
    const first = await next(call);
    assert.equal(first.read_data?.data?.length ?? 0, 0, 'half a ClientHello: nothing to forward yet');
    assert.equal(first.dynamic_metadata, undefined, 'no decision before the whole ClientHello');
    call.write({ read_data: { data: hello.subarray(20) }, attributes: attrs({ 'destination.port': 9999, 'source.address': '10.9.9.9:1' }) });
    const second = await next(call);
    assert.deepEqual(second.read_data?.data, hello);
    const id = fromStruct(second.dynamic_metadata).ca_proxy as { connection_id: string };
    await until(() => p.decisions.some((d) => d.connectionId === id.connection_id), 'the decision of this stream');
    const d = p.decisions.find((x) => x.connectionId === id.connection_id)!;
    assert.equal(d.destination.port, 8443);
    assert.deepEqual({ address: d.source.address, port: d.source.port }, { address: '10.0.0.9', port: 5555 });
    call.end();
    await status(call);
  });
});

describe('1,000 concurrent streams', () => {
  test('each is answered in lockstep with its decision in the metadata; streams and memory return to baseline', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const N = 1000;
    const hello = await clientHello('pass.localhost');
    const serverBytes = Buffer.from('server says hello');

    const round = async () => {
      const calls = Array.from({ length: N }, () => open());
      await Promise.all(
        calls.map(async (c) => {
          c.write({ read_data: { data: hello } });
          const r1 = await next(c);
          assert.deepEqual(r1.read_data?.data, hello);
          assert.equal(fromStruct(r1.dynamic_metadata).ca_proxy && (fromStruct(r1.dynamic_metadata).ca_proxy as Record<string, unknown>).reason, 'passthrough');
          c.write({ write_data: { data: serverBytes } });
          const r2 = await next(c);
          assert.deepEqual(r2.write_data?.data, serverBytes);
          assert.equal(r2.read_data, undefined);
          c.write({ read_data: { data: Buffer.alloc(0), end_of_stream: true } });
          assert.equal((await next(c)).read_data?.end_of_stream, true);
          c.write({ write_data: { data: Buffer.alloc(0), end_of_stream: true } });
          assert.equal((await next(c)).write_data?.end_of_stream, true);
          c.end();
          const s = await status(c);
          assert.equal(s.code, grpc.status.OK, s.details);
        }),
      );
      for (let i = 0; i < 100 && p.grpc.streams() > 0; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(p.grpc.streams(), 0, 'every stream was released');
    };

    await round(); // warm-up: code paths, caches and pools reach their steady size
    gc();
    const baseline = process.memoryUsage().heapUsed;
    await round();
    await new Promise((r) => setTimeout(r, 50));
    gc();
    gc();
    const after = process.memoryUsage().heapUsed;
    const grownMb = (after - baseline) / 1048576;
    assert.ok(grownMb < 8, `heap grew by ${grownMb.toFixed(1)} MB over ${N} closed streams (baseline ${(baseline / 1048576).toFixed(1)} MB)`);
    const active = (await p.rt.metrics.registry.getSingleMetricAsString('ca_proxy_active_connections')).split('\n').find((l) => l.startsWith('ca_proxy_active_connections'));
    assert.match(active ?? '', / 0$/, 'no session is left open');
  });
});
