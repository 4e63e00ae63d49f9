/**
 * `make test`: runs jest (jest.config.js) over the compiled suite with coverage, prints the line and
 * branch coverage of each layer under internal/ (the README states engine, tls and pki), and ends
 * with the plain line CI reads:
 *
 *   Tests: N passed, N failed, N skipped
 *
 * A test file that fails to load counts as one failed test (jest counts it only as a failed suite).
 * Extra arguments go to jest (`node dist/scripts/test.js dist/test/unit/tls`). Exit code: jest's.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(__dirname, '..', '..');
const out = path.join(root, 'coverage');
const results = path.join(out, 'jest-results.json');
fs.mkdirSync(out, { recursive: true });
fs.rmSync(results, { force: true });

const jest = require.resolve('jest/bin/jest', { paths: [root] });
const args = process.argv.slice(2);
const run = spawnSync(process.execPath, [jest, '--config', path.join(root, 'jest.config.js'), '--coverage', '--json', `--outputFile=${results}`, ...args], {
  cwd: root,
  stdio: 'inherit',
});

interface Counts {
  total: number;
  covered: number;
}
type Summary = Record<string, { lines: Counts; branches: Counts }>;

function layerCoverage(): string[] {
  const file = path.join(out, 'coverage-summary.json');
  if (!fs.existsSync(file)) return [];
  const summary = JSON.parse(fs.readFileSync(file, 'utf8')) as Summary;
  const layers = new Map<string, { lines: Counts; branches: Counts }>();
  for (const [name, s] of Object.entries(summary)) {
    if (name === 'total') continue;
    const rel = path.relative(root, name).split(path.sep);
    const layer = rel[0] === 'internal' ? `internal/${rel[1]}` : rel[0] ?? name;
    const l = layers.get(layer) ?? { lines: { total: 0, covered: 0 }, branches: { total: 0, covered: 0 } };
    l.lines.total += s.lines.total;
    l.lines.covered += s.lines.covered;
    l.branches.total += s.branches.total;
    l.branches.covered += s.branches.covered;
    layers.set(layer, l);
  }
  const pct = (c: Counts) => (c.total ? ((100 * c.covered) / c.total).toFixed(1) : '100.0').padStart(5);
  return ['', 'Coverage by layer (lines, branches):', ...[...layers].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `  ${k.padEnd(18)} ${pct(v.lines)} %  ${pct(v.branches)} %`)];
}

let passed = 0;
let failed = 0;
let skipped = 0;
if (fs.existsSync(results)) {
  const r = JSON.parse(fs.readFileSync(results, 'utf8')) as {
    numPassedTests: number;
    numFailedTests: number;
    numPendingTests: number;
    numTodoTests: number;
    testResults: { status: string; assertionResults: unknown[] }[];
  };
  passed = r.numPassedTests;
  skipped = r.numPendingTests + r.numTodoTests;
  failed = r.numFailedTests + r.testResults.filter((t) => t.status === 'failed' && t.assertionResults.length === 0).length;
} else {
  failed = 1;
}
for (const line of layerCoverage()) process.stdout.write(`${line}\n`);
process.stdout.write(`\nTests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
process.exit(run.status ?? 1);
