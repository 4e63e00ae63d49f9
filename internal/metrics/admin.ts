/**
 * The admin HTTP server (node:http): `GET /metrics` (Prometheus text exposition format),
 * `GET /healthz` (the process is alive) and `GET /readyz` (ready to take connections —
 * a usable CRL set is loaded, or the policy is softFail; the caller decides).
 *
 * HEAD is answered like GET without a body (RFC 9110 §9.3.2); other methods get 405, unknown
 * paths 404. A failing readiness callback or metrics collection becomes a 503/500 answer,
 * never an exception out of the server.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { registerReadiness } from './registry';

export interface Readiness {
  ready: boolean;
  /** Why (not) ready, one line for humans; the body of /readyz. */
  detail: string;
}

export interface AdminServerOptions {
  /** Address to bind, e.g. `127.0.0.1` or `::1`. */
  host: string;
  /** TCP port; 0 picks a free one (see `address.port`). */
  port: number;
  registry: Registry;
  ready: () => Readiness;
}

export interface AdminServer {
  /** The bound address (with the actual port when 0 was asked for). */
  address: AddressInfo;
  /** Stops listening and closes open connections; resolves when the server is closed. */
  close(): Promise<void>;
}

/** A scrape never needs long; idle or slow clients must not pin sockets. */
const REQUEST_TIMEOUT_MS = 10_000;

/**
 * Starts the admin server.
 * @throws (rejects) the listen error, e.g. EADDRINUSE or EACCES
 */
export function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  // /readyz as a metric too (`ca_proxy_ready`), so alerts see what the kubelet sees.
  registerReadiness(options.registry, options.ready);
  const server = http.createServer((req, res) => {
    handle(req, res, options).catch((err: unknown) => {
      // Only reachable if writing the answer itself failed; the socket is unusable then.
      res.destroy(err instanceof Error ? err : undefined);
    });
  });
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.headersTimeout = REQUEST_TIMEOUT_MS;
  server.on('clientError', (_err, socket) => {
    // Malformed HTTP: answer 400 if the socket still takes writes, then drop it.
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else socket.destroy();
  });

  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(options.port, options.host, () => {
      server.off('error', onError);
      // After start, a server error (rare: e.g. EMFILE on accept) must not crash the process.
      server.on('error', () => undefined);
      resolve({
        address: server.address() as AddressInfo,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}

async function handle(req: http.IncomingMessage, res: http.ServerResponse, options: AdminServerOptions): Promise<void> {
  req.resume(); // a body on GET is ignored, but must be drained for keep-alive
  const method = req.method ?? '';
  if (method !== 'GET' && method !== 'HEAD') {
    return send(res, method, 405, 'method not allowed\n', { Allow: 'GET, HEAD' });
  }
  let pathname: string;
  try {
    pathname = new URL(req.url ?? '/', 'http://admin.invalid').pathname;
  } catch {
    return send(res, method, 400, 'bad request target\n');
  }
  switch (pathname) {
    case '/metrics': {
      let body: string;
      try {
        body = await options.registry.metrics();
      } catch (err) {
        return send(res, method, 500, `metrics collection failed: ${(err as Error).message}\n`);
      }
      return send(res, method, 200, body, { 'Content-Type': options.registry.contentType });
    }
    case '/healthz':
      return send(res, method, 200, 'ok\n');
    case '/readyz': {
      let state: Readiness;
      try {
        state = options.ready();
      } catch (err) {
        state = { ready: false, detail: `readiness check failed: ${(err as Error).message}` };
      }
      const detail = state.detail !== '' ? state.detail : state.ready ? 'ready' : 'not ready';
      return send(res, method, state.ready ? 200 : 503, `${detail}\n`);
    }
    default:
      return send(res, method, 404, 'not found\n');
  }
}

function send(
  res: http.ServerResponse,
  method: string,
  status: number,
  body: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Cache-Control': 'no-store',
    'Content-Length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(method === 'HEAD' ? undefined : body);
}
