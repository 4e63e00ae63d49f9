/**
 * The webhook's HTTPS server (node:https): `POST /mutate` takes an `admission.k8s.io/v1`
 * AdmissionReview (`Content-Type: application/json`) and answers one (review.ts).
 *
 * - Bad input never crashes or hangs it: a body that is not an AdmissionReview gets 400 with the
 *   reason, a body above `maxRequestBytes` 413 (refused from Content-Length before reading, or cut
 *   off while reading), another method 405, another path 404, another content type 415; headers
 *   and body must arrive within `requestTimeoutMs`; a failing review is a 500, logged.
 * - The serving certificate is swapped for new connections when its files change
 *   (serving-cert.ts); requests in flight and open keep-alive connections go on.
 */
import https from 'node:https';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { InjectorMetrics } from '../../metrics/injector';
import type { InjectorSettings } from './pod';
import { review, ReviewError } from './review';
import type { KeyPair, ServingCertificate } from './serving-cert';

export interface WebhookServerOptions {
  host: string;
  /** 0 picks a free port (tests). */
  port: number;
  certificate: ServingCertificate;
  settings: InjectorSettings;
  metrics: InjectorMetrics;
  logger: Logger;
  maxRequestBytes: number;
  /** Headers and body deadline, ms (default 10000: the API server's default webhook timeout). */
  requestTimeoutMs?: number;
}

export interface WebhookServer {
  address: AddressInfo;
  /** Stops accepting, lets requests in flight finish (at most `graceMs`), then closes every connection. */
  close(graceMs?: number): Promise<void>;
}

export const MUTATE_PATH = '/mutate';

/** @throws (rejects) the listen error, e.g. EADDRINUSE */
export function startWebhookServer(o: WebhookServerOptions): Promise<WebhookServer> {
  const timeout = o.requestTimeoutMs ?? 10_000;
  const pair = o.certificate.current;
  // connectionsCheckingInterval: how often node enforces requestTimeout (30 s by default).
  const server = https.createServer({ cert: pair.cert, key: pair.key, minVersion: 'TLSv1.2', connectionsCheckingInterval: Math.min(1000, timeout) }, (req, res) => {
    handle(req, res, o).catch((err: unknown) => {
      o.metrics.admissions.inc({ result: 'error' });
      o.logger.error({ err: (err as Error).message }, 'admission request failed');
      if (!res.headersSent) send(res, 500, 'internal error\n');
      else res.destroy();
    });
  });
  server.requestTimeout = timeout;
  server.headersTimeout = timeout;
  server.on('tlsClientError', () => undefined);
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
    if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    else socket.destroy();
  });

  const onReload = (p: KeyPair): void => {
    server.setSecureContext({ cert: p.cert, key: p.key, minVersion: 'TLSv1.2' });
    o.metrics.certificateReloads.inc({ result: 'accepted' });
    o.metrics.certificateNotAfter.set(p.notAfter.getTime() / 1000);
    o.logger.info({ sha256: p.fingerprint, notAfter: p.notAfter.toISOString() }, 'serving certificate reloaded');
  };
  const onRefused = ({ error }: { error: Error }): void => {
    o.metrics.certificateReloads.inc({ result: 'refused' });
    o.logger.warn({ err: error.message, inUse: o.certificate.current.fingerprint }, 'serving certificate files changed but cannot be used; the previous pair stays in use');
  };
  o.certificate.on('reload', onReload);
  o.certificate.on('refused', onRefused);
  o.metrics.certificateNotAfter.set(pair.notAfter.getTime() / 1000);

  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      o.certificate.off('reload', onReload);
      o.certificate.off('refused', onRefused);
      reject(err);
    };
    server.once('error', onError);
    server.listen(o.port, o.host, () => {
      server.off('error', onError);
      server.on('error', (err) => o.logger.error({ err: err.message }, 'webhook server error'));
      resolve({
        address: server.address() as AddressInfo,
        close: (graceMs = 5000) =>
          new Promise<void>((done) => {
            o.certificate.off('reload', onReload);
            o.certificate.off('refused', onRefused);
            const t = setTimeout(() => server.closeAllConnections(), graceMs);
            t.unref();
            server.close(() => {
              clearTimeout(t);
              done();
            });
            server.closeIdleConnections();
          }),
      });
    });
  });
}

async function handle(req: http.IncomingMessage, res: http.ServerResponse, o: WebhookServerOptions): Promise<void> {
  const url = new URL(req.url ?? '/', 'https://webhook.invalid');
  if (url.pathname !== MUTATE_PATH) return reject(req, res, o, 404, `not found (AdmissionReviews go to POST ${MUTATE_PATH})\n`);
  if (req.method !== 'POST') return reject(req, res, o, 405, 'method not allowed\n', { Allow: 'POST' });
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') return reject(req, res, o, 415, `Content-Type must be application/json (got ${JSON.stringify(req.headers['content-type'] ?? '')})\n`);
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > o.maxRequestBytes) return reject(req, res, o, 413, `body larger than ${o.maxRequestBytes} bytes\n`);

  const body = await readBody(req, o.maxRequestBytes);
  if (body === null) return reject(req, res, o, 413, `body larger than ${o.maxRequestBytes} bytes\n`);
  const t0 = process.hrtime.bigint();
  let text: string;
  try {
    const r = review(body, o.settings);
    o.metrics.admissions.inc({ result: r.result });
    if (r.result !== 'ignored') {
      const resp = r.review.response;
      const level = r.result === 'denied' || r.result === 'unsafe' ? 'warn' : 'info';
      o.logger[level]({ uid: resp.uid, pod: r.object, result: r.result, warnings: resp.warnings, message: resp.status?.message }, 'admission');
    }
    text = JSON.stringify(r.review);
  } catch (err) {
    if (!(err instanceof ReviewError)) throw err;
    o.metrics.admissions.inc({ result: 'bad_request' });
    o.logger.warn({ err: err.message, remote: req.socket.remoteAddress }, 'malformed AdmissionReview');
    return send(res, 400, `malformed AdmissionReview: ${err.message}\n`);
  }
  send(res, 200, text, 'application/json');
  o.metrics.duration.observe(Number(process.hrtime.bigint() - t0) / 1e9);
}

/** The whole body, or null once it exceeds `max` bytes (the rest is not read). */
function readBody(req: http.IncomingMessage, max: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > max) {
        req.off('data', onData);
        req.pause();
        resolve(null);
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks, size)));
    req.once('error', reject);
    req.once('aborted', () => reject(new Error('request aborted')));
  });
}

function reject(_req: http.IncomingMessage, res: http.ServerResponse, o: WebhookServerOptions, status: number, body: string, headers: Record<string, string> = {}): void {
  o.metrics.admissions.inc({ result: 'bad_request' });
  // Answer and close the connection; node discards the rest of an unread body (within requestTimeout).
  send(res, status, body, 'text/plain; charset=utf-8', { Connection: 'close', ...headers });
}

function send(res: http.ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8', headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store', ...headers });
  res.end(body);
}
