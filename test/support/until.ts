/**
 * Polls `cond` until it holds, for tests that wait on something asynchronous (a watch event, a
 * leader election, a reload). Throws naming `what` after `ms` milliseconds. No timing is
 * asserted: `ms` is a ceiling for a hung test, not a performance bound.
 */
export async function until(cond: () => boolean | Promise<boolean>, what = 'condition', ms = 10_000, stepMs = 10): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
