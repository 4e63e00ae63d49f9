/**
 * The Envoy stand-in (envoy.ts) as a pod's sidecar: started inside the pod's network namespace
 * (test/support/netns.ts) as the proxy uid, by way of envoy-agent.ts, listening where the
 * redirect rules send the pod's outbound TCP and dialling each connection's original destination
 * (`upstream: 'original-dst'`). Its connections run as the proxy uid, which `ca-proxy redirect`
 * exempts, so they go out directly instead of back to the listener.
 *
 * The processor must be reachable from inside the namespace: a `unix:` socket (a filesystem
 * path, not bound to a network namespace; the `placement: sidecar` emptyDir) that the proxy uid
 * may connect to.
 */
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { NetnsPair } from './netns';
import type { StandInConnection, StandInOptions } from './envoy';

/** What the agent reports per ended connection (StandInConnection without its promise). */
export type SidecarConnection = Omit<StandInConnection, 'done'>;

export interface Sidecar {
  port: number;
  /** Connections that have ended, in the order they ended. */
  connections: SidecarConnection[];
  /** Resolves with the `n`th (1-based) ended connection; rejects after `ms`. */
  ended(n: number, ms?: number): Promise<SidecarConnection>;
  /** Throws (fails the test) on any lockstep violation or OK stream end while open, as EnvoyStandIn.assertClean. */
  assertClean(): void;
  stop(): Promise<void>;
}

export interface SidecarOptions extends Omit<StandInOptions, 'upstream' | 'credentials' | 'onAnswer' | 'onConnection' | 'listen'> {
  /** The listener port redirect sends to (Envoy's virtual outbound listener, 0.0.0.0). */
  port: number;
  /** The proxy uid (`ca-proxy redirect --proxy-uid`, default 1337). */
  uid?: number;
}

const AGENT = path.join(__dirname, 'envoy-agent.js');

export function startSidecar(pair: NetnsPair, opts: SidecarOptions, timeoutMs = 10_000): Promise<Sidecar> {
  const { port, uid = 1337, ...rest } = opts;
  const standIn: StandInOptions = { ...rest, upstream: 'original-dst', listen: { host: '0.0.0.0', port } };
  const child: ChildProcess = pair.start(pair.pod, [process.execPath, AGENT, JSON.stringify(standIn)], { uid });
  const connections: SidecarConnection[] = [];
  let waiters: (() => void)[] = [];
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sidecar stand-in not ready after ${timeoutMs} ms: ${err.trim()}`)), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`sidecar stand-in exited ${code}: ${err.trim()}`));
    });
    let buf = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const msg = JSON.parse(buf.slice(0, nl)) as { ready?: number; connection?: SidecarConnection };
        buf = buf.slice(nl + 1);
        if (msg.connection) {
          connections.push(msg.connection);
          const ws = waiters;
          waiters = [];
          ws.forEach((f) => f());
        }
        if (msg.ready !== undefined) {
          clearTimeout(timer);
          resolve(sidecar(msg.ready));
        }
      }
    });
  });

  function sidecar(listening: number): Sidecar {
    return {
      port: listening,
      connections,
      ended: (n, ms = 10_000) =>
        new Promise((resolve, reject) => {
          const t = setTimeout(() => reject(new Error(`sidecar: connection ${n} had not ended after ${ms} ms (${connections.length} ended); stderr: ${err.trim()}`)), ms);
          const check = () => {
            if (connections.length >= n) {
              clearTimeout(t);
              resolve(connections[n - 1]!);
            } else waiters.push(check);
          };
          check();
        }),
      assertClean: () => {
        const v = connections.flatMap((c) => [
          ...c.violations.map((x) => `connection ${c.id}: ${x}`),
          ...(c.okEndWhileOpen ? [`connection ${c.id}: the processor ended the ext_proc stream with status OK while the connection was open; Envoy passes the rest of it unchecked`] : []),
        ]);
        if (v.length) throw new Error(`ext_proc protocol violations:\n  ${v.join('\n  ')}`);
      },
      stop: () => pair.stop(child),
    };
  }
}
