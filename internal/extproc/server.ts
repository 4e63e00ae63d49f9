/**
 * The gRPC server of `ca-proxy serve-extproc`: Envoy's `NetworkExternalProcessor` (one
 * ProcessStream, hence one Session, per `Process` stream) and `grpc.health.v1.Health`.
 *
 * Placement (DESIGN.md): plaintext on a Unix socket or loopback for the sidecar; TLS with
 * client-certificate verification for a central processor. Shutdown stops accepting new streams,
 * lets open streams finish until a deadline, then ends what is left with UNAVAILABLE — an error
 * status, never OK nor a bare reset: a stream that ends OK makes Envoy pass the rest of its
 * connection unchecked, while an error makes a fail-closed filter close it (DESIGN.md).
 */
import fs from 'node:fs';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { EngineContext } from '../engine/context';
import { loadProtos, EXTPROC_SERVICE } from './protos';
import { ProcessStream, DEFAULT_STREAM_OPTIONS, type ProcessCall, type StreamOptions } from './stream';

export interface ExtProcTls {
  /** PEM certificate chain of the server. */
  cert: string;
  /** PEM private key. */
  key: string;
  /** PEM bundle of CAs that sign Envoy's client certificates; clients without one are refused. */
  clientCA: string;
}

export interface ExtProcServerOptions extends Partial<StreamOptions> {
  /** `unix:/path/to.sock` or `host:port` (port 0: any free port). */
  listen: string;
  /** TLS with client-certificate verification; null or absent: plaintext. */
  tls?: ExtProcTls | null;
  /** Readiness for the health service (e.g. a usable CRL set is loaded). */
  ready?: () => boolean;
  /**
   * The listener is shared with sibling worker processes (node:cluster): the primary has claimed
   * a Unix socket path already (`claimUnixSocket`), so its being in use is expected.
   */
  sharedListener?: boolean;
}

export interface ExtProcServer {
  /** What the server is bound to: `unix:/path` or `host:port` with the real port. */
  address: string;
  /** The TCP port, or null for a Unix socket. */
  port: number | null;
  /** Open Process streams right now. */
  streams(): number;
  /**
   * Stops accepting streams (health turns NOT_SERVING), waits up to `deadlineMs` for open streams
   * to finish, then ends the rest with status UNAVAILABLE and closes the server once their
   * status has gone out (at most `FORCE_AFTER_ABORT_MS` later).
   */
  close(deadlineMs?: number): Promise<void>;
}

/** After the shutdown deadline's UNAVAILABLE statuses, how long they may take to reach Envoy before the connections are dropped, ms. */
const FORCE_AFTER_ABORT_MS = 1000;

type HealthStatus = 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

export async function startExtProcServer(ctx: EngineContext, opts: ExtProcServerOptions): Promise<ExtProcServer> {
  const protos = loadProtos();
  const streamOpts: StreamOptions = { ...DEFAULT_STREAM_OPTIONS, ...definedOnly(opts) };
  const server = new grpc.Server({
    // Envoy keeps one HTTP/2 connection with many streams; the default concurrent-stream limit
    // (unbounded in grpc-js) stays, and keepalive notices a vanished sidecar.
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
  });
  const open = new Set<ProcessStream>();
  let shuttingDown = false;

  server.addService(protos.extProc.service, {
    Process: (call: ProcessCall) => {
      if (shuttingDown) {
        call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'ca-proxy is shutting down' });
        return;
      }
      let s: ProcessStream | null = null;
      s = new ProcessStream(ctx, call, streamOpts, () => {
        if (s) open.delete(s);
      });
      open.add(s);
    },
  });

  const status = (service: string): HealthStatus | null => {
    if (service !== '' && service !== EXTPROC_SERVICE) return null;
    return !shuttingDown && (opts.ready?.() ?? true) ? 'SERVING' : 'NOT_SERVING';
  };
  const watchers = new Set<{ service: string; last: HealthStatus | null; call: grpc.ServerWritableStream<{ service?: string }, { status: string }> }>();
  const pushHealth = () => {
    for (const w of watchers) {
      const now = status(w.service) ?? 'SERVICE_UNKNOWN';
      if (now !== w.last) {
        w.last = now;
        w.call.write({ status: now });
      }
    }
  };
  const healthTimer = setInterval(pushHealth, 1000);
  healthTimer.unref();
  server.addService(protos.health.service, {
    Check: (call: grpc.ServerUnaryCall<{ service?: string }, { status: string }>, cb: grpc.sendUnaryData<{ status: string }>) => {
      const s = status(call.request.service ?? '');
      if (s === null) cb({ code: grpc.status.NOT_FOUND, details: `unknown service "${call.request.service}"` });
      else cb(null, { status: s });
    },
    Watch: (call: grpc.ServerWritableStream<{ service?: string }, { status: string }>) => {
      const w = { service: call.request.service ?? '', last: null as HealthStatus | null, call };
      watchers.add(w);
      call.on('cancelled', () => watchers.delete(w));
      call.on('close', () => watchers.delete(w));
      pushHealth();
    },
  });

  const credentials = opts.tls
    ? grpc.ServerCredentials.createSsl(
        fs.readFileSync(opts.tls.clientCA),
        [{ cert_chain: fs.readFileSync(opts.tls.cert), private_key: fs.readFileSync(opts.tls.key) }],
        true,
      )
    : grpc.ServerCredentials.createInsecure();

  const socketPath = unixSocketPath(opts.listen);
  if (!opts.sharedListener) await claimUnixSocket(opts.listen);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(opts.listen, credentials, (err, p) => (err ? reject(new Error(`extproc listen ${opts.listen}: ${err.message}`)) : resolve(p))),
  );
  // Envoy usually runs as another user: the folder (a pod-private emptyDir) guards the socket.
  if (socketPath) fs.chmodSync(socketPath, 0o666);
  const isUnix = opts.listen.startsWith('unix:');
  const address = isUnix ? opts.listen : opts.listen.replace(/:\d+$/, `:${port}`);

  return {
    address,
    port: isUnix ? null : port,
    streams: () => open.size,
    close: (deadlineMs = 10_000) =>
      new Promise<void>((resolve) => {
        shuttingDown = true;
        pushHealth();
        clearInterval(healthTimer);
        let force: NodeJS.Timeout | undefined;
        let finished = false;
        const finish = () => {
          if (finished) return;
          finished = true;
          clearTimeout(deadline);
          clearTimeout(force);
          resolve();
        };
        const deadline = setTimeout(() => {
          for (const s of [...open]) s.abort(grpc.status.UNAVAILABLE, `ca-proxy is shutting down: stream still open at the ${deadlineMs} ms shutdown deadline`);
          // The statuses normally let tryShutdown finish; a peer that stopped reading cannot hold it.
          force = setTimeout(() => {
            server.forceShutdown();
            finish();
          }, FORCE_AFTER_ABORT_MS);
          force.unref();
        }, deadlineMs);
        deadline.unref();
        for (const w of watchers) w.call.end();
        watchers.clear();
        server.tryShutdown(finish);
      }),
  };
}

function definedOnly(o: Partial<StreamOptions>): Partial<StreamOptions> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(DEFAULT_STREAM_OPTIONS)) {
    const v = (o as Record<string, unknown>)[k];
    if (v !== undefined) out[k] = v;
  }
  if (o.onStreamError) out.onStreamError = o.onStreamError;
  return out as Partial<StreamOptions>;
}

function unixSocketPath(listen: string): string | null {
  return listen.startsWith('unix:') ? listen.slice('unix:'.length).replace(/^\/\/(?=\/)/, '') : null;
}

/**
 * Makes a `unix:` listen address bindable: a socket file left by a killed process would make the
 * bind fail, so it is removed; one a live process answers on must not be taken over (that
 * process would be cut off from Envoy). A `host:port` address is left alone.
 * @throws Error `extproc listen ADDRESS: in use by another process`
 */
export async function claimUnixSocket(listen: string): Promise<void> {
  const socketPath = unixSocketPath(listen);
  if (!socketPath || !fs.existsSync(socketPath) || !fs.statSync(socketPath).isSocket()) return;
  if (await socketAnswers(socketPath)) throw new Error(`extproc listen ${listen}: in use by another process`);
  fs.unlinkSync(socketPath);
}

/** Whether something accepts connections on the Unix socket at `p`. */
function socketAnswers(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(p);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}
