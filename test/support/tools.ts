/**
 * Suites that need an external program (`unzip` for the helm binary, `promtool` from Debian's
 * `prometheus` package). As for test data (./testdata.ts): when the program is missing and `CI` is
 * set, the suite **fails** (.ci/run installs it, so a CI run without it is broken); otherwise it is
 * skipped with the reason in the test's name and one line on stderr.
 */
import { spawnSync } from 'node:child_process';
import { describe, test } from '@jest/globals';

/** Whether `bin` runs (`bin args…` exits 0). */
export function hasProgram(bin: string, args: string[] = ['--version']): boolean {
  const r = spawnSync(bin, args, { stdio: 'ignore', timeout: 30_000 });
  return r.error === undefined && r.status === 0;
}

/**
 * `describe(name, body)` when `present`; otherwise one test in its place that fails under CI or is
 * skipped, saying what is missing (`what`, e.g. "promtool (Debian package prometheus)").
 */
export function describeWithTool(present: boolean, what: string, name: string, body: () => void): void {
  if (present) {
    describe(name, body);
    return;
  }
  const reason = `${what} is not installed (.ci/run installs it)`;
  if (!process.env.CI) process.stderr.write(`skipping ${name}: ${reason}\n`);
  describe(name, () => {
    if (process.env.CI) {
      test(`${name} (CI: ${what} required)`, () => {
        throw new Error(`CI is set and ${reason}`);
      });
    } else {
      test.skip(`${name} — skipped: ${reason}`, () => undefined);
    }
  });
}
