/**
 * The Session: the seam between the front doors (standalone listener, Envoy network
 * ext_proc) and the engine (DESIGN.md "Shape: one engine, two front doors").
 *
 * It knows nothing about sockets or gRPC. A front door:
 * - feeds byte chunks from each peer with `feed(from, chunk, end)`. In `lockstep` mode (Envoy's
 *   strict per-direction request/response) the returned promise settles once the chunk has been
 *   consumed and everything it caused is queued — the engine is idle, waiting for a peer; in
 *   streaming mode (the standalone listener) it settles as soon as the output queue has room;
 * - drains the per-peer output queues with `take(to)` when `'output'` fires (bytes for the server
 *   and bytes for the workload are queued separately: behind Envoy, bytes of direction X may only
 *   leave in the answer to a request of direction X);
 * - closes each connection on `'close'` ({reset} says RST instead of FIN), reports a peer's reset
 *   with `peerReset(peer)` and its own loss of the connections with `destroy()`;
 * - receives exactly one Decision per connection: `'decision'` (and `ctx.decided`) when the
 *   verdict is made, and the complete record (`ctx.report`, with how each side ended) at close.
 *
 * States and transitions (the whole table is TRANSITIONS below):
 *
 *   AwaitClientHello ──▶ Routing ──▶ Connecting ──▶ Intercepting ──▶ Closed
 *          │                │           │  │ └───▶ Passthrough ───▶ Closed
 *          │                │           │  └─────▶ Inspecting ────▶ Passthrough (allowed) ─▶ Closed
 *          │                │           │             └──▶ Connecting (TLS 1.3, tls13: intercept: new upstream)
 *          └────────────────┴───────────┴────────────────────────▶ Closed   (deny, not TLS, timeout, error)
 *
 * Routing binds the rule to the destination that is actually dialled (DESIGN.md "Egress policy"):
 * the server_name must name the host the front door dials when that is a name; a name is
 * resolved once and exactly that address is checked against the destination policy and dialled.
 * Intercepting covers the intercept flow's own states (intercept.ts); Inspecting covers
 * inspect's (inspect.ts). In Passthrough the bytes are relayed unchanged and unread.
 */
import { EventEmitter } from 'node:events';
import { buildAlert, AlertDescription } from '../tls/alert';
import type { ClientHello } from '../tls/handshake';
import type { RuleSettings } from '../config/types';
import { ClientHelloCollector } from './client-hello';
import type { EngineContext } from './context';
import type { Decision, StreamEnd } from './decision';
import { addressRefusal, hostNameProblem, isIpLiteral, normalizeHostName, canonicalAddress } from './destination';
import { Intercept, type InterceptHost } from './intercept';
import { Inspect, type InspectHost } from './inspect';
import { Reason, type ReasonCode } from './reasons';
import { alertFor } from './alerts';
import { errorText } from './errors';
import type { Peer } from './types';

export type { Peer } from './types';

export type SessionState = 'AwaitClientHello' | 'Routing' | 'Connecting' | 'Intercepting' | 'Inspecting' | 'Passthrough' | 'Closed';

const TRANSITIONS: Record<SessionState, readonly SessionState[]> = {
  AwaitClientHello: ['Routing', 'Closed'],
  Routing: ['Connecting', 'Closed'],
  Connecting: ['Intercepting', 'Inspecting', 'Passthrough', 'Closed'],
  Intercepting: ['Closed'],
  Inspecting: ['Passthrough', 'Connecting', 'Closed'],
  Passthrough: ['Closed'],
  Closed: [],
};

/** Where the upstream connection goes: the address to dial (after the one resolution) and the name it was reached by. */
export interface UpstreamTarget {
  address: string;
  port: number;
  /** The host name the front door was asked for, when it was a name. */
  host?: string;
}

export interface SessionInit {
  connectionId: string;
  source?: Decision['source'];
  /** What the front door knows of the destination: CONNECT host, original destination address/port. */
  destination: { host?: string; address?: string; port?: number };
  /** Envoy's strict per-direction lockstep: `feed()` settles only once the engine is idle (see the module comment). */
  lockstep?: boolean;
  /**
   * Opens the connection to the server at exactly `target.address` once the action needs it (the
   * standalone front door dials TCP here; behind Envoy the upstream connection already exists).
   * Rejects with an Error whose message is reported.
   */
  openUpstream?: (target: UpstreamTarget) => Promise<void>;
  /**
   * Drops the current upstream connection (no further bytes or end-of-stream from it may be
   * fed) and opens a new one: inspect's switch to intercept when the server chose TLS 1.3
   * (`tls13: intercept`). Absent when the front door cannot (behind Envoy the upstream
   * connection is Envoy's); such a switch is then denied (`tls13_not_inspectable`).
   */
  reopenUpstream?: (target: UpstreamTarget) => Promise<void>;
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
  private readonly ends: Record<Peer, StreamEnd | null> = { workload: null, server: null };
  private readonly received: Record<Peer, number> = { workload: 0, server: 0 };
  private intercept: Intercept | null = null;
  private inspect: Inspect | null = null;
  /** Where the upstream connection goes (known once routed). */
  private target: UpstreamTarget | null = null;
  /** Workload bytes that arrive while the upstream is being opened. */
  private early: Buffer[] = [];
  private earlyEnd = false;
  private timer: NodeJS.Timeout | null;
  private helloTimer: NodeJS.Timeout | null;
  private helloSeen: ClientHello | null = null;
  private routedSettings: RuleSettings | null = null;
  private certName = '';
  private upstreamSni: string | null = null;
  private roomWaiters: (() => void)[] = [];
  /** Asynchronous routing steps in progress (resolution, dialling): not idle while > 0. */
  private pendingSteps = 0;
  private idleWaiters: (() => void)[] = [];
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
    this.helloTimer = setTimeout(() => this.onHelloTimeout(), Math.min(ctx.limits.requestTimeoutMs, ctx.limits.handshakeTimeoutMs));
    this.helloTimer.unref?.();
    ctx.activeConnections?.inc();
  }

  // ───────────────────────────── front-door API ─────────────────────────────

  /**
   * Bytes from `from` (the workload or the server); `end` marks its end-of-stream.
   * Never rejects: failures become a decision and a close.
   */
  async feed(from: Peer, chunk: Buffer, end = false): Promise<void> {
    try {
      this.received[from] += chunk.length;
      if (from === 'workload') this.fromWorkload(chunk, end);
      else this.fromServer(chunk, end);
      if (this.init.lockstep) await this.whenIdle();
      const to: Peer = from === 'workload' ? 'server' : 'workload';
      while (this.state !== 'Closed' && this.out[to].bytes > QUEUE_HIGH_WATER) {
        await new Promise<void>((r) => this.roomWaiters.push(r));
      }
    } catch (err) {
      this.fail(Reason.internalError, errorText(err));
    }
  }

  /**
   * Updates what the front door knows of the destination before the ClientHello is routed (Envoy
   * 1.40 sends it in the first request). `address` and `port` route the connection; `sni` (what
   * Envoy's tls_inspector read) is only reported until the ClientHello's own server_name replaces
   * it. Ignored once routing has begun.
   */
  setDestination(dest: { address?: string; port?: number; sni?: string }): void {
    if (this.state !== 'AwaitClientHello') return;
    if (dest.address !== undefined) this.init.destination.address = dest.address;
    if (dest.port !== undefined) this.init.destination.port = dest.port;
    this.partial.destination = { ...this.partial.destination, ...dest };
  }

  /** Adds what the front door learnt of the source (address, port, pod) before the decision; ignored after it. */
  setSource(src: Decision['source']): void {
    if (this.decision) return;
    this.partial.source = { ...this.partial.source, ...src };
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

  /** The front door lost its connections (process shutdown, its own error). */
  destroy(detail = 'connection closed by front door'): void {
    if (this.state === 'Closed') return;
    this.fail(Reason.peerClosed, detail);
  }

  /** `peer` reset its TCP connection: recorded, and mirrored with a reset of the other side. */
  peerReset(peer: Peer, detail: string): void {
    if (this.state === 'Closed') return;
    this.peerEnded(peer, 'reset');
    if (!this.decision) this.fail(Reason.peerClosed, detail);
    else this.close(true);
  }

  get lockstep(): boolean {
    return this.init.lockstep === true;
  }

  /** The engine will produce nothing more for this connection without new input. */
  get idle(): boolean {
    return this.state === 'Closed' || (this.pendingSteps === 0 && (this.intercept?.idle ?? true));
  }

  whenIdle(): Promise<void> {
    if (this.idle) return Promise.resolve();
    const wait = new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    void this.intercept?.whenIdle().then(() => this.checkIdle());
    return wait;
  }

  // ───────────────────────────── FlowHost ─────────────────────────────

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

  peerEnded(peer: Peer, end: StreamEnd): void {
    if (this.ends[peer] === null) this.ends[peer] = end;
  }

  /** Make the connection's one verdict (later calls are ignored). */
  decide(fields: Pick<Decision, 'outcome' | 'reason'> & Partial<Decision>): void {
    if (this.decision) return;
    this.clearTimers(fields.outcome === 'allow');
    const d: Decision = {
      time: new Date().toISOString(),
      connectionId: this.init.connectionId,
      source: this.partial.source ?? {},
      destination: this.partial.destination ?? {},
      action: this.partial.action ?? 'none',
      rule: this.partial.rule ?? null,
      ...this.partial,
      ...fields,
      handshakeMs: round(performance.now() - this.startedAt),
    } as Decision;
    this.decision = d;
    try {
      this.ctx.decided?.(d);
    } finally {
      this.emit('decision', d);
    }
  }

  /** Close both sides: gracefully (FIN after queued output) or with a reset. Reports the complete record. */
  close(reset: boolean): void {
    if (this.state === 'Closed') return;
    this.transition('Closed');
    this.ctx.activeConnections?.dec();
    this.clearTimers(true);
    if (!reset) {
      this.endTo('workload');
      this.endTo('server');
    }
    this.intercept?.dispose();
    this.inspect?.dispose();
    this.early = [];
    for (const w of this.roomWaiters) w();
    this.roomWaiters = [];
    this.checkIdle();
    const d = this.decision;
    if (d) {
      d.ends = { workload: this.ends.workload ?? 'proxy', server: this.target || this.ends.server ? (this.ends.server ?? 'proxy') : null };
      d.bytes = { fromWorkload: this.received.workload, fromServer: this.received.server };
      d.durationMs = round(performance.now() - this.startedAt);
      try {
        this.ctx.report(d);
      } catch {
        // Reporting must never break the close.
      }
    }
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

  private clearTimers(handshakeToo: boolean): void {
    if (this.helloTimer) clearTimeout(this.helloTimer);
    this.helloTimer = null;
    if (handshakeToo && this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private fromWorkload(chunk: Buffer, end: boolean): void {
    switch (this.state) {
      case 'AwaitClientHello': {
        if (chunk.length) {
          const step = this.hello.push(chunk);
          if (step.state === 'error') {
            this.deny(step.reason, step.detail, step.alert ?? alertFor(step.reason));
            return;
          }
          if (step.state === 'done') {
            if (this.helloTimer) clearTimeout(this.helloTimer);
            this.helloTimer = null;
            this.route(step.hello);
            if (end) this.fromWorkload(Buffer.alloc(0), true);
            return;
          }
        }
        if (end) {
          this.peerEnded('workload', 'truncated');
          this.deny(Reason.peerClosed, 'workload closed before sending a complete ClientHello', null);
        }
        return;
      }
      case 'Routing':
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
        if (end) this.relayedEnd('workload');
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
        if (end) this.relayedEnd('server');
        return;
      case 'AwaitClientHello':
      case 'Routing':
      case 'Connecting':
        // A server that talks first is not a TLS server; its bytes are not forwarded.
        if (chunk.length) this.deny(Reason.upstreamHandshakeFailed, 'server sent data before the ClientHello', AlertDescription.handshake_failure);
        else if (end) this.deny(Reason.upstreamConnectFailed, 'server closed the connection before the handshake', AlertDescription.handshake_failure);
        return;
      case 'Closed':
        return;
    }
  }

  /** A FIN on a relayed (not terminated) stream passes as a FIN; the TLS close inside it was passed through unread. */
  private relayedEnd(peer: Peer): void {
    this.peerEnded(peer, 'fin');
    this.endTo(peer === 'workload' ? 'server' : 'workload');
    if (this.finSent.workload && this.finSent.server) this.close(false);
  }

  /** Refused before any rule applied: action `none`. */
  private refuse(reason: ReasonCode, detail: string): void {
    this.partial.action = 'none';
    this.partial.rule = null;
    this.deny(reason, detail, alertFor(reason));
  }

  private route(hello: ClientHello): void {
    this.transition('Routing');
    this.helloSeen = hello;
    const dest = this.init.destination;
    // server_name hygiene (RFC 6066 §3): an IP literal is no host name — treated as absent.
    const rawSni = hello.sni;
    const sniIsIp = rawSni !== null && isIpLiteral(rawSni);
    const sni = rawSni !== null && !sniIsIp ? normalizeHostName(rawSni) : null;
    this.partial.destination = { ...this.partial.destination, sni: rawSni ?? undefined };
    this.partial.tls = { alpn: null };
    if (sni !== null) {
      const problem = hostNameProblem(sni);
      if (problem) return this.refuse(Reason.invalidSni, problem);
    }
    const hostIsName = dest.host !== undefined && !isIpLiteral(dest.host);
    const host = hostIsName ? normalizeHostName(dest.host!) : null;
    if (host !== null && sni !== null && host !== sni) {
      return this.refuse(Reason.sniMismatch, `server_name "${sni}" does not name the CONNECT host "${host}"`);
    }
    const port = dest.port;
    if (!port) return this.refuse(Reason.upstreamConnectFailed, 'no destination port known to the front door');
    // The name the rule and the certificate check use, and what is dialled.
    const name = sni ?? host;
    const literal = dest.address ?? (dest.host !== undefined && !hostIsName ? dest.host : undefined);
    if (!literal && !name) return this.refuse(Reason.missingSni, 'no SNI and no destination known to the front door');
    this.upstreamSni = sni;
    this.certName = name ?? literal!;
    this.pendingSteps++;
    const addresses = literal ? Promise.resolve([literal]) : this.ctx.resolve(name!);
    addresses
      .then(
        (list) => this.routeTo(hello, name, list, literal !== undefined, sniIsIp),
        (err) => this.deny(Reason.upstreamConnectFailed, `${name}: ${errorText(err)}`, AlertDescription.handshake_failure),
      )
      .catch((err) => this.fail(Reason.internalError, errorText(err)))
      .finally(() => this.stepDone());
  }

  private async routeTo(hello: ClientHello, name: string | null, addresses: string[], dialledByAddress: boolean, sniIsIp: boolean): Promise<void> {
    if (this.state !== 'Routing') return;
    const port = this.init.destination.port!;
    const address = addresses[0];
    if (!address) return this.deny(Reason.upstreamConnectFailed, `${name}: no address`, AlertDescription.handshake_failure);
    this.partial.destination = { ...this.partial.destination, address };
    if (this.ctx.isOwnListener(address, port)) return this.refuse(Reason.forwardingLoop, `${address}:${port} is this proxy's own listener`);
    const { name: ruleName, settings } = this.ctx.policy({ sni: name, port, address });
    this.routedSettings = settings;
    this.partial.rule = ruleName;
    this.partial.action = settings.action;
    if (settings.action === 'deny') return this.deny(Reason.policyDeny, `rule ${ruleName} denies this destination`, AlertDescription.access_denied);
    const refusal = addressRefusal(this.ctx.destinations, address);
    if (refusal) return this.deny(Reason.destinationNotAllowed, refusal, AlertDescription.access_denied);
    // Passthrough and inspect forward the workload's ClientHello as it is (only intercept writes
    // its own): an IP literal in it, which RFC 6066 §3 forbids, would reach the server.
    if (sniIsIp && (settings.action === 'passthrough' || settings.action === 'inspect')) {
      return this.deny(Reason.invalidSni, `server_name is an IP literal (RFC 6066 §3), which ${settings.action} would forward`, AlertDescription.illegal_parameter);
    }
    if (settings.action === 'passthrough') {
      if (dialledByAddress && this.upstreamSni) {
        // Nothing checks a passthrough server's certificate: the address must be one the name resolves to.
        let named: string[];
        try {
          named = await this.ctx.resolve(this.upstreamSni);
        } catch (err) {
          return this.deny(Reason.sniMismatch, `server_name "${this.upstreamSni}" does not resolve (${errorText(err)}), so it cannot name ${address}`, AlertDescription.illegal_parameter);
        }
        if (this.state !== 'Routing') return;
        const want = canonicalAddress(address)?.address;
        if (!named.some((a) => canonicalAddress(a)?.address === want)) {
          return this.deny(Reason.sniMismatch, `${address} is not an address of server_name "${this.upstreamSni}" (${named.slice(0, 4).join(', ')})`, AlertDescription.illegal_parameter);
        }
      }
    }
    this.transition('Connecting');
    this.target = { address, port, ...(name ? { host: name } : {}) };
    if (this.init.openUpstream) {
      try {
        await this.init.openUpstream(this.target);
      } catch (err) {
        return this.deny(Reason.upstreamConnectFailed, `${name ?? address}:${port}: ${errorText(err)}`, AlertDescription.handshake_failure);
      }
    }
    this.connected(hello, settings);
  }

  private connected(hello: ClientHello, settings: RuleSettings): void {
    if (this.state !== 'Connecting') return;
    const held = [this.hello.received, ...this.early];
    this.early = [];
    if (settings.action === 'passthrough') {
      this.transition('Passthrough');
      this.decide({ outcome: 'allow', reason: Reason.passthrough, revocation: { status: 'not_checked' } });
      for (const c of held) this.send('server', c);
      if (this.earlyEnd) this.relayedEnd('workload');
      return;
    }
    if (settings.action === 'inspect') {
      this.transition('Inspecting');
      this.inspect = new Inspect(this, this.ctx, hello, this.certName, settings);
      this.inspect.start(Buffer.concat(held), this.earlyEnd);
      return;
    }
    this.startIntercept(hello, settings, Buffer.concat(held), this.earlyEnd);
  }

  private startIntercept(hello: ClientHello, settings: RuleSettings, workloadBytes: Buffer, ended: boolean): void {
    this.transition('Intercepting');
    this.intercept = new Intercept(this, this.ctx, hello, this.certName, settings, this.upstreamSni);
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
    this.pendingSteps++;
    reopen(target)
      .then(
        () => {
          if (this.state !== 'Connecting') return;
          const late = this.early;
          this.early = [];
          this.startIntercept(hello, settings, Buffer.concat([workloadBytes, ...late]), workloadEnded || this.earlyEnd);
        },
        (err) => this.deny(Reason.upstreamConnectFailed, `${target.address}:${target.port} (second connection, for intercept): ${errorText(err)}`, AlertDescription.handshake_failure),
      )
      .finally(() => this.stepDone());
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

  private onHelloTimeout(): void {
    this.helloTimer = null;
    if (this.state !== 'AwaitClientHello') return;
    this.refuse(Reason.requestTimeout, `no complete ClientHello within ${Math.min(this.ctx.limits.requestTimeoutMs, this.ctx.limits.handshakeTimeoutMs)} ms`);
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

  private stepDone(): void {
    this.pendingSteps--;
    this.checkIdle();
  }

  private checkIdle(): void {
    if (!this.idleWaiters.length) return;
    if (!this.idle) {
      void this.intercept?.whenIdle().then(() => this.checkIdle());
      return;
    }
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

export { errorText };
