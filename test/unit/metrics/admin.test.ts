import { describe, test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { startAdminServer, type AdminServer, type Readiness } from '../../../internal/metrics/admin';
import { createMetrics, observeDecision } from '../../../internal/metrics/registry';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A plain node:http request with no connection reuse, so close() has nothing to wait for. */
function request(server: AdminServer, method: string, path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: server.address.port, method, path, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Sends raw bytes and returns whatever the server answers before closing. */
function raw(server: AdminServer, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(server.address.port, '127.0.0.1', () => socket.write(bytes));
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.on('error', reject);
  });
}

describe('admin server', () => {
  const metrics = createMetrics();
  let state: Readiness | Error = { ready: false, detail: 'no usable CRL loaded yet' };
  let server: AdminServer;

  beforeAll(async () => {
    server = await startAdminServer({
      host: '127.0.0.1',
      port: 0,
      registry: metrics.registry,
      ready: () => {
        if (state instanceof Error) throw state;
        return state;
      },
    });
  });
  afterAll(async () => {
    await server.close();
  });

  test('binds the asked host and a free port', () => {
    assert.equal(server.address.address, '127.0.0.1');
    assert.ok(server.address.port > 0);
  });

  test('GET /metrics: Prometheus text format with the ca-proxy metrics', async () => {
    observeDecision(metrics, {
      time: new Date().toISOString(),
      connectionId: 'x',
      source: {},
      destination: { sni: 'a.example', port: 443 },
      action: 'deny',
      rule: 'blocked',
      outcome: 'deny',
      reason: 'policy_deny',
    });
    const a = await request(server, 'GET', '/metrics');
    assert.equal(a.status, 200);
    assert.equal(a.headers['content-type'], metrics.registry.contentType);
    assert.match(a.headers['content-type'] ?? '', /^text\/plain; version=0\.0\.4/);
    assert.match(a.body, /^# HELP ca_proxy_connections_total /m);
    assert.match(a.body, /^ca_proxy_connections_total\{action="deny",outcome="deny",reason="policy_deny"\} 1$/m);
    assert.match(a.body, /^# TYPE ca_proxy_handshake_duration_seconds histogram$/m);
    assert.match(a.body, /^process_resident_memory_bytes \d+/m);
    // The query string does not change the route.
    assert.equal((await request(server, 'GET', '/metrics?name[]=x')).status, 200);
  });

  test('GET /healthz is 200 ok', async () => {
    const a = await request(server, 'GET', '/healthz');
    assert.equal(a.status, 200);
    assert.equal(a.body, 'ok\n');
  });

  test('/readyz follows the callback, with its detail', async () => {
    state = { ready: false, detail: 'no usable CRL loaded yet' };
    let a = await request(server, 'GET', '/readyz');
    assert.equal(a.status, 503);
    assert.equal(a.body, 'no usable CRL loaded yet\n');

    state = { ready: true, detail: '3 CRLs loaded' };
    a = await request(server, 'GET', '/readyz');
    assert.equal(a.status, 200);
    assert.equal(a.body, '3 CRLs loaded\n');

    state = { ready: false, detail: '' };
    a = await request(server, 'GET', '/readyz');
    assert.equal(a.status, 503);
    assert.equal(a.body, 'not ready\n');

    state = new Error('store exploded');
    a = await request(server, 'GET', '/readyz');
    assert.equal(a.status, 503);
    assert.equal(a.body, 'readiness check failed: store exploded\n');
  });

  test('HEAD answers like GET without a body', async () => {
    const a = await request(server, 'HEAD', '/healthz');
    assert.equal(a.status, 200);
    assert.equal(a.body, '');
    assert.equal(a.headers['content-length'], '3');
  });

  test('unknown paths are 404, other methods 405 with Allow', async () => {
    assert.equal((await request(server, 'GET', '/')).status, 404);
    assert.equal((await request(server, 'GET', '/metricsx')).status, 404);
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS']) {
      const a = await request(server, method, '/metrics');
      assert.equal(a.status, 405, method);
      assert.equal(a.headers.allow, 'GET, HEAD');
    }
  });

  test('malformed requests get an error answer and the server keeps serving', async () => {
    assert.match(await raw(server, 'GARBAGE\r\n\r\n'), /^HTTP\/1\.1 400 /);
    assert.match(await raw(server, 'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n'), /^HTTP\/1\.1 400 /);
    // An absolute-form target is routed by its path.
    assert.match(await raw(server, 'GET http://other/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 200 /);
    assert.match(await raw(server, 'GET * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 404 /);
    assert.equal((await request(server, 'GET', '/healthz')).status, 200);
  });
});

describe('startAdminServer errors', () => {
  test('a port in use rejects with EADDRINUSE', async () => {
    const registry = createMetrics().registry;
    const first = await startAdminServer({ host: '127.0.0.1', port: 0, registry, ready: () => ({ ready: true, detail: '' }) });
    try {
      await assert.rejects(
        startAdminServer({ host: '127.0.0.1', port: first.address.port, registry, ready: () => ({ ready: true, detail: '' }) }),
        { code: 'EADDRINUSE' },
      );
    } finally {
      await first.close();
    }
  });

  test('close() stops listening even with an idle keep-alive connection open', async () => {
    const registry = createMetrics().registry;
    const s = await startAdminServer({ host: '127.0.0.1', port: 0, registry, ready: () => ({ ready: true, detail: '' }) });
    const socket = net.connect(s.address.port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.on('connect', () => resolve()));
    socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise<void>((resolve) => socket.once('data', () => resolve()));
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    await s.close();
    await closed;
    await assert.rejects(request(s, 'GET', '/healthz'), { code: 'ECONNREFUSED' });
  });
});
