/**
 * Drives a Session without sockets, for engine tests: a fake EngineContext (no PKI unless
 * given), a recorder of everything the Session queued per peer, and hand-built TLS bytes.
 */
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import { Session, type Peer } from '../../../internal/engine/session';
import type { EngineContext } from '../../../internal/engine/context';
import type { Decision } from '../../../internal/engine/decision';
import type { Config, RuleSettings } from '../../../internal/config/types';
import { defaultConfig } from '../../../internal/config/defaults';
import { addressPolicy } from '../../../internal/engine/destination';

export interface Driven {
  session: Session;
  decisions: Decision[];
  /** Every byte queued for each peer, in order, and whether a FIN followed. */
  out: Record<Peer, Buffer[]>;
  ended: Record<Peer, boolean>;
  /** Resolves on the Session's close (keeps the event loop alive meanwhile: the Session's own timer is unref'd); rejects after 5 s. */
  closed: Promise<{ reset: boolean }>;
  bytes(to: Peer): Buffer;
}

export function drive(
  settings: Partial<RuleSettings>,
  limits: Partial<Config['limits']> = {},
  ctxOver: Partial<EngineContext> = {},
  destination: { host?: string; address?: string; port?: number } = { host: 'srv.test', port: 443 },
): Driven {
  const base = defaultConfig();
  const decisions: Decision[] = [];
  const ctx: EngineContext = {
    limits: { ...base.limits, ...limits },
    policy: () => ({ name: 'test', settings: { ...base.defaults, action: 'inspect', ...settings } }),
    destinations: addressPolicy({ allow: ['127.0.0.0/8', '::1/128'], deny: [] }),
    resolve: async (host) => (host.endsWith('.test') || host === 'localhost' ? ['127.0.0.1'] : Promise.reject(new Error(`${host}: not resolvable in this test`))),
    isOwnListener: () => false,
    upstreamContext: () => tls.createSecureContext({}),
    leafContext: () => Promise.reject(new Error('no interception CA in this test')),
    identities: new Map(),
    anchors: [],
    workloadAnchors: [],
    revocation: null,
    decided: (d) => decisions.push(d),
    report: () => undefined,
    now: () => new Date(),
    ...ctxOver,
  };
  const session = new Session(ctx, { connectionId: 'test', destination });
  const out: Record<Peer, Buffer[]> = { workload: [], server: [] };
  const ended: Record<Peer, boolean> = { workload: false, server: false };
  const drain = (to: Peer): void => {
    const { data, end } = session.take(to);
    if (data.length) out[to].push(Buffer.from(data));
    if (end) ended[to] = true;
  };
  session.on('output', drain);
  let keepAlive: NodeJS.Timeout | undefined;
  const closed = new Promise<{ reset: boolean }>((resolve, reject) => {
    session.on('close', (c: { reset: boolean }) => {
      clearTimeout(keepAlive);
      resolve(c);
    });
    keepAlive = setTimeout(() => reject(new Error('session not closed within 5 s')), 5000);
  });
  closed.catch(() => undefined);
  if (session.state === 'Closed') clearTimeout(keepAlive);
  return { session, decisions, out, ended, closed, bytes: (to) => Buffer.concat(out[to]) };
}

/** The ClientHello record(s) a Node TLS client sends first. */
export function nodeClientHello(opts: tls.ConnectionOptions = {}): Promise<Buffer> {
  return new Promise((resolve) => {
    const wire = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        resolve(Buffer.from(chunk));
        cb();
        setImmediate(() => sock.destroy());
      },
    });
    const sock = tls.connect({ socket: wire, servername: 'srv.test', ...opts });
    sock.on('error', () => undefined);
  });
}

/** A plaintext record. */
export function record(type: number, fragment: Buffer, version = 0x0303): Buffer {
  const h = Buffer.from([type, version >> 8, version & 0xff, fragment.length >> 8, fragment.length & 0xff]);
  return Buffer.concat([h, fragment]);
}

/** A handshake message (header + body). `length` overrides the header's length field. */
export function handshake(type: number, body: Buffer, length = body.length): Buffer {
  return Buffer.concat([Buffer.from([type, (length >> 16) & 0xff, (length >> 8) & 0xff, length & 0xff]), body]);
}

/** A ServerHello body: version, 32-byte random, empty session id, suite, null compression, extensions. */
export function serverHelloBody(opts: { version?: number; suite?: number; supportedVersion?: number; random?: Buffer } = {}): Buffer {
  const exts: Buffer[] = [];
  if (opts.supportedVersion !== undefined) exts.push(Buffer.from([0, 43, 0, 2, opts.supportedVersion >> 8, opts.supportedVersion & 0xff]));
  const extBytes = Buffer.concat(exts);
  const v = opts.version ?? 0x0303;
  const suite = opts.suite ?? 0xc02f;
  return Buffer.concat([
    Buffer.from([v >> 8, v & 0xff]),
    opts.random ?? Buffer.alloc(32, 7),
    Buffer.from([0, suite >> 8, suite & 0xff, 0]),
    exts.length ? Buffer.concat([Buffer.from([extBytes.length >> 8, extBytes.length & 0xff]), extBytes]) : Buffer.alloc(0),
  ]);
}

/** Feeds `bytes` from `from` in chunks of `size` (the last one may be shorter). */
export async function feedChunks(session: Session, from: Peer, bytes: Buffer, size: number): Promise<void> {
  for (let off = 0; off < bytes.length; off += size) await session.feed(from, bytes.subarray(off, off + size));
}
