/**
 * The standalone front doors (DESIGN.md `internal/proxy`): an HTTP CONNECT listener, so
 * `HTTPS_PROXY=http://HOST:PORT` and `curl --proxy` work, and an SNI-routed TLS listener
 * that takes the destination from the ClientHello's server_name (RFC 6066 §3) and a fixed
 * upstream port. Both hand each connection to a Session through `serveConnection`.
 */
import http from 'node:http';
import net from 'node:net';
import type { EngineContext } from '../engine/context';
import { registerOwnPort, serveConnection } from './pipe';

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
  /** Most open connections (`net.Server.maxConnections`); more are closed at accept. */
  maxConnections: number;
  /** A CONNECT request must arrive whole within this, milliseconds (slowloris). */
  requestTimeoutMs: number;
}

export async function listenConnect(ctx: EngineContext, bind: string, opts: ListenOptions): Promise<Listening> {
  const open = new Set<net.Socket>();
  // Node checks these timeouts every connectionsCheckingInterval (30 s by default): check often
  // enough that a silent client is closed near requestTimeoutMs, not half a minute later.
  const server = http.createServer({ requestTimeout: opts.requestTimeoutMs, headersTimeout: opts.requestTimeoutMs, connectionsCheckingInterval: Math.min(1000, opts.requestTimeoutMs) }, (req, res) => {
    res.writeHead(405, { 'content-type': 'text/plain', allow: 'CONNECT' });
    res.end('ca-proxy is an HTTPS proxy: send CONNECT host:port (set HTTPS_PROXY to this address).\n');
  });
  server.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    let target;
    try {
      target = parseHostPort(req.url ?? '', 'CONNECT target');
      if (target.port === 0) throw new Error('CONNECT target: port 0 is not a destination');
    } catch (err) {
      socket.end(`HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n${(err as Error).message}\n`);
      return;
    }
    socket.on('error', () => undefined);
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    open.add(socket);
    serveConnection(ctx, socket, target, { connectTimeoutMs: opts.connectTimeoutMs, head, onClose: () => open.delete(socket) });
    socket.once('close', () => open.delete(socket));
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
    if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\n\r\n`);
    else socket.destroy();
  });
  return listen(server, bind, open, opts.maxConnections);
}

export async function listenSni(ctx: EngineContext, bind: string, opts: ListenOptions & { upstreamPort: number }): Promise<Listening> {
  const open = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    open.add(socket);
    socket.on('error', () => undefined);
    serveConnection(ctx, socket, { port: opts.upstreamPort }, { connectTimeoutMs: opts.connectTimeoutMs, onClose: () => open.delete(socket) });
    socket.once('close', () => open.delete(socket));
  });
  return listen(server, bind, open, opts.maxConnections);
}

function listen(server: net.Server, bind: string, open: Set<net.Socket>, maxConnections: number): Promise<Listening> {
  const { host, port } = parseHostPort(bind, 'listen address');
  server.maxConnections = maxConnections;
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`cannot listen on ${bind}: ${err.message}`)));
    server.listen(port, host, () => {
      server.removeAllListeners('error');
      const unregister = registerOwnPort((server.address() as net.AddressInfo).port);
      server.once('close', unregister);
      resolve({
        address: server.address() as net.AddressInfo,
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
