/**
 * Cleanup registered from inside a test body (jest has no per-test `t.after`): `afterThis(fn)` runs
 * `fn` once the current test ends, pass or fail, newest first; `afterFile(fn)` once every test of
 * the file has run. Importing this module adds one `afterEach` and one `afterAll` hook to the file.
 */
import { afterAll, afterEach } from '@jest/globals';

type Cleanup = () => unknown;
const perTest: Cleanup[] = [];
const perFile: Cleanup[] = [];

async function drain(list: Cleanup[]): Promise<void> {
  const errors: unknown[] = [];
  while (list.length) {
    try {
      await list.pop()!();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length) throw errors[0];
}

afterEach(() => drain(perTest));
afterAll(() => drain(perFile));

/** Runs `fn` when the current test ends (also when it fails). */
export function afterThis(fn: Cleanup): void {
  perTest.push(fn);
}

/** Runs `fn` after the last test of the file. */
export function afterFile(fn: Cleanup): void {
  perFile.push(fn);
}
