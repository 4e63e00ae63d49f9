/**
 * `ca-proxy check --wait-ready N` (what the chart's helm test Pod runs): with CRLs that never
 * arrive under hardFail it gives up after N seconds with exit code 1 and the readiness reason,
 * instead of reporting a decision made without CRLs; a bad value is refused.
 */
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../support/root';
import { makeWorld, runCmd, worldConfig, type World } from '../support/world';

let w: World;
let file: string;
const main = path.join(repoRoot(), 'dist', 'cmd', 'ca-proxy', 'main.js');

beforeAll(() => {
  w = makeWorld();
  const cfg = worldConfig(w);
  cfg.revocation.crlPaths = []; // no CRL source, hardFail: never ready
  file = path.join(w.dir, 'check.json');
  fs.writeFileSync(file, JSON.stringify(cfg));
});
afterAll(() => w?.cleanup());

test('gives up after the wait with exit code 1 and the reason', async () => {
  const r = await runCmd(process.execPath, [main, 'check', '127.0.0.1:9', '--config', file, '--wait-ready', '1'], { ms: 30_000 });
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/not ready after 1 s: no CRL source configured and a rule is hardFail/);
  expect(r.stdout).toBe('');
});

test('refuses a wait that is not a number of seconds', async () => {
  const r = await runCmd(process.execPath, [main, 'check', '127.0.0.1:9', '--config', file, '--wait-ready', 'soon'], { ms: 30_000 });
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/--wait-ready: not a number of seconds/);
});
