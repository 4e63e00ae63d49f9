/**
 * A measurement or summary a test reports beside its result (node:test's `t.diagnostic`): one line
 * on stderr, prefixed `ℹ`, outside jest's console capture so it reads as one line in the run.
 */
export function note(message: string): void {
  process.stderr.write(`ℹ ${message}\n`);
}
