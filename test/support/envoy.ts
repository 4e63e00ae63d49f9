/**
 * A STAND-IN for Envoy's network external processing filter (`envoy.filters.network.ext_proc`),
 * not Envoy: Envoy cannot run on the project's machines (DESIGN.md). It reproduces the behaviours
 * of the filter in Envoy's repository, `source/extensions/filters/network/ext_proc/ext_proc.cc`,
 * that ca-proxy depends on, so the tests exercise ca-proxy's gRPC service as Envoy would:
 *
 * - Accepts a TCP connection, opens one `NetworkExternalProcessor/Process` stream for it, and
 *   connects upstream, as tcp_proxy does: to a configured address, or (`upstream:
 *   'original-dst'`, the sidecar) to the connection's original destination, read with
 *   SO_ORIGINAL_DST as `envoy.filters.listener.original_dst` does for an ORIGINAL_DST cluster.
 * - `onData` / `onWrite`: every chunk read from the downstream (workload) socket is sent as
 *   `read_data`, every chunk from the upstream (server) socket as `write_data`, with
 *   `end_of_stream` on a half-close; the bytes are drained — nothing is forwarded unless a
 *   response carries it (`data_processing_status: MODIFIED` → the response's bytes;
 *   `UNMODIFIED` → the request's own bytes).
 * - Counts outstanding requests per direction, as the filter does to decide when connection close
 *   may proceed. A response that answers no outstanding request of its direction (unsolicited or
 *   cross-direction), or that sets both or neither of `read_data`/`write_data`, is a protocol
 *   violation: it is recorded and `assertClean()` fails the test (in Envoy it would drive the
 *   counter negative and leak the connection).
 * - `connection_status` is applied *before* the response's data: `CLOSE` closes both sides with
 *   FIN, `CLOSE_RST` with RST, and the response's data is dropped; `CONTINUE` forwards it.
 * - `message_timeout` (default 200 ms) per request; a timeout or a stream that ends with an error
 *   status is a failure: with `failure_mode_allow: false` the connection is closed, with `true`
 *   later traffic passes unprocessed (bytes already drained into the stream are lost, as in
 *   Envoy).
 * - A stream the processor ends with status OK while the connection is open makes Envoy stop
 *   processing: the rest of the connection passes unchecked, whatever `failure_mode_allow` says
 *   (DESIGN.md). The stand-in does the same, records it (`okEndWhileOpen`) and `assertClean()`
 *   fails the test: a security filter must never do that.
 * - `connectionAttributes` (Envoy 1.40): the stream's first request carries
 *   `attributes: {"envoy.filters.network.ext_proc": {source.address, destination.address,
 *   destination.port, connection.requested_server_name}}`.
 * - `dynamic_metadata` is merged into the connection's metadata (what the access log would print).
 * - Optionally (`honourCloseStream`, Envoy ≥ 1.39) `close_stream_to_ext_proc_server` ends the
 *   stream and later bytes bypass the processor.
 * - gRPC flow control: when the stream does not accept a request (write returns false), the
 *   source socket is paused until it drains, so a slow processor slows the peers.
 */
import net from 'node:net';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { loadProtos, fromStruct, toStruct, type ProcessingRequest, type ProcessingResponse, type StructValue } from '../../internal/extproc/protos';
import { ATTRIBUTES_FILTER_NAME } from '../../internal/extproc/connection-info';
import { originalDst } from './original-dst';
import { parseClientHello } from '../../internal/tls/handshake';
import { createRuntime, type Runtime } from '../../cmd/ca-proxy/runtime';
import { createLogger } from '../../internal/metrics/report';
import type { Config } from '../../internal/config/types';
import type { Decision } from '../../internal/engine/decision';
import { startExtProcServer, type ExtProcServer, type ExtProcServerOptions } from '../../internal/extproc/server';

export interface StandInOptions {
  /** The processor: `unix:/path` or `host:port`. */
  target: string;
  /**
   * Where upstream connections go: a fixed address (standing in for the original destination),
   * or `'original-dst'`: each connection's SO_ORIGINAL_DST (test/support/original-dst.ts, needs
   * python3), as Envoy's ORIGINAL_DST cluster behind `use_original_dst` — for a listener that
   * nat REDIRECT rules feed. A connection without one (not NATed: no conntrack entry, or one
   * naming the listener itself) is closed with a `failure`, rather than dialling the listener.
   */
  upstream: { host: string; port: number } | 'original-dst';
  /** The listener's address (default 127.0.0.1, port 0: any free port). */
  listen?: { host: string; port: number };
  failureModeAllow?: boolean;
  messageTimeoutMs?: number;
  credentials?: grpc.ChannelCredentials;
  /** `grpc_service.initial_metadata`: request headers on every stream. */
  initialMetadata?: Record<string, string>;
  honourCloseStream?: boolean;
  /**
   * Envoy 1.40 `connection_attributes` in the first request. `true`: `source.address` (the
   * workload's socket), `destination.address`/`destination.port` (the upstream: the original
   * destination, or the fixed address standing in for it), `connection.requested_server_name`
   * (the SNI of the first read chunk, as tls_inspector reads it). An object: those values with its members merged over them
   * (any JSON, malformed values included; a null member removes the attribute). Absent: none
   * (Envoy before 1.40).
   */
  connectionAttributes?: boolean | Record<string, unknown>;
  /** Called per accepted connection, before anything is read from it (its `done` says when it ends). */
  onConnection?: (c: StandInConnection) => void;
  /** Called per answered request: its direction, request→response time (ms) and request size (benchmarks). */
  onAnswer?: (dir: 'read' | 'write', ms: number, bytes: number) => void;
}

type Dir = 'read' | 'write';
const FIELD = { read: 'read_data', write: 'write_data' } as const;

export interface StandInConnection {
  id: number;
  /** Dynamic metadata written by the processor, by namespace. */
  metadata: Record<string, Record<string, unknown>>;
  requests: Record<Dir, number>;
  responses: Record<Dir, number>;
  violations: string[];
  /** How the connection ended: by a processor response, a failure, or the peers. */
  closedBy: 'CLOSE' | 'CLOSE_RST' | 'failure' | 'peers' | null;
  /** Failure reason (message_timeout, stream error) if any. */
  failure: string | null;
  /** Traffic passes unprocessed (failure_mode_allow after a failure, close_stream, or an OK end). */
  bypass: boolean;
  /** The processor sent `close_stream_to_ext_proc_server` (honoured or not). */
  closeStreamRequested: boolean;
  /** The processor ended the stream with status OK while the connection was open: Envoy passes the rest unchecked. */
  okEndWhileOpen: boolean;
  /** Where the upstream connection went (for `'original-dst'`, what the workload dialled); null when none could be read. */
  destination: { address: string; port: number } | null;
  /** Resolves when both sockets are closed. */
  done: Promise<void>;
}

export class EnvoyStandIn {
  readonly connections: StandInConnection[] = [];
  private readonly server: net.Server;
  private readonly client: grpc.Client;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  private constructor(private readonly opts: StandInOptions) {
    const { extProc } = loadProtos();
    // Each stand-in is one Envoy with a connection of its own (grpc-js would share one across clients).
    this.client = new extProc(opts.target, opts.credentials ?? grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => this.accept(s));
  }

  static async start(opts: StandInOptions): Promise<EnvoyStandIn> {
    const e = new EnvoyStandIn(opts);
    await new Promise<void>((resolve, reject) => {
      e.server.once('error', reject);
      e.server.listen(opts.listen?.port ?? 0, opts.listen?.host ?? '127.0.0.1', resolve);
    });
    e.port = (e.server.address() as net.AddressInfo).port;
    return e;
  }

  /** Every protocol violation seen on any connection. */
  violations(): string[] {
    return this.connections.flatMap((c) => c.violations.map((v) => `connection ${c.id}: ${v}`));
  }

  /** Connections whose stream the processor ended OK while they were open (their rest went unchecked). */
  okEnds(): number[] {
    return this.connections.filter((c) => c.okEndWhileOpen).map((c) => c.id);
  }

  /** Throws (fails the test) if any response broke Envoy's lockstep rules, or any stream ended OK while its connection was open. */
  assertClean(): void {
    const v = this.violations();
    for (const id of this.okEnds()) v.push(`connection ${id}: the processor ended the ext_proc stream with status OK while the connection was open; Envoy passes the rest of it unchecked`);
    if (v.length) throw new Error(`ext_proc protocol violations:\n  ${v.join('\n  ')}`);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
    this.client.close();
  }

  private accept(down: net.Socket): void {
    const o = this.opts;
    this.sockets.add(down);
    down.on('error', () => undefined);
    let resolveDone!: () => void;
    const conn: StandInConnection = {
      id: this.connections.length + 1,
      metadata: {},
      requests: { read: 0, write: 0 },
      responses: { read: 0, write: 0 },
      violations: [],
      closedBy: null,
      failure: null,
      bypass: false,
      closeStreamRequested: false,
      okEndWhileOpen: false,
      destination: null,
      done: new Promise<void>((r) => (resolveDone = r)),
    };
    this.connections.push(conn);
    o.onConnection?.(conn);
    if (o.upstream !== 'original-dst') return this.proxy(down, conn, o.upstream, resolveDone);
    const refuse = (why: string) => {
      conn.failure = `no original destination: ${why}`;
      conn.closedBy = 'failure';
      down.destroy();
      this.sockets.delete(down);
      resolveDone();
    };
    originalDst(down).then(
      (dst) => {
        // Where the namespace tracks every connection, one dialled straight at the listener has an entry naming the listener.
        if (dst.port === down.localPort && dst.address === down.localAddress) refuse(`the connection was not redirected (it was dialled to the listener, ${endpoint(dst.address, dst.port)})`);
        else this.proxy(down, conn, dst, resolveDone);
      },
      (err: Error) => refuse(err.message),
    );
  }

  /** tcp_proxy with the ext_proc filter in front, for one accepted connection whose upstream is `dst`. */
  private proxy(down: net.Socket, conn: StandInConnection, dst: { address: string; port: number } | { host: string; port: number }, resolveDone: () => void): void {
    const o = this.opts;
    const timeoutMs = o.messageTimeoutMs ?? 200;
    const host = 'address' in dst ? dst.address : dst.host;
    conn.destination = { address: host, port: dst.port };
    if (down.destroyed) {
      this.sockets.delete(down);
      conn.closedBy = 'peers';
      resolveDone();
      return;
    }
    const up = net.connect({ host, port: dst.port, allowHalfOpen: true });
    this.sockets.add(up);
    up.on('error', () => undefined);
    const source: Record<Dir, net.Socket> = { read: down, write: up };
    const sink: Record<Dir, net.Socket> = { read: up, write: down };
    const pending: Record<Dir, { data: Buffer; timer: NodeJS.Timeout; at: number }[]> = { read: [], write: [] };
    let closed = false;
    let streamOpen = true;

    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(o.initialMetadata ?? {})) md.set(k, v);
    const call = (this.client as unknown as { Process(md: grpc.Metadata): grpc.ClientDuplexStream<ProcessingRequest, ProcessingResponse> }).Process(md);

    const violation = (text: string) => conn.violations.push(text);

    const endStream = () => {
      if (!streamOpen) return;
      streamOpen = false;
      for (const d of ['read', 'write'] as const) for (const p of pending[d]) clearTimeout(p.timer);
      pending.read = [];
      pending.write = [];
      call.end();
      // Envoy resets the stream with the connection; give the processor a moment to see the half-close.
      setTimeout(() => call.cancel(), 1000).unref();
    };

    const closeConnection = (how: 'CLOSE' | 'CLOSE_RST' | 'failure') => {
      if (closed) return;
      closed = true;
      conn.closedBy = how;
      endStream();
      if (how === 'CLOSE_RST') {
        down.resetAndDestroy();
        up.resetAndDestroy();
      } else if (how === 'CLOSE') {
        down.end();
        up.end();
        setTimeout(() => {
          down.destroy();
          up.destroy();
        }, 500).unref();
      } else {
        down.destroy();
        up.destroy();
      }
    };

    /** Envoy's processing_complete: the stream is closed and the rest of the connection passes unprocessed. */
    const stopProcessing = () => {
      conn.bypass = true;
      endStream();
      down.resume();
      up.resume();
    };

    const fail = (reason: string) => {
      if (closed || conn.bypass) return;
      conn.failure = reason;
      if (o.failureModeAllow) stopProcessing();
      else closeConnection('failure');
    };

    let attributesSent = false;
    const firstAttributes = (dir: Dir, data: Buffer): Record<string, StructValue> | undefined => {
      if (attributesSent || !o.connectionAttributes) return undefined;
      attributesSent = true;
      const values: Record<string, unknown> = {
        'source.address': endpoint(down.remoteAddress, down.remotePort),
        'destination.address': endpoint(host, dst.port),
        'destination.port': dst.port,
        'connection.requested_server_name': dir === 'read' ? sniOf(data) : undefined,
      };
      if (typeof o.connectionAttributes === 'object') Object.assign(values, o.connectionAttributes);
      for (const k of Object.keys(values)) if (values[k] === null) delete values[k];
      return { [ATTRIBUTES_FILTER_NAME]: toStruct(values) };
    };

    const send = (dir: Dir, data: Buffer, eos: boolean) => {
      if (closed) return;
      if (conn.bypass) {
        if (data.length) sink[dir].write(data);
        if (eos) sink[dir].end();
        return;
      }
      conn.requests[dir]++;
      const timer = setTimeout(() => fail(`message_timeout: ${FIELD[dir]} request unanswered after ${timeoutMs} ms`), timeoutMs);
      pending[dir].push({ data, timer, at: performance.now() });
      const attributes = firstAttributes(dir, data);
      const ok = call.write({ [FIELD[dir]]: { data, end_of_stream: eos }, ...(attributes ? { attributes } : {}) });
      if (!ok) {
        source[dir].pause();
        call.once('drain', () => source[dir].resume());
      }
    };

    call.on('data', (res: ProcessingResponse) => {
      if (closed) return;
      const r = !!res.read_data;
      const w = !!res.write_data;
      if (r && w) return violation('response sets both read_data and write_data');
      if (!r && !w) return violation('response sets neither read_data nor write_data: it answers no request');
      const dir: Dir = r ? 'read' : 'write';
      const req = pending[dir].shift();
      if (!req) return violation(`unsolicited ${FIELD[dir]} response: no ${FIELD[dir]} request is outstanding (requests ${conn.requests[dir]}, responses ${conn.responses[dir] + 1})`);
      clearTimeout(req.timer);
      conn.responses[dir]++;
      o.onAnswer?.(dir, performance.now() - req.at, req.data.length);
      if (res.dynamic_metadata) {
        for (const [ns, v] of Object.entries(fromStruct(res.dynamic_metadata))) {
          conn.metadata[ns] = { ...(conn.metadata[ns] ?? {}), ...(v as Record<string, unknown>) };
        }
      }
      const status = res.connection_status ?? 'CONTINUE';
      if (status === 'CLOSE' || status === 'CLOSE_RST') return closeConnection(status);
      const body = res[FIELD[dir]]!;
      const bytes = res.data_processing_status === 'MODIFIED' ? (body.data ?? Buffer.alloc(0)) : req.data;
      if (bytes.length) sink[dir].write(bytes);
      if (body.end_of_stream) sink[dir].end();
      if (res.close_stream_to_ext_proc_server) {
        conn.closeStreamRequested = true;
        if (o.honourCloseStream) stopProcessing();
      }
    });
    call.on('error', (err: grpc.ServiceError) => {
      if (err.code === grpc.status.CANCELLED && !streamOpen) return;
      fail(`ext_proc stream failed: ${grpc.status[err.code]} ${err.details}`);
    });
    call.on('status', (st: grpc.StatusObject) => {
      // An error status is handled by 'error'. OK while Envoy still streams: processing stops.
      if (st.code !== grpc.status.OK || !streamOpen || closed) return;
      conn.okEndWhileOpen = true;
      stopProcessing();
    });

    for (const dir of ['read', 'write'] as const) {
      const s = source[dir];
      s.on('data', (chunk: Buffer) => send(dir, chunk, false));
      s.on('end', () => send(dir, Buffer.alloc(0), true));
    }
    let closedSockets = 0;
    for (const s of [down, up]) {
      s.on('close', () => {
        this.sockets.delete(s);
        if (++closedSockets === 2) {
          if (!conn.closedBy) conn.closedBy = conn.failure ? 'failure' : 'peers';
          closed = true;
          endStream();
          resolveDone();
        } else if (!closed && s === up && !conn.bypass && up.destroyed && !down.destroyed && (up as net.Socket & { _hadError?: boolean })._hadError) {
          // The upstream reset: Envoy's tcp_proxy closes the downstream.
          down.destroy();
        }
      });
    }
    up.once('error', () => down.destroy());
    down.once('error', () => up.destroy());
    down.resume();
  }
}

/** `ip:port`, `[ipv6]:port`, as Envoy's CEL attributes write addresses. */
function endpoint(address: string | undefined, port: number | undefined): string | undefined {
  if (!address || !port) return undefined;
  return net.isIPv6(address) ? `[${address}]:${port}` : `${address}:${port}`;
}

/** The SNI of a ClientHello that starts `chunk` in one record (what tls_inspector reports), or undefined. */
function sniOf(chunk: Buffer): string | undefined {
  if (chunk.length < 9 || chunk[0] !== 22 || chunk[5] !== 1) return undefined;
  const len = chunk.readUIntBE(6, 3);
  if (chunk.length < 9 + len) return undefined;
  try {
    return parseClientHello(chunk.subarray(9, 9 + len)).sni ?? undefined;
  } catch {
    return undefined;
  }
}

/** ca-proxy's ext_proc service in-process, through the same composition root as `serve-extproc`. */
export interface Processor {
  rt: Runtime;
  grpc: ExtProcServer;
  decisions: Decision[];
  nextDecision(ms?: number): Promise<Decision>;
  stop(): Promise<void>;
}

export async function startProcessor(config: Config, opts: Partial<ExtProcServerOptions> = {}): Promise<Processor> {
  const sink = new Writable({ write: (_c, _e, cb) => cb() });
  const rt = await createRuntime(config, { listen: false, logger: createLogger('info', sink) });
  const grpcServer = await startExtProcServer(rt.ctx, { listen: '127.0.0.1:0', ...opts });
  const decisions: Decision[] = [];
  let seen = 0;
  let waiters: (() => void)[] = [];
  rt.onDecision((d) => {
    decisions.push(d);
    const ws = waiters;
    waiters = [];
    ws.forEach((f) => f());
  });
  return {
    rt,
    grpc: grpcServer,
    decisions,
    nextDecision: (ms = 8000) =>
      new Promise<Decision>((resolve, reject) => {
        const tryTake = () => {
          if (decisions.length > seen) {
            clearTimeout(t);
            resolve(decisions[seen++]!);
            return true;
          }
          return false;
        };
        const t = setTimeout(() => reject(new Error(`no decision within ${ms} ms`)), ms);
        if (!tryTake()) waiters.push(() => void tryTake());
      }),
    stop: async () => {
      await grpcServer.close(500);
      await rt.close();
    },
  };
}

