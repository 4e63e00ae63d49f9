/**
 * The Envoy stand-in (envoy.ts) as a program of its own, so that it can run where a sidecar runs:
 * inside the pod's network namespace, as the proxy uid (test/support/sidecar.ts starts it with
 * `ip netns exec` and `setpriv`). Not a test; run by the harness only.
 *
 *   node envoy-agent.js JSON    JSON: the StandInOptions that survive JSON (no credentials, no
 *                               callbacks); `upstream: 'original-dst'` for the sidecar.
 *
 * Prints `{"ready": PORT}` once it listens, then one line `{"connection": {...}}` per
 * connection when both its sockets have closed (the StandInConnection without `done`). Runs
 * until SIGTERM.
 */
import { EnvoyStandIn, type StandInOptions } from './envoy';

async function main(opts: StandInOptions): Promise<void> {
  const e = await EnvoyStandIn.start({
    ...opts,
    onConnection: (c) =>
      void c.done.then(() => {
        const { done: _done, ...rest } = c;
        process.stdout.write(`${JSON.stringify({ connection: rest })}\n`);
      }),
  });
  process.stdout.write(`${JSON.stringify({ ready: e.port })}\n`);
  process.on('SIGTERM', () => {
    void e.close().finally(() => process.exit(0));
  });
}

main(JSON.parse(process.argv[2] ?? 'null') as StandInOptions).catch((err: Error) => {
  process.stderr.write(`envoy-agent: ${err.message}\n`);
  process.exit(1);
});
