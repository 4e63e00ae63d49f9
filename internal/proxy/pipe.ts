/**
 * Binds a Session to real sockets: the workload's socket (accepted by a listener) and the
 * server's socket (dialled when the session asks for it). The only place where sockets,
 * backpressure and FIN/RST meet the engine in the standalone front door.
 */
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import { Session, type Peer } from '../engine/session';
import type { EngineContext } from '../engine/context';

/** How long a gracefully closed socket may stay half-open before it is destroyed, ms. */
const LINGER_MS = 2000;

/**
 * Names under `localhost.` are loopback (RFC 6761 §6.3), whatever the resolver says — as curl
 * and browsers treat them; the demo servers are reached as `good.demo.localhost`.
 */
export function dialHost(host: string): string {
  return /(^|\.)localhost\.?$/i.test(host) ? '127.0.0.1' : host;
}

/** TCP ports this process listens on (both front doors register theirs), for loop detection. */
const ownPorts = new Set<number>();

export function registerOwnPort(port: number): () => void {
  ownPorts.add(port);
  return () => ownPorts.delete(port);
}

/**
 * Whether a dialled socket came back to one of this process's listeners: its peer port is one of
 * ours and its peer address is this host's side of the socket (or loopback). A CONNECT to the
 * proxy itself, or an SNI listener whose upstream port is its own, would otherwise multiply
 * connections until descriptors run out.
 */
function isOwnListener(sock: net.Socket): boolean {
  if (!sock.remotePort || !ownPorts.has(sock.remotePort)) return false;
  const loopback = (a?: string) => !!a && (/^127\./.test(a) || a === '::1' || /^::ffff:127\./.test(a));
  return sock.remoteAddress === sock.localAddress || loopback(sock.remoteAddress);
}

export interface Destination {
  /** Host name (CONNECT authority) or undefined when the SNI will tell. */
  host?: string;
  port: number;
}

/**
 * Serves one accepted connection.
 * @param head bytes already read from the workload (e.g. after an HTTP CONNECT request)
 * @returns the Session, for tests and accounting
 */
export function serveConnection(
  ctx: EngineContext,
  workload: net.Socket,
  dest: Destination,
  opts: { connectTimeoutMs: number; head?: Buffer; onClose?: () => void },
): Session {
  const sockets: Record<Peer, net.Socket | null> = { workload, server: null };
  const waitingDrain: Record<Peer, boolean> = { workload: false, server: false };
  let closing = false;

  const session = new Session(ctx, {
    connectionId: randomUUID(),
    source: { address: workload.remoteAddress, port: workload.remotePort },
    destination: { host: dest.host, address: net.isIP(dest.host ?? '') ? dest.host : undefined, port: dest.port },
    openUpstream: (target) => openServer(target),
    // inspect → intercept (TLS 1.3): the first connection is dropped unheard, a second one dialled.
    reopenUpstream: (target) => {
      const old = sockets.server;
      sockets.server = null;
      waitingDrain.server = false;
      if (old) {
        old.removeAllListeners('data').removeAllListeners('end').removeAllListeners('close');
        old.on('error', () => undefined);
        old.destroy();
      }
      return openServer(target);
    },
  });

  function openServer(target: { host: string; port: number }): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      // The obvious loop (a loopback name and one of our ports) is refused before dialling, so no
      // connection to ourselves is even opened; isOwnListener below catches the rest.
      const host = dialHost(target.host);
      if (ownPorts.has(target.port) && (/^127\./.test(host) || host === '::1')) {
        reject(new Error(`${target.host}:${target.port} is this proxy's own listener (forwarding loop)`));
        return;
      }
      // allowHalfOpen: a server's FIN ends only its direction; its last bytes still reach the workload.
      const server = net.connect({ host, port: target.port, allowHalfOpen: true });
      const timer = setTimeout(() => {
        server.destroy();
        reject(new Error(`connect timed out after ${opts.connectTimeoutMs} ms`));
      }, opts.connectTimeoutMs);
      server.once('connect', () => {
        clearTimeout(timer);
        if (isOwnListener(server)) {
          server.destroy();
          reject(new Error(`${target.host}:${target.port} is this proxy's own listener (forwarding loop)`));
          return;
        }
        session.partial.destination = { ...session.partial.destination, address: server.remoteAddress, port: server.remotePort };
        sockets.server = server;
        attach(server, 'server');
        flush('server');
        resolve();
      });
      server.once('error', (err) => {
        clearTimeout(timer);
        if (!sockets.server) reject(err);
      });
    });
  }

  function attach(sock: net.Socket, peer: Peer): void {
    sock.setNoDelay(true);
    sock.on('data', (chunk: Buffer) => {
      sock.pause();
      void session.feed(peer, chunk).then(() => {
        if (!sock.destroyed) sock.resume();
      });
    });
    sock.on('end', () => void session.feed(peer, Buffer.alloc(0), true));
    sock.on('error', (err) => session.destroy(`${peer} socket: ${err.message}`));
    // A close without error follows a FIN each way, which the session has already seen.
    sock.on('close', (hadError) => {
      if (hadError && !closing) session.destroy(`${peer} connection reset`);
      maybeDone();
    });
  }

  function flush(to: Peer): void {
    const sock = sockets[to];
    if (!sock || sock.destroyed || waitingDrain[to] || !session.hasOutput(to)) return;
    const { data, end } = session.take(to);
    const ok = data.length ? sock.write(data) : true;
    if (end) {
      sock.end();
    } else if (!ok) {
      waitingDrain[to] = true;
      sock.once('drain', () => {
        waitingDrain[to] = false;
        flush(to);
      });
    }
  }

  function maybeDone(): void {
    if (workload.destroyed && (!sockets.server || sockets.server.destroyed)) {
      // Both sockets are gone, however they went: the session ends too (it may not have seen both FINs).
      session.destroy('connections closed');
      opts.onClose?.();
    }
  }

  session.on('output', (to: Peer) => flush(to));
  session.on('close', ({ reset }: { reset: boolean }) => {
    closing = true;
    for (const peer of ['workload', 'server'] as const) {
      const sock = sockets[peer];
      if (!sock || sock.destroyed) continue;
      if (reset) {
        // Queued bytes (an alert) still go out before the reset.
        const { data } = session.take(peer);
        if (data.length) sock.write(data, () => sock.resetAndDestroy());
        else sock.resetAndDestroy();
      } else {
        flush(peer);
        // A peer that never answers our FIN does not keep the socket forever.
        setTimeout(() => sock.destroy(), LINGER_MS).unref();
      }
    }
  });

  attach(workload, 'workload');
  if (opts.head?.length) {
    workload.pause();
    void session.feed('workload', opts.head).then(() => {
      if (!workload.destroyed) workload.resume();
    });
  }
  return session;
}
