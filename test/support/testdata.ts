/**
 * The data-driven suites (NIST PKITS, the CRL corpus, the TLS captures) read `../shared/testdata`
 * (or `CA_PROXY_TESTDATA`). When that data is missing:
 * - with `CI` set, the suite **fails** (a CI run without its data would otherwise pass while
 *   testing nothing);
 * - otherwise it is skipped, and the skipped test's name says what is missing and where it was
 *   looked for (jest prints it), plus one line on stderr.
 */
import fs from 'node:fs';
import { describe, test } from '@jest/globals';

type Body = () => unknown;

export interface DataSuite {
  /** Whether the data is there. */
  present: boolean;
  /** `describe` when present; otherwise one failing (CI) or skipped test in its place. The body is not run without the data. */
  describe(name: string, body: () => void): void;
  /** `test` when present; otherwise failing (CI) or skipped, with the reason in its name. */
  test(name: string, body: Body, timeoutMs?: number): void;
}

/**
 * @param what a description of the data, e.g. "NIST PKITS (testdata/pkits)"
 * @param marker a file whose presence means the data is there (its manifest)
 */
export function testdataSuite(what: string, marker: string): DataSuite {
  const present = fs.existsSync(marker);
  if (present) return { present, describe: (name, body) => describe(name, body), test: (name, body, ms) => test(name, body as () => Promise<void>, ms) };
  const reason = `${what} is missing: ${marker} not found (the shared test data beside the repository, ../shared/testdata, or the folder CA_PROXY_TESTDATA names)`;
  const missing = (name: string) =>
    process.env.CI
      ? test(`${name} (CI: test data required)`, () => {
          throw new Error(`CI is set and ${reason}`);
        })
      : test.skip(`${name} — skipped: ${reason}`, () => undefined);
  if (!process.env.CI) process.stderr.write(`skipping: ${reason}\n`);
  return { present, describe: (name) => describe(name, () => missing(name)), test: (name) => missing(name) };
}
