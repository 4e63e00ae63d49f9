/**
 * The primary's CRL reload barrier (cmd/ca-proxy/workers.ts `CrlBarrier`): nobody swaps unless
 * every live worker staged the same set; a disagreement or a missing worker aborts all and asks
 * for another round; a worker that dies mid-round no longer holds the others back.
 */
import { describe, test, expect } from '@jest/globals';
import { CrlBarrier } from '../../../cmd/ca-proxy/workers';
import { until } from '../../support/until';

function harness(up: number[], timing = { retryMs: 5, timeoutMs: 200 }) {
  const sent: [number, string][] = [];
  const reloads: (number | undefined)[] = [];
  const warnings: string[] = [];
  const members = [...up];
  const barrier = new CrlBarrier(
    {
      members: () => members,
      send: (id, m) => sent.push([id, m.ca_proxy]),
      reloadOthers: (except) => reloads.push(except),
      warn: (_o, msg) => warnings.push(msg),
    },
    timing,
  );
  return { barrier, sent, reloads, warnings, members };
}

describe('CrlBarrier', () => {
  test('one worker stages: the others are asked to reload, and nobody commits until all have staged the same set', () => {
    const h = harness([1, 2, 3]);
    h.barrier.staged(2, 'a');
    expect(h.reloads).toEqual([2]);
    h.barrier.staged(1, 'a');
    expect(h.sent).toEqual([]);
    h.barrier.staged(3, 'a');
    expect(h.sent.sort()).toEqual([[1, 'crl-commit'], [2, 'crl-commit'], [3, 'crl-commit']]);
    expect(h.warnings).toEqual([]);
  });

  test('different sets: every worker aborts, and all are asked to read again', async () => {
    const h = harness([1, 2]);
    h.barrier.staged(1, 'a');
    h.barrier.staged(2, 'b');
    expect(h.sent.sort()).toEqual([[1, 'crl-abort'], [2, 'crl-abort']]);
    expect(h.warnings[0]).toMatch(/2 different CRL sets/);
    await until(() => h.reloads.length === 2, 'the retry round');
    expect(h.reloads[1]).toBeUndefined(); // everyone
  });

  test('a worker that never stages: the round times out and aborts the ones that did', async () => {
    const h = harness([1, 2]);
    h.barrier.staged(1, 'a');
    await until(() => h.sent.length === 1, 'the timeout', 2000);
    expect(h.sent).toEqual([[1, 'crl-abort']]);
    expect(h.warnings[0]).toMatch(/in time/);
  });

  test('a worker that dies mid-round: the rest commit when the round is re-examined', () => {
    const h = harness([1, 2]);
    h.barrier.staged(1, 'a');
    h.members.splice(h.members.indexOf(2), 1);
    h.barrier.settle();
    expect(h.sent).toEqual([[1, 'crl-commit']]);
  });
});
