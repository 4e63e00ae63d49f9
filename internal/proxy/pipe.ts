/**
 * Binds a Session to real sockets: the workload's socket (accepted by a listener) and the
 * server's socket (dialled at exactly the address the session routed to). The only place where
 * sockets, backpressure and FIN/RST meet the engine in the standalone front door.
 *
 * Ends are mirrored: a FIN is fed to the session as end-of-stream (the engine decides whether the
 * TLS stream inside ended cleanly), a reset is reported with `peerReset`, and the session's own
 * close is a FIN (`reset: false`, after the queued bytes) or a RST.
 */
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import { Session, type Peer, type UpstreamTarget } from '../engine/session';
import type { EngineContext } from '../engine/context';

/** Bytes a socket buffers before `write()` says wait: room for a turn's worth of TLS records (corked). */
export const SOCKET_HIGH_WATER = 256 * 1024;

/** How long a gracefully closed socket may stay half-open before it is destroyed, ms. */
const LINGER_MS = 2000;

export interface Destination {
  /** Host name or IP literal the workload asked for (CONNECT authority); undefined when the SNI will tell. */
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
  opts: { connectTimeoutMs: number; head?: Buffer; connectionId?: string; onClose?: () => void },
): Session {
  const sockets: Record<Peer, net.Socket | null> = { workload, server: null };
  const waitingDrain: Record<Peer, boolean> = { workload: false, server: false };
  let closing = false;

  const session = new Session(ctx, {
    connectionId: opts.connectionId ?? randomUUID(),
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

  function openServer(target: UpstreamTarget): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      // Exactly the address the session checked: no second lookup (DESIGN.md "Egress policy").
      // allowHalfOpen: a server's FIN ends only its direction; its last bytes still reach the workload.
      // (net.Socket passes Duplex options through; @types/node does not list this one.)
      const server = net.connect({ host: target.address, port: target.port, allowHalfOpen: true, writableHighWaterMark: SOCKET_HIGH_WATER } as net.NetConnectOpts);
      const timer = setTimeout(() => {
        server.destroy();
        reject(new Error(`connect timed out after ${opts.connectTimeoutMs} ms`));
      }, opts.connectTimeoutMs);
      server.once('connect', () => {
        clearTimeout(timer);
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
    sock.on('error', (err) => session.peerReset(peer, `${peer} socket: ${err.message}`));
    // A close without error follows a FIN each way, which the session has already seen.
    sock.on('close', (hadError) => {
      if (hadError && !closing) session.peerReset(peer, `${peer} connection reset`);
      maybeDone();
    });
  }

  /** Writes within one event-loop turn go out as one writev (OpenSSL emits one record at a time). */
  const corked: Record<Peer, boolean> = { workload: false, server: false };
  function flush(to: Peer): void {
    const sock = sockets[to];
    if (!sock || sock.destroyed || waitingDrain[to] || !session.hasOutput(to)) return;
    if (!corked[to]) {
      corked[to] = true;
      sock.cork();
      process.nextTick(() => {
        corked[to] = false;
        sock.uncork();
      });
    }
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

  let done = false;
  function maybeDone(): void {
    if (done) return;
    if (workload.destroyed && (!sockets.server || sockets.server.destroyed)) {
      done = true;
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
