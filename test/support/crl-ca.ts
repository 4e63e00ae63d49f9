/**
 * A local HTTP "CA" for the publisher's tests: a CRL issuer (ECDSA P-256 key, self-signed CA
 * certificate with cRLSign, hand-written DER from der-writer.ts, so a CRL costs milliseconds)
 * and an HTTP server that serves what the test puts at each path.
 *
 * Routes (`ca.route(path, behaviour)`):
 * - `{ crl: Buffer }` — 200 with `ETag` (a hash of the body) and `Last-Modified`; answers
 *   `304` to a matching `If-None-Match` or a not-older `If-Modified-Since` (RFC 9110 §13.1);
 * - `{ file: path }` — the same for a file on disk, streamed (the 2,000,000-entry CRL);
 * - `{ status: 404 }` — that status, empty body;
 * - `{ slowMs: n }` — headers at once, then nothing for n ms (beyond the fetch timeout);
 * - `{ garbage: true }` — 200 with bytes that are no CRL;
 * - unknown paths — 404.
 *
 * `crl(opts)` issues a CRL signed by this CA (or by `wrongKey`: same issuer Name, another key);
 * `ca.requests` counts requests per path, `ca.conditional` those that carried a validator,
 * `ca.served` lists every 200 answer with a CRL body (path, `performance.now()` when sent).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { CN, O, cert, crl, keyPair, name, type CrlEntrySpec, type KeyPair } from './der-writer';

export type Route = { crl: Buffer; lastModified?: Date } | { file: string } | { status: number } | { slowMs: number } | { garbage: true };

export interface IssueOptions {
  crlNumber: number;
  /** Revoked serials (raw INTEGER content, e.g. `Buffer.from([0x10, 1])`). */
  revoked?: Buffer[];
  thisUpdate?: Date;
  /** null: no nextUpdate; default thisUpdate + 7 days. */
  nextUpdate?: Date | null;
  /** Sign with a key that is not the CA's (same issuer Name): `bad_signature`. */
  wrongKey?: boolean;
  /** The entries in full (extensions included), instead of `revoked`. */
  entries?: CrlEntrySpec[];
  /** An empty revokedCertificates SEQUENCE when there are no entries (`empty_revoked_certificates`). */
  emptyRevokedCertificates?: boolean;
}

export interface CrlCa {
  /** Base URL, `http://127.0.0.1:PORT`. */
  url: string;
  issuerName: Buffer;
  /** The CA certificate (DER, and PEM for trust files). */
  certDer: Buffer;
  certPem: string;
  key: KeyPair;
  crl(opts: IssueOptions): Buffer;
  route(path: string, r: Route): void;
  requests: Map<string, number>;
  conditional: Map<string, number>;
  served: { path: string; at: number }[];
  close(): Promise<void>;
}

export async function startCrlCa(opts: { cn?: string } = {}): Promise<CrlCa> {
  const key = keyPair();
  const wrong = keyPair();
  const issuerName = name([O, 'ca-proxy test'], [CN, opts.cn ?? 'publisher test CA']);
  const certDer = cert({ issuer: issuerName, subject: issuerName, key, signer: key, ca: true, serial: Buffer.from([0x01]) });
  const certPem = `-----BEGIN CERTIFICATE-----\n${certDer.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END CERTIFICATE-----\n`;
  const routes = new Map<string, Route>();
  const requests = new Map<string, number>();
  const conditional = new Map<string, number>();
  const served: { path: string; at: number }[] = [];
  const sockets = new Set<import('node:net').Socket>();

  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    requests.set(path, (requests.get(path) ?? 0) + 1);
    if (req.headers['if-none-match'] || req.headers['if-modified-since']) conditional.set(path, (conditional.get(path) ?? 0) + 1);
    const r = routes.get(path);
    if (!r) return void res.writeHead(404).end();
    if ('status' in r) return void res.writeHead(r.status, { 'Content-Length': 0 }).end();
    if ('slowMs' in r) {
      res.writeHead(200, { 'Content-Type': 'application/pkix-crl' });
      res.write(Buffer.from([0x30, 0x82]));
      const t = setTimeout(() => res.end(), r.slowMs);
      res.on('close', () => clearTimeout(t));
      return;
    }
    if ('garbage' in r) return void res.writeHead(200, { 'Content-Type': 'application/pkix-crl' }).end(Buffer.from('<html>this is not a CRL</html>'));
    let etag: string;
    let modified: Date;
    let size: number;
    if ('crl' in r) {
      etag = `"${crypto.createHash('sha256').update(r.crl).digest('hex').slice(0, 16)}"`;
      modified = r.lastModified ?? new Date();
      size = r.crl.length;
    } else {
      const st = fs.statSync(r.file);
      etag = `"${st.ino}-${st.size}-${st.mtimeMs}"`;
      modified = st.mtime;
      size = st.size;
    }
    const lastModified = new Date(Math.floor(modified.getTime() / 1000) * 1000);
    const inm = req.headers['if-none-match'];
    const ims = req.headers['if-modified-since'];
    if ((inm && inm === etag) || (!inm && ims && new Date(ims).getTime() >= lastModified.getTime())) {
      return void res.writeHead(304, { ETag: etag, 'Last-Modified': lastModified.toUTCString() }).end();
    }
    res.writeHead(200, { 'Content-Type': 'application/pkix-crl', 'Content-Length': size, ETag: etag, 'Last-Modified': lastModified.toUTCString() });
    served.push({ path, at: performance.now() });
    if ('crl' in r) res.end(r.crl);
    else fs.createReadStream(r.file).pipe(res);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  // Routes keep their lastModified from when they were set, so If-Modified-Since works.
  const route = (path: string, r: Route): void => {
    routes.set(path, 'crl' in r && !r.lastModified ? { ...r, lastModified: new Date() } : r);
  };

  return {
    url: `http://127.0.0.1:${port}`,
    issuerName,
    certDer,
    certPem,
    key,
    requests,
    conditional,
    served,
    route,
    crl(o: IssueOptions): Buffer {
      const thisUpdate = o.thisUpdate ?? new Date(Date.now() - 60_000);
      const entries: CrlEntrySpec[] = o.entries ?? (o.revoked ?? []).map((serial) => ({ serial, date: thisUpdate, reason: 1 }));
      return crl({
        issuer: issuerName,
        signer: o.wrongKey ? wrong : key,
        thisUpdate,
        nextUpdate: o.nextUpdate === undefined ? new Date(thisUpdate.getTime() + 7 * 86400_000) : o.nextUpdate,
        entries,
        crlNumber: o.crlNumber,
        emptyRevokedCertificates: o.emptyRevokedCertificates,
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
