import { describe, test } from '@jest/globals';
import assert from 'node:assert/strict';
import { createLogger, createReporter, type DecisionLogger } from '../../../internal/metrics/report';
import { createMetrics } from '../../../internal/metrics/registry';
import type { Decision } from '../../../internal/engine/decision';

/** A pino destination that keeps each written line. */
function capture(): { lines: string[]; write(s: string): void } {
  const lines: string[] = [];
  return { lines, write: (s: string) => void lines.push(s) };
}

const allowed: Decision = {
  time: '2026-01-01T00:00:00.000Z',
  connectionId: 'conn-1',
  source: { address: '10.1.2.3', pod: 'web-0', namespace: 'shop' },
  destination: { sni: 'api.example.com', address: '93.184.216.34', port: 443 },
  action: 'intercept',
  rule: 'default',
  outcome: 'allow',
  reason: 'ok',
  tls: { version: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256', alpn: 'h2' },
  revocation: { status: 'good', cRLNumber: '12', thisUpdate: '2026-01-01T00:00:00.000Z' },
  handshakeMs: 12.5,
};
const denied: Decision = {
  ...allowed,
  connectionId: 'conn-2',
  outcome: 'deny',
  reason: 'certificate_revoked',
  revocation: { status: 'revoked', reason: 'keyCompromise', revocationDate: '2025-12-01T00:00:00.000Z', serial: '0a' },
};

describe('createLogger', () => {
  test('writes JSON lines with the level name and an ISO time, honouring the level', () => {
    const out = capture();
    const logger = createLogger('warn', out);
    logger.info('hidden');
    logger.warn({ a: 1 }, 'shown');
    assert.equal(out.lines.length, 1);
    const line = JSON.parse(out.lines[0]) as Record<string, unknown>;
    assert.equal(line.level, 'warn');
    assert.equal(line.msg, 'shown');
    assert.equal(line.a, 1);
    assert.ok(!Number.isNaN(Date.parse(String(line.time))), 'time is an ISO date');
    assert.equal(line.hostname, undefined);
  });

  test('silent logs nothing', () => {
    const out = capture();
    createLogger('silent', out).fatal('nothing');
    assert.equal(out.lines.length, 0);
  });
});

describe('createReporter', () => {
  test('the verdict is counted, not logged; the closed record is one JSON line: info for allow, warn for deny, under `decision`', async () => {
    const out = capture();
    const metrics = createMetrics();
    const reporter = createReporter({ logger: createLogger('info', out), metrics });
    reporter.decided(allowed);
    reporter.decided(denied);
    assert.equal(out.lines.length, 0, 'nothing is logged before the connection closes');
    reporter.report({ ...allowed, ends: { workload: 'clean', server: 'truncated' } });
    reporter.report(denied);
    assert.equal(out.lines.length, 2);
    for (const l of out.lines) assert.equal(l.trimEnd().includes('\n'), false, 'one line per decision');
    const [a, d] = out.lines.map((l) => JSON.parse(l) as { level: string; msg: string; decision: Decision });
    assert.equal(a.msg, 'decision');
    assert.equal(a.level, 'info');
    assert.deepEqual(a.decision, { ...allowed, ends: { workload: 'clean', server: 'truncated' } });
    assert.equal(d.level, 'warn');
    assert.deepEqual(d.decision, denied);

    const text = await metrics.registry.getSingleMetricAsString('ca_proxy_connections_total');
    assert.match(text, /^ca_proxy_connections_total\{action="intercept",outcome="allow",reason="ok"\} 1$/m);
    assert.match(text, /^ca_proxy_connections_total\{action="intercept",outcome="deny",reason="certificate_revoked"\} 1$/m);
    const revocation = await metrics.registry.getSingleMetricAsString('ca_proxy_revocation_checks_total');
    assert.match(revocation, /^ca_proxy_revocation_checks_total\{result="revoked"\} 1$/m);
    const ends = await metrics.registry.getSingleMetricAsString('ca_proxy_stream_ends_total');
    assert.match(ends, /^ca_proxy_stream_ends_total\{peer="server",end="truncated"\} 1$/m);
    assert.match(ends, /^ca_proxy_stream_ends_total\{peer="workload",end="clean"\} 1$/m);
  });

  test('a failing logger does not throw and the metrics still count', async () => {
    const broken: DecisionLogger = {
      info: () => {
        throw new Error('stdout closed');
      },
      warn: () => {
        throw new Error('stdout closed');
      },
      error: () => {
        throw new Error('stdout closed');
      },
    } as unknown as DecisionLogger;
    const metrics = createMetrics();
    const reporter = createReporter({ logger: broken, metrics });
    assert.doesNotThrow(() => reporter.decided(allowed));
    assert.doesNotThrow(() => reporter.report(allowed));
    const text = await metrics.registry.getSingleMetricAsString('ca_proxy_connections_total');
    assert.match(text, /reason="ok"\} 1$/m);
  });

  test('a metrics failure is logged as an error, not thrown', () => {
    const out = capture();
    const metrics = createMetrics();
    const reporter = createReporter({ logger: createLogger('info', out), metrics });
    // Simulate a metrics failure (e.g. a label-set mismatch after a refactor).
    metrics.connections.inc = () => {
      throw new Error('boom');
    };
    assert.doesNotThrow(() => reporter.decided(allowed));
    const messages = out.lines.map((l) => (JSON.parse(l) as { level: string; msg: string }).msg);
    assert.deepEqual(messages, ['decision metrics update failed']);
  });
});
