/**
 * One `NetworkExternalProcessor/Process` stream = one downstream connection behind Envoy = one
 * Session. The adapter between Envoy's network ext_proc protocol and the Session seam
 * (DESIGN.md "Envoy network ext_proc: the facts that matter"):
 *
 * - `read_data` (workload → server bytes) is fed as the workload's input; its answer carries what
 *   the session queued for the server. `write_data` (server → workload) is fed as the server's
 *   input; its answer carries what the session queued for the workload.
 * - Strict per-direction lockstep: requests are handled one at a time in arrival order, and each
 *   gets exactly one response carrying the same direction's field (set even when empty), sent
 *   once the session has consumed the request's bytes. Nothing is ever sent unsolicited: bytes for
 *   the other direction wait in the session's queue for the next request of that direction.
 * - Always `data_processing_status: MODIFIED` with the exact bytes to forward.
 * - Envoy applies `connection_status` before the data of the same response and drops that data.
 *   So a denial's alert leaves with `CONTINUE` (and `end_of_stream`), and the configured
 *   `CLOSE`/`CLOSE_RST` rides the first later answer that has no bytes to deliver. If no request
 *   comes to carry it within `closeBackstopMs`, the stream ends with an error status, which makes
 *   a fail-closed filter (`failure_mode_allow: false`) close the connection.
 * - The decision goes back once, as `dynamic_metadata` under the namespace `ca_proxy`.
 * - What the decision knows of the connection (connection-info.ts): the pod from the stream's
 *   initial metadata at once; addresses, port and SNI from the first request's `attributes`
 *   (Envoy 1.40), set on the Session before that request is fed, so the ClientHello is routed
 *   to the real destination port; without attributes, the headers, then `defaultPort`.
 * - Never an OK end while the connection is open: Envoy would stop processing and pass the rest
 *   unchecked (DESIGN.md). The stream ends OK only after a CLOSE/CLOSE_RST has been written,
 *   after Envoy ended its side, or after `close_stream_to_ext_proc_server`; every other end is
 *   an error status (`abort()`: ABORTED for a close no request carried, UNAVAILABLE at shutdown).
 * - `close_stream_to_ext_proc_server` (Envoy ≥ 1.39) once the decision needs no more bytes (see
 *   `closeStream`).
 * - Backpressure: while `maxQueuedRequests` requests wait, the call is paused (HTTP/2 flow
 *   control then stops Envoy); while a response cannot be written, no further request is handled.
 */
import * as grpc from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { Session, type Peer } from '../engine/session';
import type { EngineContext } from '../engine/context';
import type { Decision } from '../engine/decision';
import { Reason } from '../engine/reasons';
import { toStruct, type ConnectionStatus, type ProcessingRequest, type ProcessingResponse, type StructValue } from './protos';
import { connectionAttributes, hasAttributes, headerDestination, podIdentity } from './connection-info';

export type ProcessCall = grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>;

/** The dynamic metadata namespace ca-proxy writes (DESIGN.md). */
export const METADATA_NAMESPACE = 'ca_proxy';

export { DESTINATION_PORT_HEADER, DESTINATION_ADDRESS_HEADER } from './connection-info';

/**
 * When to set `close_stream_to_ext_proc_server` (Envoy ≥ 1.39; older Envoy ignores the field and
 * keeps streaming, which is harmless): `never`; `auto` — when the stream shows an Envoy that
 * honours it (its first request carried `attributes`, which only 1.40 sends); `always`.
 */
export type CloseStreamMode = 'never' | 'auto' | 'always';

export interface StreamOptions {
  /** How a denied connection is closed: FIN (`CLOSE`) or RST (`CLOSE_RST`). */
  closeMode: 'CLOSE' | 'CLOSE_RST';
  /** Destination port when the stream does not name one (the sidecar redirects port 443). */
  defaultPort: number;
  /** How long a pending close may wait for a request to carry it, ms. */
  closeBackstopMs: number;
  /** During the handshake, how long an answer to the server's flight waits for the session's downstream flight, ms (well under Envoy's 200 ms message_timeout). */
  handshakeWaitMs: number;
  /** Requests read ahead before the call is paused. */
  maxQueuedRequests: number;
  /**
   * `close_stream_to_ext_proc_server` once the decision needs no more bytes: a `passthrough`
   * allow, or an `inspect` allow (both directions past ChangeCipherSpec), with nothing queued
   * and no request waiting. Later bytes bypass ca-proxy; bytes Envoy already sent on the stream
   * are lost, so only peers that wait for this answer are safe: true for these points of a TLS
   * handshake, not for a client that sends 0-RTT data or uses TLS False Start (docs/extproc.md).
   */
  closeStream: CloseStreamMode;
  /** A stream ended with an error status (bad request, backstop); for logs. */
  onStreamError?: (detail: string) => void;
}

export const DEFAULT_STREAM_OPTIONS: StreamOptions = {
  closeMode: 'CLOSE',
  defaultPort: 443,
  closeBackstopMs: 10_000,
  handshakeWaitMs: 100,
  maxQueuedRequests: 16,
  closeStream: 'never',
};

type Direction = 'read_data' | 'write_data';

export class ProcessStream {
  readonly session: Session;
  private readonly queue: ProcessingRequest[] = [];
  private running = false;
  private ended = false;
  /** The direction whose answer is being prepared, and what has been taken for it so far. */
  private collecting: Peer | null = null;
  private collected: Buffer[] = [];
  private collectedEnd = false;
  /** Session output events seen, per peer (to tell when the session has gone quiet). */
  private outputs: Record<Peer, number> = { workload: 0, server: 0 };
  private pendingClose: ConnectionStatus | null = null;
  private closeSent = false;
  private backstop: NodeJS.Timeout | null = null;
  private metadataPending: Decision | null = null;
  private paused = false;
  /** The first request has been seen (its attributes applied). */
  private first = true;
  /** Envoy showed it honours close_stream_to_ext_proc_server. */
  private envoyClosesStream = false;
  private closeStreamSent = false;
  private aborted = false;
  /** The stream is over for ca-proxy (finished or aborted): the session's close needs no CLOSE. */
  private over = false;

  constructor(
    ctx: EngineContext,
    private readonly call: ProcessCall,
    private readonly opts: StreamOptions,
    onDone?: () => void,
  ) {
    const md = call.metadata;
    const fromHeaders = headerDestination(md);
    this.session = new Session(ctx, {
      connectionId: randomUUID(),
      source: podIdentity(md),
      // The fallback until the first request's attributes (if any) replace it.
      destination: { address: fromHeaders.address, port: fromHeaders.port ?? opts.defaultPort },
      // Each request is answered with what its bytes caused (Envoy's per-direction lockstep).
      lockstep: true,
      // Behind Envoy the upstream connection already exists (tcp_proxy to ORIGINAL_DST).
    });
    this.session.on('output', (to: Peer) => this.onOutput(to));
    this.session.on('decision', (d: Decision) => {
      this.metadataPending = d;
    });
    this.session.on('close', ({ reset }: { reset: boolean }) => this.onSessionClose(reset));

    call.on('data', (req: ProcessingRequest) => {
      this.queue.push(req);
      if (this.queue.length >= this.opts.maxQueuedRequests && !this.paused) {
        this.paused = true;
        call.pause();
      }
      void this.pump();
    });
    call.on('end', () => {
      // Envoy closed its side (the connection is gone, or it honoured close_stream): answer what
      // was asked, then finish.
      this.ended = true;
      void this.pump();
    });
    call.on('error', () => this.finish('ext_proc stream failed'));
    call.on('cancelled', () => this.finish('ext_proc stream cancelled (by Envoy, or at the shutdown deadline)'));
    call.on('close', () => {
      this.finish('ext_proc stream closed');
      onDone?.();
    });
  }

  // ───────────────────────────── request loop ─────────────────────────────

  private async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.queue.length && !this.call.destroyed) {
        const req = this.queue.shift()!;
        if (this.paused && this.queue.length < this.opts.maxQueuedRequests / 2) {
          this.paused = false;
          this.call.resume();
        }
        const err = checkRequest(req);
        if (err) {
          this.abort(grpc.status.INVALID_ARGUMENT, err);
          return;
        }
        if (this.first) this.applyFirstRequest(req);
        const ok = await this.handle(req.read_data ? 'read_data' : 'write_data', req);
        // After a CLOSE the stream has ended: later requests have nothing to answer.
        if (this.closeSent) {
          this.queue.length = 0;
          break;
        }
        if (!ok) await new Promise<void>((r) => this.call.once('drain', r));
      }
      if (this.ended && !this.queue.length && !this.call.destroyed && !this.closeSent) {
        // Envoy has stopped processing this connection: an OK end changes nothing.
        this.finish(this.closeStreamSent ? 'close_stream_to_ext_proc_server: the rest of the connection bypasses ca-proxy' : 'Envoy ended the ext_proc stream');
        this.call.end();
      }
    } finally {
      this.running = false;
    }
  }

  /**
   * The first request, before its bytes are fed: its connection attributes (Envoy 1.40) name the
   * source and the real destination; the Session has not been routed yet, so the ClientHello in
   * these bytes is routed to that port. Malformed values were dropped by connectionAttributes().
   */
  private applyFirstRequest(req: ProcessingRequest): void {
    this.first = false;
    this.envoyClosesStream = hasAttributes(req.attributes);
    const attrs = connectionAttributes(req.attributes);
    if (!attrs) return;
    if (attrs.source.address !== undefined) this.session.setSource(attrs.source);
    const d = attrs.destination;
    this.session.setDestination({
      ...(d.address !== undefined ? { address: d.address } : {}),
      ...(d.port !== undefined ? { port: d.port } : {}),
      ...(d.sni !== undefined ? { sni: d.sni } : {}),
    });
  }

  /** Feeds one request and writes its answer; returns false when the call wants a 'drain'. */
  private async handle(dir: Direction, req: ProcessingRequest): Promise<boolean> {
    const from: Peer = dir === 'read_data' ? 'workload' : 'server';
    const to: Peer = dir === 'read_data' ? 'server' : 'workload';
    const data = req[dir]!.data ?? Buffer.alloc(0);
    const eos = req[dir]!.end_of_stream === true;

    this.collecting = to;
    this.collected = [];
    this.collectedEnd = false;
    const before = { ...this.outputs };
    if (this.session.state !== 'Closed') {
      await this.session.feed(from, Buffer.isBuffer(data) ? data : Buffer.from(data), eos);
      await this.quiesce();
      if (this.waitsForDownstreamFlight(to, before)) await this.waitForOutput(to, this.opts.handshakeWaitMs);
    }
    this.takeInto(to);
    this.collecting = null;
    const bytes = this.collected.length === 1 ? this.collected[0]! : Buffer.concat(this.collected);
    const end = this.collectedEnd;
    this.collected = [];
    return this.respond(dir, bytes, end);
  }

  private respond(dir: Direction, bytes: Buffer, end: boolean): boolean {
    const res: ProcessingResponse = {
      [dir]: { data: bytes, end_of_stream: end },
      data_processing_status: 'MODIFIED',
      connection_status: 'CONTINUE',
    };
    // Envoy drops the data of a CLOSE response: close only in an answer with nothing to deliver.
    if (this.pendingClose && bytes.length === 0 && !this.closeSent) {
      res.connection_status = this.pendingClose;
      this.closeSent = true;
      this.clearBackstop();
    }
    if (this.metadataPending) {
      res.dynamic_metadata = decisionMetadata(this.metadataPending);
      this.metadataPending = null;
    }
    if (!this.closeSent && this.needsNoMoreBytes()) {
      res.close_stream_to_ext_proc_server = true;
      this.closeStreamSent = true;
    }
    const ok = this.call.write(res);
    if (this.closeSent) {
      // Written after the CLOSE response, so Envoy is already closing the connection when it
      // sees the OK end (HTTP/2 keeps the order of a stream's frames).
      this.call.end();
    }
    return ok;
  }

  /** The decision is an allow that relays the rest unread, and this answer carries everything owed. */
  private needsNoMoreBytes(): boolean {
    if (this.closeStreamSent || this.pendingClose) return false;
    if (this.opts.closeStream === 'never' || (this.opts.closeStream === 'auto' && !this.envoyClosesStream)) return false;
    const d = this.session.decision;
    if (!d || d.outcome !== 'allow' || this.session.state !== 'Passthrough') return false;
    // Not tls13_unchecked: that allow comes at the ServerHello, with the server's flight still arriving.
    if (d.reason !== Reason.passthrough && d.reason !== Reason.ok) return false;
    return !this.queue.length && !this.session.hasOutput('workload') && !this.session.hasOutput('server');
  }

  // ───────────────────────────── session events ─────────────────────────────

  private onOutput(to: Peer): void {
    this.outputs[to]++;
    // Bytes for the direction being answered are taken at once (so the session's high-water
    // wait never blocks on the answer it is producing); the other direction's bytes stay queued.
    if (to === this.collecting) this.takeInto(to);
  }

  private takeInto(to: Peer): void {
    if (!this.session.hasOutput(to)) return;
    const { data, end } = this.session.take(to);
    if (data.length) this.collected.push(data);
    if (end) this.collectedEnd = true;
  }

  private onSessionClose(reset: boolean): void {
    if (this.over) return; // destroyed because the stream ended: no request will come to carry a close
    const denied = this.session.decision?.outcome === 'deny';
    if (!reset && !denied) return; // both ends have passed through; Envoy closes the connection itself
    this.pendingClose = reset ? 'CLOSE_RST' : this.opts.closeMode;
    this.backstop = setTimeout(() => {
      this.backstop = null;
      if (!this.closeSent) this.abort(grpc.status.ABORTED, `ca-proxy closed the connection (${this.session.decision?.reason ?? 'closed'}) and no request arrived within ${this.opts.closeBackstopMs} ms to carry the close`);
    }, this.opts.closeBackstopMs);
    this.backstop.unref?.();
  }

  // ───────────────────────────── helpers ─────────────────────────────

  /** Lets the session finish what the last input set off: turns the event loop while output keeps coming. */
  private async quiesce(): Promise<void> {
    for (let turns = 0; turns < 50; turns++) {
      const seen = this.outputs.workload + this.outputs.server;
      await new Promise<void>((r) => setImmediate(r));
      if (this.outputs.workload + this.outputs.server === seen && turns >= 1) return;
    }
  }

  /**
   * True when the server's flight has just completed the upstream handshake (the session queued
   * ca-proxy's client flight for the server) but the workload's answer — ca-proxy's downstream
   * flight, produced asynchronously after a leaf is minted — is not there yet. That flight must
   * leave in the answer to this request: the server now waits for the workload, so no later
   * write request would come to carry it.
   */
  private waitsForDownstreamFlight(to: Peer, before: Record<Peer, number>): boolean {
    return to === 'workload' && !this.session.decision && this.session.state !== 'Closed' && this.collected.length === 0 && !this.session.hasOutput('workload') && this.outputs.server > before.server;
  }

  private waitForOutput(to: Peer, ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.session.off('output', onOut);
        this.session.off('close', done);
        // One more quiet period so the whole flight is taken, not its first record.
        void this.quiesce().then(resolve);
      };
      const onOut = (peer: Peer) => {
        if (peer === to) done();
      };
      const t = setTimeout(done, ms);
      this.session.on('output', onOut);
      this.session.once('close', done);
    });
  }

  /**
   * Ends the stream with an error status (never OK: the connection may still be open), which a
   * fail-closed filter turns into a closed connection. Used for protocol errors, the close
   * backstop and the shutdown deadline (UNAVAILABLE).
   */
  abort(code: grpc.status, details: string): void {
    if (this.aborted) return;
    this.aborted = true;
    this.over = true;
    this.opts.onStreamError?.(details);
    this.session.destroy(`ext_proc stream error: ${details}`);
    this.clearBackstop();
    this.queue.length = 0;
    if (!this.call.destroyed) this.call.emit('error', { code, details, metadata: new grpc.Metadata() });
  }

  private finish(detail: string): void {
    this.over = true;
    this.clearBackstop();
    this.queue.length = 0;
    this.session.destroy(detail);
  }

  private clearBackstop(): void {
    if (this.backstop) clearTimeout(this.backstop);
    this.backstop = null;
  }
}

/** Why a request breaks the protocol (exactly one of read_data/write_data), or null. */
export function checkRequest(req: ProcessingRequest): string | null {
  const r = !!req.read_data;
  const w = !!req.write_data;
  if (r && w) return 'ProcessingRequest sets both read_data and write_data; exactly one is allowed';
  if (!r && !w) return 'ProcessingRequest sets neither read_data nor write_data; exactly one is required';
  return null;
}

/** The decision as Envoy dynamic metadata: `{ca_proxy: {...}}`, flat keys for access-log formatters. */
export function decisionMetadata(d: Decision): StructValue {
  const flat: Record<string, unknown> = {
    connection_id: d.connectionId,
    outcome: d.outcome,
    reason: d.reason,
    action: d.action,
    rule: d.rule,
    sni: d.destination?.sni,
    tls_version: d.tls?.version,
    tls_cipher: d.tls?.cipher,
    alpn: d.tls?.alpn ?? undefined,
    revocation: d.revocation?.status,
    revocation_reason: d.revocation?.reason,
    server_certificate_sha256: d.serverCertificate?.sha256,
    server_certificate_serial: d.serverCertificate?.serial,
    identity: d.substitution?.identity ?? undefined,
    client_certificate_requested: d.substitution?.requested,
    handshake_ms: d.handshakeMs,
    detail: d.detail,
  };
  return toStruct({ [METADATA_NAMESPACE]: flat });
}

