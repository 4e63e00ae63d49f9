/**
 * The in-memory "wire" under one of the two OpenSSL sessions of intercept mode
 * (DESIGN.md "Why the proxy terminates TLS"): `tls.connect({socket: wire})` upstream and
 * `new tls.TLSSocket(wire, {isServer: true})` downstream.
 *
 * - Bytes arriving from the network side are handed to OpenSSL with `deliver()`.
 * - Bytes OpenSSL writes come out through `onOutput`; while the wire is `held`, they
 *   are kept back instead (used to keep a TLS 1.3 client flight — and so the proxy's
 *   certificate — from the server until its chain has been checked), then either
 *   `release()`d or `discard()`ed.
 * - Backpressure: OpenSSL's write callback is delayed while more than `highWaterMark`
 *   bytes are waiting to be taken by the front door, so a slow peer slows OpenSSL
 *   instead of growing a queue without bound.
 */
import { Duplex } from 'node:stream';

export class Wire extends Duplex {
  private heldChunks: Buffer[] = [];
  private held = false;
  private pendingCallbacks: (() => void)[] = [];
  /** Bytes handed to `onOutput` and not yet acknowledged with `drained()`. */
  private unacked = 0;
  private readRequested = true;

  /**
   * @param onOutput receives every chunk OpenSSL writes (not called while held)
   * @param highWaterMark bytes of un-drained output before OpenSSL's writes are paused
   */
  constructor(
    private readonly onOutput: (chunk: Buffer) => void,
    private readonly highWaterMark = 256 * 1024,
  ) {
    super({ allowHalfOpen: true });
  }

  /** Bytes from the network peer for OpenSSL. Returns false when OpenSSL is not keeping up. */
  deliver(chunk: Buffer): boolean {
    if (this.destroyed || this.readableEnded) return false;
    this.readRequested = false;
    return this.push(chunk);
  }

  /** True once OpenSSL has asked for more input since the last `deliver()`. */
  get consumed(): boolean {
    return this.readRequested || this.readableLength === 0;
  }

  /** The network peer half-closed. */
  deliverEnd(): void {
    if (!this.destroyed && !this.readableEnded) this.push(null);
  }

  hold(): void {
    this.held = true;
  }

  /** Stop holding and emit everything held back, in order. */
  release(): void {
    this.held = false;
    const chunks = this.heldChunks;
    this.heldChunks = [];
    for (const c of chunks) this.emitOutput(c);
  }

  /** The bytes held back so far (a view for inspection; still held). */
  heldBytes(): Buffer {
    return Buffer.concat(this.heldChunks);
  }

  /** Drop what was held back (the flight must never reach the peer) and keep holding. */
  discard(): void {
    this.heldChunks = [];
  }

  /** The front door has sent `n` bytes it was given; may resume OpenSSL's writes. */
  drained(n: number): void {
    this.unacked = Math.max(0, this.unacked - n);
    if (this.unacked <= this.highWaterMark) {
      const cbs = this.pendingCallbacks;
      this.pendingCallbacks = [];
      for (const cb of cbs) cb();
    }
  }

  private emitOutput(chunk: Buffer): void {
    this.unacked += chunk.length;
    this.onOutput(chunk);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.held) {
      this.heldChunks.push(chunk);
      cb();
      return;
    }
    this.emitOutput(chunk);
    if (this.unacked > this.highWaterMark) this.pendingCallbacks.push(cb);
    else cb();
  }

  override _read(): void {
    this.readRequested = true;
    this.emit('readRequested');
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
  }
}
