/**
 * The standalone front doors (DESIGN.md `internal/proxy`): an HTTP CONNECT listener, so
 * `HTTPS_PROXY=http://HOST:PORT` and `curl --proxy` work, and an SNI-routed TLS listener
 * that takes the destination from the ClientHello's server_name (RFC 6066 §3) and a fixed
 * upstream port. Both hand each connection to a Session through `serveConnection`.
 *
 * Every accepted socket ends in exactly one decision. The listeners themselves refuse, with
 * action `none`: a connection over `limits.maxConnections` (`connection_limit`, like HAProxy's
 * `maxconn`, but visible) or over `limits.maxConnectionsPerSource` from one address
 * (`source_connection_limit`), so one client cannot hold the cap; a request that is not a valid
 * CONNECT (`bad_request`, 400/405); a CONNECT request not complete within
 * `limits.requestTimeoutMs` (`request_timeout`, 408); a client that leaves before asking
 * (`peer_closed`).
 */
import http from 'node:http';
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import type { EngineContext } from '../engine/context';
import { Reason, type ReasonCode } from '../engine/reasons';
import { reportRefusal } from '../engine/refusal';
import { serveConnection, SOCKET_HIGH_WATER } from './pipe';

export interface Listening {
  /** Bound address, e.g. to learn an ephemeral port. */
  address: net.AddressInfo;
  /** Stops accepting and destroys open connections after `graceMs`. */
  close(graceMs?: number): Promise<void>;
  /** Open connections right now. */
  connections(): number;
}

/** Splits `host:port` / `[v6]:port`; throws with a message naming `what` on bad input. */
export function parseHostPort(value: string, what: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(value.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`${what}: expected HOST:PORT, got "${value}"`);
  return { host: (m[1] ?? m[2])!, port };
}

export interface ListenOptions {
  connectTimeoutMs: number;
  /** Most open connections on this listener; more are refused with a decision. */
  maxConnections: number;
  /** Most open connections from one source address. */
  maxConnectionsPerSource: number;
  /** A CONNECT request must arrive whole within this, milliseconds (slowloris). */
  requestTimeoutMs: number;
  /** Told the bound port (so the process knows its own listeners: forwarding loops). */
  onListening?: (address: net.AddressInfo) => () => void;
}

/** Admission of accepted sockets: the global and per-source caps, and the one-decision bookkeeping. */
class Admission {
  readonly open = new Set<net.Socket>();
  private readonly perSource = new Map<string, number>();

  constructor(
    private readonly ctx: EngineContext,
    private readonly opts: ListenOptions,
  ) {}

  /** Admits `socket` or refuses it (decision reported, socket closed by `refuse`). */
  admit(socket: net.Socket, refuse: (reason: ReasonCode, detail: string) => void): boolean {
    const source = socket.remoteAddress ?? 'unknown';
    if (this.open.size >= this.opts.maxConnections) {
      refuse(Reason.connectionLimit, `${this.open.size} connections open on this listener (limits.maxConnections ${this.opts.maxConnections})`);
      return false;
    }
    const n = this.perSource.get(source) ?? 0;
    if (n >= this.opts.maxConnectionsPerSource) {
      refuse(Reason.sourceConnectionLimit, `${n} connections open from ${source} (limits.maxConnectionsPerSource ${this.opts.maxConnectionsPerSource})`);
      return false;
    }
    this.open.add(socket);
    this.perSource.set(source, n + 1);
    socket.once('close', () => {
      this.open.delete(socket);
      const left = (this.perSource.get(source) ?? 1) - 1;
      if (left > 0) this.perSource.set(source, left);
      else this.perSource.delete(source);
    });
    return true;
  }

  /** Reports a refusal of `socket` (once per socket). */
  report(socket: net.Socket, reason: ReasonCode, detail: string, startedAt: number, destination?: { host?: string; port?: number }): void {
    reportRefusal(this.ctx, {
      connectionId: randomUUID(),
      source: { address: socket.remoteAddress, port: socket.remotePort },
      ...(destination ? { destination } : {}),
      reason,
      detail,
      startedAt,
    });
  }
}

const STATUS: Partial<Record<ReasonCode, string>> = {
  [Reason.badRequest]: '400 Bad Request',
  [Reason.requestTimeout]: '408 Request Timeout',
  [Reason.connectionLimit]: '503 Service Unavailable',
  [Reason.sourceConnectionLimit]: '429 Too Many Requests',
};

export async function listenConnect(ctx: EngineContext, bind: string, opts: ListenOptions): Promise<Listening> {
  const admission = new Admission(ctx, opts);
  /** Sockets whose one decision is still owed by this listener (no Session took them yet), with their accept time. */
  const owed = new Map<net.Socket, number>();
  /** Takes over the decision of `socket`; false when it was already made. */
  const settle = (socket: net.Socket): number | undefined => {
    const at = owed.get(socket);
    owed.delete(socket);
    return at;
  };
  const refuse = (socket: net.Socket, reason: ReasonCode, detail: string): void => {
    const startedAt = settle(socket);
    if (startedAt === undefined) {
      socket.destroy(); // its decision was made already
      return;
    }
    admission.report(socket, reason, detail, startedAt);
    const status = STATUS[reason] ?? '400 Bad Request';
    if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n${detail}\n`);
    else socket.destroy();
  };

  // Node checks these timeouts every connectionsCheckingInterval (30 s by default): check often
  // enough that a silent client is closed near requestTimeoutMs, not half a minute later.
  const server = http.createServer(
    {
      requestTimeout: opts.requestTimeoutMs,
      headersTimeout: opts.requestTimeoutMs,
      connectionsCheckingInterval: Math.min(1000, opts.requestTimeoutMs),
      highWaterMark: SOCKET_HIGH_WATER,
    },
    (req, res) => {
      const socket = req.socket;
      const startedAt = settle(socket);
      if (startedAt === undefined) return void res.destroy();
      admission.report(socket, Reason.badRequest, `${req.method} is not CONNECT`, startedAt);
      res.writeHead(405, { 'content-type': 'text/plain', allow: 'CONNECT', connection: 'close' });
      res.end('ca-proxy is an HTTPS proxy: send CONNECT host:port (set HTTPS_PROXY to this address).\n');
    },
  );
  server.on('connection', (socket: net.Socket) => {
    const startedAt = performance.now();
    owed.set(socket, startedAt);
    socket.on('error', () => undefined);
    socket.once('close', () => {
      // Left before asking for anything: still one decision.
      if (settle(socket) !== undefined) admission.report(socket, Reason.peerClosed, 'closed before sending a CONNECT request', startedAt);
    });
    if (!admission.admit(socket, (reason, detail) => refuse(socket, reason, detail))) return;
  });
  server.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    let target;
    try {
      target = parseHostPort(req.url ?? '', 'CONNECT target');
      if (target.port === 0) throw new Error('CONNECT target: port 0 is not a destination');
    } catch (err) {
      refuse(socket, Reason.badRequest, (err as Error).message);
      return;
    }
    if (settle(socket) === undefined) return void socket.destroy();
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    // From here the Session owns the connection's decision.
    serveConnection(ctx, socket, target, { connectTimeoutMs: opts.connectTimeoutMs, head });
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
    const timeout = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
    if (timeout) refuse(socket, Reason.requestTimeout, `no complete CONNECT request within ${opts.requestTimeoutMs} ms`);
    // HPE_INVALID_EOF_STATE: the client's FIN came in the middle of its request (it left; nothing is malformed).
    else if (err.code === 'ECONNRESET' || err.code === 'HPE_INVALID_EOF_STATE' || !socket.writable) {
      const startedAt = settle(socket);
      if (startedAt !== undefined) admission.report(socket, Reason.peerClosed, `closed before sending a complete CONNECT request (${err.code ?? err.message})`, startedAt);
      socket.destroy();
    } else refuse(socket, Reason.badRequest, `malformed HTTP request: ${err.code ?? err.message}`);
  });
  return listen(server, bind, admission.open, opts);
}

export async function listenSni(ctx: EngineContext, bind: string, opts: ListenOptions & { upstreamPort: number }): Promise<Listening> {
  const admission = new Admission(ctx, opts);
  const server = net.createServer({ allowHalfOpen: true, highWaterMark: SOCKET_HIGH_WATER }, (socket) => {
    const startedAt = performance.now();
    socket.on('error', () => undefined);
    const admitted = admission.admit(socket, (reason, detail) => {
      admission.report(socket, reason, detail, startedAt, { port: opts.upstreamPort });
      socket.destroy();
    });
    if (!admitted) return;
    serveConnection(ctx, socket, { port: opts.upstreamPort }, { connectTimeoutMs: opts.connectTimeoutMs });
  });
  return listen(server, bind, admission.open, opts);
}

function listen(server: net.Server, bind: string, open: Set<net.Socket>, opts: ListenOptions): Promise<Listening> {
  const { host, port } = parseHostPort(bind, 'listen address');
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`cannot listen on ${bind}: ${err.message}`)));
    server.listen(port, host, () => {
      server.removeAllListeners('error');
      const address = server.address() as net.AddressInfo;
      const unregister = opts.onListening?.(address);
      if (unregister) server.once('close', unregister);
      resolve({
        address,
        connections: () => open.size,
        close: (graceMs = 5000) =>
          new Promise<void>((done) => {
            server.close(() => done());
            const t = setTimeout(() => {
              for (const s of open) s.destroy();
            }, graceMs);
            t.unref();
            if (open.size === 0) clearTimeout(t);
          }),
      });
    });
  });
}
