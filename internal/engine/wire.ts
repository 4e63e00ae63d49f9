/**
 * The in-memory "wire" under one of the two OpenSSL sessions of intercept mode
 * (DESIGN.md "Why the proxy terminates TLS"): `tls.connect({socket: wire})` upstream and
 * `new tls.TLSSocket(wire, {isServer: true})` downstream. Node runs OpenSSL over it through its
 * JS stream wrapper, and everything OpenSSL does in response to `deliver()` — records read, events
 * emitted, records written — happens synchronously inside that call, except that the wrapper
 * confirms each write on the next event-loop turn (`setImmediate`) and only then hands OpenSSL's
 * next pending output to `_write`. The wire makes that observable instead of guessed:
 *
 * - Bytes from the network peer go to OpenSSL with `deliver()`; its end with `deliverEnd()`.
 * - Bytes OpenSSL writes come out through `onOutput`; while `held`, they are kept back instead
 *   (the proxy's client flight until the workload has answered for itself; the downstream's last
 *   flight until the upstream is done), then `release()`d or `discard()`ed.
 * - `busy` is true while OpenSSL may still produce output without new input: a write whose
 *   confirmation is pending, or input it has not read while it is reading. `'idle'` is emitted
 *   when that ends. (When OpenSSL stops reading because its reader applies backpressure, the wire
 *   is idle: nothing more comes until the peer's output is taken.)
 * - How the peer ended (`'peerEnd'`, 'clean' | 'truncated'): OpenSSL reports end-of-stream on a
 *   TLS close_notify and on a transport EOF alike; the wire tells them apart by whether OpenSSL's
 *   end came before the transport's end reached it (`watch()` hooks the TLS socket).
 * - Backpressure: OpenSSL's write confirmation is delayed while more than `highWaterMark` bytes
 *   are waiting to be taken by the front door (`drained()`), so a slow peer slows OpenSSL.
 */
import { Duplex } from 'node:stream';
import type tls from 'node:tls';

export type PeerEnd = 'clean' | 'truncated';

export class Wire extends Duplex {
  private heldChunks: Buffer[] = [];
  private held = false;
  private pendingCallbacks: (() => void)[] = [];
  /** Bytes handed to `onOutput` and not yet acknowledged with `drained()`. */
  private unacked = 0;
  /** Writes confirmed to OpenSSL whose follow-up (the wrapper's next-turn `finishWrite`) has not run yet. */
  private confirming = 0;
  private transportEnded = false;
  private peerEnded: PeerEnd | null = null;

  /**
   * @param onOutput receives every chunk OpenSSL writes (not called while held)
   * @param highWaterMark bytes of un-drained output before OpenSSL's writes are paused
   * @param trackIdle follow write confirmations for `busy`/`'idle'` (lockstep front doors only:
   *   it costs an event-loop callback per record written)
   */
  constructor(
    private readonly onOutput: (chunk: Buffer) => void,
    private readonly highWaterMark = 256 * 1024,
    private readonly trackIdle = true,
  ) {
    super({ allowHalfOpen: true });
    // Runs before Node's stream wrapper hands the EOF to OpenSSL (see `watch`).
    this.prependListener('end', () => {
      this.transportEnded = true;
    });
  }

  /**
   * Follows the TLS socket over this wire to learn how the peer ended its stream. Must be called
   * before the socket reads anything.
   */
  watch(socket: tls.TLSSocket): void {
    const push = socket.push.bind(socket);
    socket.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
      if (chunk === null && this.peerEnded === null) {
        // OpenSSL's end of stream. Before the transport's end reached it: a close_notify.
        this.peerEnded = this.transportEnded ? 'truncated' : 'clean';
        this.emit('peerEnd', this.peerEnded);
      }
      return push(chunk, encoding);
    };
  }

  /** How the peer ended its TLS stream, once it has. */
  get peerEnd(): PeerEnd | null {
    return this.peerEnded;
  }

  /** Bytes from the network peer for OpenSSL (processed before this returns, unless OpenSSL is not reading). */
  deliver(chunk: Buffer): void {
    if (this.destroyed || this.readableEnded || chunk.length === 0) return;
    this.push(chunk);
  }

  /** The network peer half-closed. */
  deliverEnd(): void {
    if (!this.destroyed && !this.readableEnded) this.push(null);
  }

  /** OpenSSL may still produce output without new input (see the module comment). */
  get busy(): boolean {
    if (this.destroyed) return false;
    return this.confirming > 0 || this.pendingCallbacks.length > 0 || (this.readableLength > 0 && !this.isPaused());
  }

  hold(): void {
    this.held = true;
  }

  get holding(): boolean {
    return this.held;
  }

  /** Stop holding and emit everything held back, in order. */
  release(): void {
    this.held = false;
    const chunks = this.heldChunks;
    this.heldChunks = [];
    for (const c of chunks) this.emitOutput(c);
  }

  /** The bytes held back so far (still held). */
  heldBytes(): Buffer {
    return Buffer.concat(this.heldChunks);
  }

  /** Drop what was held back (it must never reach the peer) and keep holding. */
  discard(): void {
    this.heldChunks = [];
  }

  /** The front door has sent `n` bytes it was given; may resume OpenSSL's writes. */
  drained(n: number): void {
    this.unacked = Math.max(0, this.unacked - n);
    if (this.unacked <= this.highWaterMark && this.pendingCallbacks.length) {
      const cbs = this.pendingCallbacks;
      this.pendingCallbacks = [];
      for (const cb of cbs) this.confirm(cb);
    }
  }

  private emitOutput(chunk: Buffer): void {
    this.unacked += chunk.length;
    this.onOutput(chunk);
  }

  /** Confirms a write to OpenSSL, and notes that its follow-up runs on the next turn. */
  private confirm(cb: (err?: Error | null) => void): void {
    if (!this.trackIdle) return cb();
    this.confirming++;
    cb();
    // Queued after the wrapper's own setImmediate (FIFO), so it runs once finishWrite has.
    setImmediate(() => {
      this.confirming--;
      if (!this.busy) this.emit('idle');
    });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.held) {
      this.heldChunks.push(chunk);
      this.confirm(cb);
      return;
    }
    this.emitOutput(chunk);
    if (this.unacked > this.highWaterMark) this.pendingCallbacks.push(cb);
    else this.confirm(cb);
  }

  override _read(): void {
    // Input is pushed by deliver(); OpenSSL asking for more means it has read what was there.
    if (!this.busy) this.emit('idle');
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.emit('outputEnd');
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const cbs = this.pendingCallbacks;
    this.pendingCallbacks = [];
    for (const c of cbs) c();
    this.heldChunks = [];
    cb(err);
    this.emit('idle');
  }
}
