/**
 * The README's configuration example must stay a valid configuration, and the reason codes it
 * lists must be exactly the ones the code reports.
 */
import { test } from '@jest/globals';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../support/root';
import { parseConfig } from '../../../internal/config/load';
import { ALL_REASONS } from '../../../internal/engine/reasons';

const readme = fs.readFileSync(path.join(repoRoot(), 'README.md'), 'utf8');

test('the README configuration example loads', () => {
  const m = /A typical file:\n\n```yaml\n([\s\S]*?)```/.exec(readme);
  assert.ok(m, 'README has the example');
  const cfg = parseConfig(m[1]!, '/etc/ca-proxy', 'README.md');
  assert.equal(cfg.rules.length, 3);
  assert.equal(cfg.defaults.identity, 'corp');
  assert.equal(cfg.interceptionCA.cert, '/etc/ca-proxy/ca/interception.crt');
});

test('the README lists every reason code, and no other', () => {
  const m = /The `reason` codes are one enumeration[\s\S]*?\n\n/.exec(readme);
  assert.ok(m);
  const listed = [...m[0].matchAll(/`([a-z0-9_]+)`/g)].map((x) => x[1]!).filter((r) => r !== 'reason');
  assert.deepEqual([...listed].sort(), [...ALL_REASONS].sort());
});
