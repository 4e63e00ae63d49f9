import { describe, test } from '@jest/globals';
import assert from 'node:assert/strict';
import type { Counter, Gauge } from 'prom-client';
import { createMetrics, observeCrls, observeDecision, observeReload, registerReadiness, HANDSHAKE_BUCKETS } from '../../../internal/metrics/registry';
import type { Decision } from '../../../internal/engine/decision';
import type { CrlInfo } from '../../../internal/pki/types';

/** The value of one series, 0 when absent. */
async function valueOf(metric: Counter<string> | Gauge<string>, labels: Record<string, string>): Promise<number> {
  const { values } = await metric.get();
  const hit = values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l) && Object.keys(v.labels).length === Object.keys(labels).length);
  return hit?.value ?? 0;
}

function decision(overrides: Partial<Decision>): Decision {
  return {
    time: '2026-01-01T00:00:00.000Z',
    connectionId: 'c1',
    source: { address: '10.0.0.1' },
    destination: { sni: 'api.example.com', port: 443 },
    action: 'intercept',
    rule: 'default',
    outcome: 'allow',
    reason: 'ok',
    ...overrides,
  };
}

describe('createMetrics', () => {
  test('registers every ca-proxy metric and the process metrics on its own registry', async () => {
    const a = createMetrics();
    const b = createMetrics(); // a second registry must not clash with the first
    const text = await a.registry.metrics();
    for (const name of [
      'ca_proxy_connections_total',
      'ca_proxy_handshake_duration_seconds',
      'ca_proxy_certificate_substitutions_total',
      'ca_proxy_revocation_checks_total',
      'ca_proxy_crl_entries',
      'ca_proxy_crl_next_update_timestamp_seconds',
      'ca_proxy_crl_reloads_total',
      'ca_proxy_active_connections',
      'process_cpu_seconds_total',
      'nodejs_heap_size_total_bytes',
    ]) {
      assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
    }
    assert.notEqual(a.registry, b.registry);
    // Small fixed label domains start at zero.
    assert.match(text, /^ca_proxy_revocation_checks_total\{result="not_checked"\} 0$/m);
    assert.match(text, /^ca_proxy_crl_reloads_total\{result="refused"\} 0$/m);
    assert.match(text, /^ca_proxy_certificate_substitutions_total\{workload_certificate="true"\} 0$/m);
  });

  test('handshake buckets span 1 ms to 10 s', () => {
    assert.equal(HANDSHAKE_BUCKETS[0], 0.001);
    assert.equal(HANDSHAKE_BUCKETS[HANDSHAKE_BUCKETS.length - 1], 10);
    assert.deepEqual([...HANDSHAKE_BUCKETS].sort((x, y) => x - y), HANDSHAKE_BUCKETS);
  });
});

describe('observeDecision', () => {
  test('an allowed intercept with substitution and a good CRL check', async () => {
    const m = createMetrics();
    observeDecision(
      m,
      decision({
        handshakeMs: 42,
        substitution: { requested: true, identity: 'corp', workloadCertificate: false },
        revocation: { status: 'good', cRLNumber: '7' },
      }),
    );
    assert.equal(await valueOf(m.connections, { action: 'intercept', outcome: 'allow', reason: 'ok' }), 1);
    assert.equal(await valueOf(m.certificateSubstitutions, { workload_certificate: 'false' }), 1);
    assert.equal(await valueOf(m.certificateSubstitutions, { workload_certificate: 'true' }), 0);
    assert.equal(await valueOf(m.revocationChecks, { result: 'good' }), 1);
    assert.equal(await valueOf(m.revocationChecks, { result: 'not_checked' }), 0);

    const text = await m.registry.getSingleMetricAsString('ca_proxy_handshake_duration_seconds');
    assert.match(text, /^ca_proxy_handshake_duration_seconds_bucket\{le="0\.025",action="intercept",outcome="allow"\} 0$/m);
    assert.match(text, /^ca_proxy_handshake_duration_seconds_bucket\{le="0\.05",action="intercept",outcome="allow"\} 1$/m);
    assert.match(text, /^ca_proxy_handshake_duration_seconds_sum\{action="intercept",outcome="allow"\} 0\.042$/m);
    assert.match(text, /^ca_proxy_handshake_duration_seconds_count\{action="intercept",outcome="allow"\} 1$/m);
  });

  test('a revoked denial, a passthrough and a substitution where the workload had a certificate', async () => {
    const m = createMetrics();
    observeDecision(
      m,
      decision({
        outcome: 'deny',
        reason: 'certificate_revoked',
        revocation: { status: 'revoked', reason: 'keyCompromise', revocationDate: '2025-01-01T00:00:00Z' },
        substitution: { requested: true, identity: 'corp', workloadCertificate: true },
      }),
    );
    observeDecision(m, decision({ action: 'passthrough', reason: 'passthrough' }));
    observeDecision(m, decision({ action: 'passthrough', reason: 'passthrough' }));
    // Requested but no identity presented: not a substitution.
    observeDecision(m, decision({ outcome: 'deny', reason: 'client_certificate_required', substitution: { requested: true, identity: null, workloadCertificate: false } }));

    assert.equal(await valueOf(m.connections, { action: 'intercept', outcome: 'deny', reason: 'certificate_revoked' }), 1);
    assert.equal(await valueOf(m.connections, { action: 'passthrough', outcome: 'allow', reason: 'passthrough' }), 2);
    assert.equal(await valueOf(m.connections, { action: 'intercept', outcome: 'deny', reason: 'client_certificate_required' }), 1);
    assert.equal(await valueOf(m.certificateSubstitutions, { workload_certificate: 'true' }), 1);
    assert.equal(await valueOf(m.certificateSubstitutions, { workload_certificate: 'false' }), 0);
    assert.equal(await valueOf(m.revocationChecks, { result: 'revoked' }), 1);
    assert.equal(await valueOf(m.revocationChecks, { result: 'not_checked' }), 3);
    // No handshakeMs: nothing observed.
    const hist = await m.handshakeDuration.get();
    assert.ok(hist.values.every((v) => v.value === 0), 'histogram must stay empty without handshakeMs');
  });

  test('a nonsensical handshakeMs is not observed', async () => {
    const m = createMetrics();
    observeDecision(m, decision({ handshakeMs: Number.NaN }));
    observeDecision(m, decision({ handshakeMs: -1 }));
    const text = await m.registry.getSingleMetricAsString('ca_proxy_handshake_duration_seconds');
    assert.doesNotMatch(text, /_count\{[^}]*\} [1-9]/);
    assert.equal(await valueOf(m.connections, { action: 'intercept', outcome: 'allow', reason: 'ok' }), 2);
  });
});

describe('observeCrls and observeReload', () => {
  const crl = (issuer: string, entries: number, nextUpdate: string | null): CrlInfo => ({
    issuer,
    cRLNumber: '1',
    thisUpdate: new Date('2026-01-01T00:00:00Z'),
    nextUpdate: nextUpdate === null ? null : new Date(nextUpdate),
    entries,
    sha256: '00',
    source: 'test',
  });

  test('sets entries per issuer (summed) and the earliest nextUpdate; a later call replaces everything', async () => {
    const m = createMetrics();
    observeCrls(m, [
      crl('CN=Root', 3, '2026-02-01T00:00:00Z'),
      crl('CN=Issuing', 1000, '2026-01-08T00:00:00Z'),
      crl('CN=Issuing', 20, '2026-01-02T00:00:00Z'),
      crl('CN=NoNext', 5, null),
    ]);
    assert.equal(await valueOf(m.crlEntries, { issuer: 'CN=Root' }), 3);
    assert.equal(await valueOf(m.crlEntries, { issuer: 'CN=Issuing' }), 1020);
    assert.equal(await valueOf(m.crlEntries, { issuer: 'CN=NoNext' }), 5);
    assert.equal(await valueOf(m.crlNextUpdate, { issuer: 'CN=Issuing' }), Date.parse('2026-01-02T00:00:00Z') / 1000);
    assert.equal(await valueOf(m.crlNextUpdate, { issuer: 'CN=Root' }), Date.parse('2026-02-01T00:00:00Z') / 1000);
    assert.equal((await m.crlNextUpdate.get()).values.length, 2, 'a CRL without nextUpdate reports no timestamp');

    observeCrls(m, [crl('CN=Root', 4, '2026-03-01T00:00:00Z')]);
    const entries = await m.crlEntries.get();
    assert.deepEqual(entries.values.map((v) => [v.labels.issuer, v.value]), [['CN=Root', 4]]);
    assert.equal((await m.crlNextUpdate.get()).values.length, 1);
  });

  test('observeReload counts accepted and refused CRLs', async () => {
    const m = createMetrics();
    observeReload(m, { accepted: 2, refused: 0 });
    observeReload(m, { accepted: 1, refused: 1 });
    observeReload(m, { accepted: Number.NaN, refused: -3 });
    assert.equal(await valueOf(m.crlReloads, { result: 'accepted' }), 3);
    assert.equal(await valueOf(m.crlReloads, { result: 'refused' }), 1);
  });
});

describe('readiness and CRL age metrics', () => {
  test('ca_proxy_ready follows the readiness callback at scrape time, and is registered once', async () => {
    const m = createMetrics();
    let ready = false;
    registerReadiness(m.registry, () => ({ ready }));
    registerReadiness(m.registry, () => ({ ready: true })); // a second admin server on the same registry
    assert.match(await m.registry.metrics(), /^ca_proxy_ready 0$/m);
    ready = true;
    assert.match(await m.registry.metrics(), /^ca_proxy_ready 1$/m);
  });

  test('a readiness callback that throws reads as not ready', async () => {
    const m = createMetrics();
    registerReadiness(m.registry, () => {
      throw new Error('boom');
    });
    assert.match(await m.registry.metrics(), /^ca_proxy_ready 0$/m);
  });

  test('ca_proxy_crl_this_update_timestamp_seconds is the latest thisUpdate per issuer', async () => {
    const m = createMetrics();
    const crl = (issuer: string, thisUpdate: string) => ({ issuer, cRLNumber: '1', thisUpdate: new Date(thisUpdate), nextUpdate: null, entries: 1, sha256: 'x', source: 's' });
    observeCrls(m, [crl('CN=A', '2026-01-01T00:00:00Z'), crl('CN=A', '2026-01-02T00:00:00Z'), crl('CN=B', '2026-01-03T00:00:00Z')]);
    const text = await m.registry.metrics();
    assert.match(text, new RegExp(`^ca_proxy_crl_this_update_timestamp_seconds\\{issuer="CN=A"\\} ${Date.parse('2026-01-02T00:00:00Z') / 1000}$`, 'm'));
    assert.match(text, new RegExp(`^ca_proxy_crl_this_update_timestamp_seconds\\{issuer="CN=B"\\} ${Date.parse('2026-01-03T00:00:00Z') / 1000}$`, 'm'));
    observeCrls(m, []);
    assert.doesNotMatch(await m.registry.metrics(), /^ca_proxy_crl_this_update_timestamp_seconds\{/m);
  });
});
