/**
 * Path helpers for tests and benchmarks, independent of where the compiled file sits
 * (`test/…` under ts-node-less runs, `dist/test/…` after `tsc`).
 */
import fs from 'node:fs';
import path from 'node:path';

let cachedRoot: string | undefined;

/** The repository root: the nearest ancestor of this file that holds package.json. Throws if none. */
export function repoRoot(): string {
  if (cachedRoot !== undefined) return cachedRoot;
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json'))) {
      cachedRoot = dir;
      return dir;
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`repoRoot: no package.json above ${__dirname}`);
    dir = parent;
  }
}

/**
 * The shared, read-only test data folder (`<repo>/../shared/testdata`), or the path named by
 * `CA_PROXY_TESTDATA` when set. The folder may be absent (a bare clone): callers check `fs.existsSync`
 * and skip.
 */
export function sharedTestdata(...parts: string[]): string {
  const base = process.env.CA_PROXY_TESTDATA ?? path.resolve(repoRoot(), '..', 'shared', 'testdata');
  return path.join(base, ...parts);
}
