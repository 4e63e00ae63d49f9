/**
 * The publisher's HTTP fetch (internal/k8s/fetch.ts) against the local CA (test/support/crl-ca.ts):
 * bodies, 304 on ETag / If-Modified-Since, the whole-exchange timeout, the size limit (declared
 * and streamed), and retries with full-jitter backoff only where retrying can help.
 */
import { test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { FetchError, backoffDelay, fetchCrl, fetchCrlWithRetry } from '../../../internal/k8s/fetch';
import { startCrlCa, type CrlCa } from '../../support/crl-ca';

let ca: CrlCa;
beforeAll(async () => {
  ca = await startCrlCa();
});
afterAll(() => ca.close());

const opts = { timeoutMs: 2000, maxBytes: 1024 * 1024 };
const isFetchError = (code: string, status?: number) => (e: unknown) => e instanceof FetchError && e.code === code && (status === undefined || e.status === status);

test('200 returns the body and validators; the same ETag gets 304', async () => {
  const der = ca.crl({ crlNumber: 1 });
  ca.route('/a.crl', { crl: der });
  const r = await fetchCrl(`${ca.url}/a.crl`, opts);
  assert.equal(r.status, 'ok');
  if (r.status !== 'ok') return;
  assert.deepEqual(r.body, der);
  assert.ok(r.etag);
  assert.ok(r.lastModified);
  assert.deepEqual(await fetchCrl(`${ca.url}/a.crl`, { ...opts, etag: r.etag }), { status: 'not_modified' });
  assert.deepEqual(await fetchCrl(`${ca.url}/a.crl`, { ...opts, lastModified: r.lastModified }), { status: 'not_modified' });
  // A new CRL at the same URL: the old ETag no longer matches.
  ca.route('/a.crl', { crl: ca.crl({ crlNumber: 2 }) });
  assert.equal((await fetchCrl(`${ca.url}/a.crl`, { ...opts, etag: r.etag })).status, 'ok');
  assert.equal(ca.conditional.get('/a.crl'), 3);
});

test('404 is an http_status error that is not retried', async () => {
  ca.route('/gone', { status: 404 });
  const before = ca.requests.get('/gone') ?? 0;
  await assert.rejects(fetchCrlWithRetry(`${ca.url}/gone`, opts, { retries: 3, baseDelayMs: 1 }), isFetchError('http_status', 404));
  assert.equal(ca.requests.get('/gone')! - before, 1);
});

test('a server slower than the timeout is cut at the deadline', async () => {
  ca.route('/slow', { slowMs: 5000 });
  // The server would finish after 5 s; `timeout` comes only from the fetch's own deadline.
  await assert.rejects(fetchCrl(`${ca.url}/slow`, { ...opts, timeoutMs: 200 }), isFetchError('timeout'));
});

test('bodies over maxBytes are refused, by Content-Length and while streaming', async () => {
  ca.route('/big', { crl: Buffer.alloc(50_000, 0x30) });
  await assert.rejects(fetchCrl(`${ca.url}/big`, { ...opts, maxBytes: 10_000 }), isFetchError('too_large'));
  // A chunked answer without Content-Length.
  const srv = http.createServer((_req, res) => {
    res.writeHead(200);
    for (let i = 0; i < 20; i++) res.write(Buffer.alloc(1000));
    res.end();
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  try {
    const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/`;
    await assert.rejects(fetchCrl(url, { ...opts, maxBytes: 5000 }), isFetchError('too_large'));
    const ok = await fetchCrl(url, { ...opts, maxBytes: 20_000 });
    assert.equal(ok.status === 'ok' && ok.body.length, 20_000);
  } finally {
    srv.closeAllConnections();
    srv.close();
  }
});

test('5xx and connection failures are retried with growing, jittered delays, then the last error is thrown', async () => {
  ca.route('/flaky', { status: 503 });
  const delays: number[] = [];
  await assert.rejects(
    fetchCrlWithRetry(`${ca.url}/flaky`, opts, { retries: 3, baseDelayMs: 10, maxDelayMs: 1000, random: () => 0.999, onRetry: (_a, _e, d) => delays.push(d) }),
    isFetchError('http_status', 503),
  );
  assert.deepEqual(delays, [9, 19, 39]);
  assert.equal(ca.requests.get('/flaky'), 4);
  // Recovery on a later attempt.
  let n = 0;
  const srv = http.createServer((_req, res) => {
    if (++n < 3) return void res.writeHead(500).end();
    res.writeHead(200).end('x');
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  try {
    const r = await fetchCrlWithRetry(`http://127.0.0.1:${(srv.address() as AddressInfo).port}/`, opts, { retries: 5, baseDelayMs: 1 });
    assert.equal(r.attempts, 3);
  } finally {
    srv.close();
  }
  // Nobody listening.
  await assert.rejects(fetchCrlWithRetry('http://127.0.0.1:1/', opts, { retries: 1, baseDelayMs: 1 }), isFetchError('network'));
  await assert.rejects(fetchCrl('ftp://x/', opts), isFetchError('bad_url'));
});

test('backoffDelay: full jitter under min(cap, base·2^attempt)', () => {
  assert.equal(backoffDelay(0, 100, 1000, () => 0.5), 50);
  assert.equal(backoffDelay(3, 100, 1000, () => 0.5), 400);
  assert.equal(backoffDelay(10, 100, 1000, () => 0.5), 500);
  assert.equal(backoffDelay(10, 100, 1000, () => 0), 0);
});

test('https sources: verified against the given CA bundle; an unknown issuer is a network error', async () => {
  const https = await import('node:https');
  const { CN, cert, ctx, ext, keyPair, name, seq } = await import('../../support/der-writer');
  const caKey = keyPair();
  const caName = name([CN, 'fetch test TLS CA']);
  const caDer = cert({ issuer: caName, subject: caName, key: caKey, signer: caKey, ca: true });
  const leafKey = keyPair();
  const san = ext('2.5.29.17', false, seq(ctx(2, false, Buffer.from('localhost')), ctx(7, false, Buffer.from([127, 0, 0, 1]))));
  const leafDer = cert({ issuer: caName, subject: name([CN, 'localhost']), key: leafKey, signer: caKey, serial: Buffer.from([0x02]), extensions: [san] });
  // One base64 line per 64 characters and no empty line: a body whose length is a multiple of 64
  // would otherwise end in a blank line, which OpenSSL's PEM reader refuses (a 1-in-16 flake).
  const pem = (der: Buffer, label: string) => `-----BEGIN ${label}-----\n${der.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END ${label}-----\n`;
  const der = ca.crl({ crlNumber: 77 });
  const srv = https.createServer({ cert: pem(leafDer, 'CERTIFICATE'), key: leafKey.privateKey.export({ type: 'pkcs8', format: 'pem' }) }, (_req, res) => {
    res.writeHead(200, { 'Content-Length': der.length }).end(der);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  try {
    const url = `https://127.0.0.1:${(srv.address() as AddressInfo).port}/crl`;
    const r = await fetchCrl(url, { ...opts, ca: pem(caDer, 'CERTIFICATE') });
    assert.equal(r.status === 'ok' && r.body.equals(der), true);
    await assert.rejects(fetchCrl(url, opts), isFetchError('network'));
  } finally {
    srv.closeAllConnections();
    srv.close();
  }
});
