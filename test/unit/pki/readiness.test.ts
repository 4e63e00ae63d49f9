/**
 * The readiness rule (internal/pki/readiness.ts) and the reload log lines (reload-log.ts) on
 * their own; test/integration/readiness.test.ts runs both through createRuntime and /readyz.
 */
import { describe, test } from '@jest/globals';
import assert from 'node:assert/strict';
import { revocationReadiness } from '../../../internal/pki/readiness';
import { logReload } from '../../../internal/pki/reload-log';
import type { CrlInfo } from '../../../internal/pki/types';

const info = (source: string, sha256 = 'aa'): CrlInfo => ({ issuer: `CN=${source}`, cRLNumber: '1', thisUpdate: new Date(0), nextUpdate: new Date(1000), entries: 0, sha256, source });
const source = (current: CrlInfo[], stale: CrlInfo[]) => ({ status: () => ({ current, stale }) });

describe('revocationReadiness', () => {
  test('no CRL source: ready only when every rule is softFail', () => {
    assert.deepEqual(revocationReadiness(null, { hardFail: true }), { ready: false, detail: 'no CRL source configured and a rule is hardFail' });
    assert.equal(revocationReadiness(null, { hardFail: false }).ready, true);
  });
  test('hardFail: nothing loaded, or any CRL past nextUpdate, is not ready; the detail names at most three', () => {
    assert.deepEqual(revocationReadiness(source([], []), { hardFail: true }), { ready: false, detail: 'no usable CRL loaded yet' });
    const stale = ['a', 'b', 'c', 'd', 'e'].map((s) => info(s));
    const r = revocationReadiness(source([info('ok')], stale), { hardFail: true });
    assert.equal(r.ready, false);
    assert.match(r.detail, /^5 CRL\(s\) past nextUpdate, whose certificates hardFail denies \(revocation_stale\): CN=a \(a, nextUpdate 1970-01-01T00:00:01.000Z\); CN=b .*CN=c [^;]*; and 2 more$/);
    assert.deepEqual(revocationReadiness(source([info('ok')], []), { hardFail: true }), { ready: true, detail: '1 current CRL(s) loaded' });
  });
  test('softFail: always ready, the detail says what is missing or stale', () => {
    assert.deepEqual(revocationReadiness(source([], []), { hardFail: false }), { ready: true, detail: 'no usable CRL yet; every rule is softFail' });
    assert.match(revocationReadiness(source([], [info('a')]), { hardFail: false }).detail, /^0 current CRL\(s\) loaded; 1 past nextUpdate/);
  });
});

describe('logReload', () => {
  test('a kept expired CRL is logged as not used as current, other refusals as refused, acceptances at info', () => {
    const lines: [string, Record<string, unknown>, string][] = [];
    logReload(
      { info: (o, m) => lines.push(['info', o as Record<string, unknown>, m]), warn: (o, m) => lines.push(['warn', o as Record<string, unknown>, m]) },
      {
        accepted: [info('a.crl')],
        refused: [
          { source: 'x.crl', code: 'expired', message: 'm', kept: true },
          { source: 'y.crl', code: 'bad_signature', message: 'n' },
        ],
        retained: [],
      },
    );
    assert.deepEqual(
      lines.map(([l, o, m]) => [l, o.code ?? null, m.split(':')[0]]),
      [
        ['warn', 'expired', 'CRL is past nextUpdate and is not used as current'],
        ['warn', 'bad_signature', 'CRL refused, the last good CRL of its issuer stays'],
        ['info', null, 'CRLs accepted'],
      ],
    );
  });
});
