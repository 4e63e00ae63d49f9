/**
 * The Session: the seam between the front doors (standalone listener, Envoy network
 * ext_proc) and the engine (DESIGN.md "Shape: one engine, two front doors").
 *
 * It knows nothing about sockets or gRPC. A front door:
 * - feeds byte chunks from each peer with `feed(from, chunk, end)`; the returned promise
 *   settles once the chunk has been consumed and everything it caused is queued;
 * - drains the per-peer output queues with `take(to)` when `'output'` fires (bytes for
 *   the server and bytes for the workload are queued separately, because the ext_proc
 *   front door may only send bytes of direction X in the answer to a request of direction X);
 * - closes both connections on `'close'` ({reset} says RST instead of FIN);
 * - receives exactly one Decision per connection (`'decision'`, and `ctx.report`).
 *
 * States and transitions (the whole table):
 *
 *   AwaitClientHello ──▶ Connecting ──▶ Intercepting ──▶ Closed
 *          │                 │  │ └───▶ Passthrough ───▶ Closed
 *          │                 │  └─────▶ Inspecting ────▶ Passthrough (allowed) ─▶ Closed
 *          │                 │             └──▶ Connecting (TLS 1.3, tls13: intercept: new upstream)
 *          └─────────────────┴──────────────────────────▶ Closed   (deny, not TLS, timeout, error)
 *
 * Intercepting covers UpstreamHandshake → DownstreamHandshake → Relay (intercept.ts);
 * Inspecting covers AwaitServerHello → AwaitCertificate → Following (inspect.ts).
 * In Passthrough the bytes are relayed unchanged and unread: a front door may stop
 * streaming them through the engine (Envoy's `close_stream_to_ext_proc_server`).
 */
import { EventEmitter } from 'node:events';
import { buildAlert, AlertDescription } from '../tls/alert';
import { versionName } from '../tls/handshake';
import type { ClientHello } from '../tls/handshake';
import type { RuleSettings } from '../config/types';
import { ClientHelloCollector } from './client-hello';
import type { EngineContext } from './context';
import type { Decision } from './decision';
import { Intercept, type InterceptHost } from './intercept';
import { Inspect, type InspectHost } from './inspect';
import { Reason, type ReasonCode } from './reasons';
import { alertFor } from './alerts';

export type Peer = 'workload' | 'server';
export type SessionState = 'AwaitClientHello' | 'Connecting' | 'Intercepting' | 'Inspecting' | 'Passthrough' | 'Closed';

const TRANSITIONS: Record<SessionState, readonly SessionState[]> = {
  AwaitClientHello: ['Connecting', 'Closed'],
  Connecting: ['Intercepting', 'Inspecting', 'Passthrough', 'Closed'],
  Intercepting: ['Closed'],
  Inspecting: ['Passthrough', 'Connecting', 'Closed'],
  Passthrough: ['Closed'],
  Closed: [],
};

export interface SessionInit {
  connectionId: string;
  source?: Decision['source'];
  /** What the front door knows of the destination: CONNECT host, original destination address/port. */
  destination: { host?: string; address?: string; port?: number };
  /**
   * Opens the connection to the server once the action needs it (the standalone front
   * door dials TCP here; behind Envoy the upstream connection already exists).
   * Rejects with an Error whose message is reported.
   */
  openUpstream?: (target: { host: string; port: number }) => Promise<void>;
  /**
   * Drops the current upstream connection (no further bytes or end-of-stream from it may be
   * fed) and opens a new one: inspect's switch to intercept when the server chose TLS 1.3
   * (`tls13: intercept`). Absent when the front door cannot (behind Envoy the upstream
   * connection is Envoy's); such a switch is then denied (`tls13_not_inspectable`).
   */
  reopenUpstream?: (target: { host: string; port: number }) => Promise<void>;
}

interface OutQueue {
  chunks: Buffer[];
  bytes: number;
  /** Send FIN after the queued bytes. */
  end: boolean;
}

/** Output waiting above this many bytes makes `feed()` wait for the front door to take it. */
const QUEUE_HIGH_WATER = 256 * 1024;

export class Session extends EventEmitter implements InterceptHost, InspectHost {
  state: SessionState = 'AwaitClientHello';
  decision: Decision | null = null;
  readonly startedAt = performance.now();
  private readonly out: Record<Peer, OutQueue> = {
    workload: { chunks: [], bytes: 0, end: false },
    server: { chunks: [], bytes: 0, end: false },
  };
  private readonly hello: ClientHelloCollector;
  /** A FIN was queued towards each peer (stays set once the front door took it). */
  private readonly finSent: Record<Peer, boolean> = { workload: false, server: false };
  private intercept: Intercept | null = null;
  private inspect: Inspect | null = null;
  /** Where the upstream connection goes (known once routed). */
  private target: { host: string; port: number } | null = null;
  /** Workload bytes that arrive while the upstream is being opened. */
  private early: Buffer[] = [];
  private earlyEnd = false;
  private timer: NodeJS.Timeout | null;
  private helloSeen: ClientHello | null = null;
  private routedSettings: RuleSettings | null = null;
  private roomWaiters: (() => void)[] = [];
  readonly partial: Partial<Decision>;

  constructor(
    readonly ctx: EngineContext,
    readonly init: SessionInit,
  ) {
    super();
    this.hello = new ClientHelloCollector(ctx.limits.maxHandshakeMessageBytes);
    this.partial = {
      connectionId: init.connectionId,
      source: init.source ?? {},
      destination: { host: init.destination.host, address: init.destination.address, port: init.destination.port },
    };
    this.timer = setTimeout(() => this.onHandshakeTimeout(), ctx.limits.handshakeTimeoutMs);
    this.timer.unref?.();
    ctx.activeConnections?.inc();
  }

  // ───────────────────────────── front-door API ─────────────────────────────

  /**
   * Bytes from `from` (the workload or the server); `end` marks its end-of-stream.
   * Never rejects: failures become a decision and a close.
   */
  async feed(from: Peer, chunk: Buffer, end = false): Promise<void> {
    try {
      if (from === 'workload') this.fromWorkload(chunk, end);
      else this.fromServer(chunk, end);
      await this.settle(from === 'workload' ? 'server' : 'workload');
    } catch (err) {
      this.fail(Reason.internalError, errorText(err));
    }
  }

  /** Everything queued for `to`, and whether a FIN follows it. */
  take(to: Peer): { data: Buffer; end: boolean } {
    const q = this.out[to];
    const data = q.chunks.length === 1 ? q.chunks[0]! : Buffer.concat(q.chunks, q.bytes);
    q.chunks = [];
    q.bytes = 0;
    const end = q.end;
    q.end = false;
    // Acknowledge later, not here: the acknowledgement can let OpenSSL write more at once, and
    // that output must queue behind the bytes returned now, not overtake them in a nested take().
    if (data.length) queueMicrotask(() => this.intercept?.drained(to, data.length));
    if (this.roomWaiters.length) {
      const waiters = this.roomWaiters;
      this.roomWaiters = [];
      for (const w of waiters) w();
    }
    return { data, end };
  }

  hasOutput(to: Peer): boolean {
    return this.out[to].bytes > 0 || this.out[to].end;
  }

  /** The front door lost its connections (peer reset, process shutdown). */
  destroy(detail = 'connection closed by front door'): void {
    if (this.state === 'Closed') return;
    this.fail(Reason.peerClosed, detail);
  }

  // ───────────────────────────── InterceptHost ─────────────────────────────

  send(to: Peer, data: Buffer): void {
    if (data.length === 0 || this.finSent[to]) return;
    this.out[to].chunks.push(data);
    this.out[to].bytes += data.length;
    this.emit('output', to);
  }

  endTo(to: Peer): void {
    if (this.out[to].end || this.finSent[to]) return;
    this.out[to].end = true;
    this.finSent[to] = true;
    this.emit('output', to);
  }

  /** Emit the connection's one decision (later calls are ignored). */
  decide(fields: Pick<Decision, 'outcome' | 'reason'> & Partial<Decision>): void {
    if (this.decision) return;
    if (this.timer && fields.outcome === 'allow') {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const d: Decision = {
      time: new Date().toISOString(),
      connectionId: this.init.connectionId,
      source: this.partial.source ?? {},
      destination: this.partial.destination ?? {},
      action: this.partial.action ?? 'deny',
      rule: this.partial.rule ?? 'default',
      ...this.partial,
      ...fields,
      handshakeMs: round(performance.now() - this.startedAt),
    } as Decision;
    this.decision = d;
    try {
      this.ctx.report(d);
    } finally {
      this.emit('decision', d);
    }
  }

  /** Close both sides: gracefully (FIN after queued output) or with a reset. */
  close(reset: boolean): void {
    if (this.state === 'Closed') return;
    this.transition('Closed');
    this.ctx.activeConnections?.dec();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (!reset) {
      this.endTo('workload');
      this.endTo('server');
    }
    this.intercept?.dispose();
    this.inspect?.dispose();
    this.early = [];
    for (const w of this.roomWaiters) w();
    this.roomWaiters = [];
    this.emit('close', { reset });
  }

  /** Deny: an alert to the workload (when it still expects a plaintext handshake), then close. */
  deny(reason: ReasonCode, detail: string, alert: number | null, extra: Partial<Decision> = {}): void {
    if (this.state === 'Closed') return;
    if (alert !== null) this.send('workload', buildAlert(alert));
    this.decide({ outcome: 'deny', reason, detail, ...extra });
    this.close(false);
  }

  // ───────────────────────────── internals ─────────────────────────────

  private transition(to: SessionState): void {
    if (!TRANSITIONS[this.state].includes(to)) {
      throw new Error(`session ${this.init.connectionId}: illegal transition ${this.state} → ${to}`);
    }
    this.state = to;
  }

  private fromWorkload(chunk: Buffer, end: boolean): void {
    switch (this.state) {
      case 'AwaitClientHello': {
        if (chunk.length) {
          const step = this.hello.push(chunk);
          if (step.state === 'error') {
            this.deny(step.reason, step.detail, alertFor(step.reason));
            return;
          }
          if (step.state === 'done') {
            this.route(step.hello);
            if (end) this.fromWorkload(Buffer.alloc(0), true);
            return;
          }
        }
        if (end) this.deny(Reason.peerClosed, 'workload closed before sending a complete ClientHello', null);
        return;
      }
      case 'Connecting':
        if (chunk.length) this.early.push(chunk);
        if (end) this.earlyEnd = true;
        return;
      case 'Intercepting':
        this.intercept!.fromWorkload(chunk, end);
        return;
      case 'Inspecting':
        this.inspect!.fromWorkload(chunk, end);
        return;
      case 'Passthrough':
        this.send('server', chunk);
        if (end) this.endTo('server');
        this.closeIfBothEnded();
        return;
      case 'Closed':
        return;
    }
  }

  private fromServer(chunk: Buffer, end: boolean): void {
    switch (this.state) {
      case 'Intercepting':
        this.intercept!.fromServer(chunk, end);
        return;
      case 'Inspecting':
        this.inspect!.fromServer(chunk, end);
        return;
      case 'Passthrough':
        this.send('workload', chunk);
        if (end) this.endTo('workload');
        this.closeIfBothEnded();
        return;
      case 'AwaitClientHello':
      case 'Connecting':
        // A server that talks first is not a TLS server; its bytes are not forwarded.
        if (chunk.length) this.deny(Reason.upstreamHandshakeFailed, 'server sent data before the ClientHello', AlertDescription.handshake_failure);
        else if (end) this.deny(Reason.upstreamConnectFailed, 'server closed the connection before the handshake', AlertDescription.handshake_failure);
        return;
      case 'Closed':
        return;
    }
  }

  private route(hello: ClientHello): void {
    const sni = hello.sni ?? null;
    const port = this.init.destination.port;
    const { name, settings } = this.ctx.policy({ sni: sni ?? this.init.destination.host ?? null, port });
    this.helloSeen = hello;
    this.routedSettings = settings;
    this.partial.rule = name;
    this.partial.action = settings.action;
    this.partial.destination = { ...this.partial.destination, sni: sni ?? undefined };
    this.partial.tls = { alpn: null };
    // Dial what the front door was asked for (the CONNECT target, like Squid, Envoy and HAProxy);
    // only a front door that knows no target (the SNI listener) dials the SNI. The server's
    // certificate is checked against the SNI when there is one, else the target name.
    const dial = this.init.destination.host ?? this.init.destination.address ?? sni;
    const certName = sni ?? this.init.destination.host ?? this.init.destination.address;

    if (settings.action === 'deny') {
      this.deny(Reason.policyDeny, `rule ${name} denies this destination`, AlertDescription.access_denied);
      return;
    }
    if (!dial || !certName) {
      this.deny(Reason.missingSni, 'no SNI and no destination known to the front door', AlertDescription.unrecognized_name);
      return;
    }
    if (!port) {
      this.deny(Reason.upstreamConnectFailed, 'no destination port known to the front door', AlertDescription.handshake_failure);
      return;
    }
    this.transition('Connecting');
    this.target = { host: dial, port };
    const open = this.init.openUpstream ? this.init.openUpstream({ host: dial, port }) : Promise.resolve();
    open.then(
      () => this.connected(hello, certName, settings),
      (err) => this.deny(Reason.upstreamConnectFailed, `${dial}:${port}: ${errorText(err)}`, AlertDescription.handshake_failure),
    );
  }

  private connected(hello: ClientHello, host: string, settings: RuleSettings): void {
    if (this.state !== 'Connecting') return;
    const held = [this.hello.received, ...this.early];
    this.early = [];
    if (settings.action === 'passthrough') {
      this.transition('Passthrough');
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      this.decide({ outcome: 'allow', reason: Reason.passthrough, revocation: { status: 'not_checked' } });
      for (const c of held) this.send('server', c);
      if (this.earlyEnd) this.endTo('server');
      return;
    }
    if (settings.action === 'inspect') {
      this.transition('Inspecting');
      this.inspect = new Inspect(this, this.ctx, hello, host, settings);
      this.inspect.start(Buffer.concat(held), this.earlyEnd);
      return;
    }
    this.startIntercept(hello, host, settings, Buffer.concat(held), this.earlyEnd);
  }

  private startIntercept(hello: ClientHello, host: string, settings: RuleSettings, workloadBytes: Buffer, ended: boolean): void {
    this.transition('Intercepting');
    this.intercept = new Intercept(this, this.ctx, hello, host, settings);
    this.intercept.start(workloadBytes, ended);
  }

  // ───────────────────────────── InspectHost ─────────────────────────────

  /** Inspect allowed the connection: from here on bytes pass unchanged and unread. */
  relay(): void {
    if (this.state !== 'Inspecting') return;
    this.inspect = null;
    this.transition('Passthrough');
  }

  /** Inspect saw TLS 1.3 under `tls13: intercept`: a new upstream connection, then intercept with everything the workload sent. */
  switchToIntercept(workloadBytes: Buffer, workloadEnded: boolean): void {
    if (this.state !== 'Inspecting') return;
    const inspect = this.inspect!;
    this.inspect = null;
    const reopen = this.init.reopenUpstream;
    const target = this.target;
    if (!reopen || !target) {
      this.send('server', buildAlert(AlertDescription.protocol_version));
      this.deny(Reason.tls13NotInspectable, 'server chose TLS 1.3 and this front door cannot open the second upstream connection tls13: intercept needs', AlertDescription.protocol_version);
      return;
    }
    inspect.dispose();
    // Nothing queued for the first upstream connection may reach the second.
    this.out.server = { chunks: [], bytes: 0, end: false };
    this.partial.action = 'intercept';
    this.partial.tls = { alpn: null };
    this.transition('Connecting');
    const hello = this.helloSeen!;
    const settings = this.routedSettings!;
    reopen(target).then(
      () => {
        if (this.state !== 'Connecting') return;
        const late = this.early;
        this.early = [];
        this.startIntercept(hello, target.host, settings, Buffer.concat([workloadBytes, ...late]), workloadEnded || this.earlyEnd);
      },
      (err) => this.deny(Reason.upstreamConnectFailed, `${target.host}:${target.port} (second connection, for intercept): ${errorText(err)}`, AlertDescription.handshake_failure),
    );
  }

  private closeIfBothEnded(): void {
    // Not out[].end: take() hands that flag to the front door and clears it.
    if (this.finSent.workload && this.finSent.server) this.close(false);
  }

  /** Called by Intercept when both TLS sessions have finished. */
  finished(): void {
    this.close(false);
  }

  fail(reason: ReasonCode, detail: string): void {
    if (this.state === 'Closed') return;
    if (!this.decision) this.decide({ outcome: 'deny', reason, detail });
    this.close(true);
  }

  private onHandshakeTimeout(): void {
    this.timer = null;
    if (this.decision || this.state === 'Closed') return;
    if (this.inspect) return this.inspect.timeout(this.ctx.limits.handshakeTimeoutMs);
    const alert = this.intercept?.downstreamStarted ? null : AlertDescription.handshake_failure;
    if (alert !== null) this.send('workload', buildAlert(alert));
    this.decide({ outcome: 'deny', reason: Reason.handshakeTimeout, detail: `no decision within ${this.ctx.limits.handshakeTimeoutMs} ms (state ${this.state})` });
    this.close(true);
  }

  /**
   * Resolves once the last input has been consumed by OpenSSL and what it caused is queued
   * (two event-loop turns after the wire asked for more input), and once the front door has
   * room for output toward `to`.
   */
  private async settle(to: Peer): Promise<void> {
    await this.intercept?.consumed();
    await new Promise<void>((r) => setImmediate(r));
    await new Promise<void>((r) => setImmediate(r));
    while (this.state !== 'Closed' && this.out[to].bytes > QUEUE_HIGH_WATER) {
      await new Promise<void>((r) => this.roomWaiters.push(r));
    }
  }
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

export { versionName };
