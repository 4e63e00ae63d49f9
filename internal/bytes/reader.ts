/**
 * One bounded reader for every binary format ca-proxy parses (TLS records, handshake
 * messages, DER). A reader is a window [start, end) over a Buffer; it can never read past
 * `end`, and every read that would is a `ParseError` value thrown from this one place, so
 * callers catch exactly one error type (in the spirit of rustls-webpki's `untrusted::Reader`).
 * No copying: sub-readers and slices share the underlying buffer.
 */

/**
 * A malformed or truncated input. `code` is stable and machine-readable: `unexpected` is a
 * well-formed unit in a place the protocol forbids it (a TLS `unexpected_message`).
 */
export class ParseError extends Error {
  constructor(
    readonly code: 'truncated' | 'malformed' | 'too_large' | 'unsupported' | 'unexpected',
    message: string,
  ) {
    super(message);
    this.name = 'ParseError';
  }
}

export class BoundedReader {
  private pos: number;

  /** @param buf the bytes; @param start first readable offset; @param end one past the last readable offset */
  constructor(
    readonly buf: Buffer,
    start = 0,
    readonly end = buf.length,
  ) {
    if (start < 0 || end > buf.length || start > end) throw new ParseError('malformed', 'reader window out of range');
    this.pos = start;
  }

  /** Current absolute offset in `buf`. */
  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  get atEnd(): boolean {
    return this.pos >= this.end;
  }

  private need(n: number, what: string): void {
    if (n > this.end - this.pos) throw new ParseError('truncated', `${what}: need ${n} bytes, ${this.end - this.pos} left`);
  }

  u8(what = 'u8'): number {
    this.need(1, what);
    return this.buf[this.pos++]!;
  }

  u16(what = 'u16'): number {
    this.need(2, what);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  u24(what = 'u24'): number {
    this.need(3, what);
    const v = (this.buf[this.pos]! << 16) | (this.buf[this.pos + 1]! << 8) | this.buf[this.pos + 2]!;
    this.pos += 3;
    return v;
  }

  u32(what = 'u32'): number {
    this.need(4, what);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  /** The next `n` bytes as a view (no copy). */
  bytes(n: number, what = 'bytes'): Buffer {
    this.need(n, what);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  skip(n: number, what = 'skip'): void {
    this.need(n, what);
    this.pos += n;
  }

  /** A reader over the next `n` bytes; this reader moves past them. */
  sub(n: number, what = 'sub'): BoundedReader {
    this.need(n, what);
    const r = new BoundedReader(this.buf, this.pos, this.pos + n);
    this.pos += n;
    return r;
  }

  /** Length-prefixed vector (TLS `opaque x<0..2^k-1>`), `lenBytes` of 1, 2 or 3. */
  vector(lenBytes: 1 | 2 | 3, what = 'vector'): BoundedReader {
    const n = lenBytes === 1 ? this.u8(what) : lenBytes === 2 ? this.u16(what) : this.u24(what);
    return this.sub(n, what);
  }

  /** Look at the byte at `pos + i` without consuming; undefined past the end. */
  peek(i = 0): number | undefined {
    return this.pos + i < this.end ? this.buf[this.pos + i] : undefined;
  }

  /** Throw unless everything was consumed (trailing bytes are malformed input). */
  expectEnd(what: string): void {
    if (this.pos !== this.end) throw new ParseError('malformed', `${what}: ${this.end - this.pos} trailing bytes`);
  }
}
