/**
 * The one incremental framer behind both TLS layers that carry length-prefixed units over a
 * byte stream: records (5-byte header, RFC 8446 §5.1) and handshake messages (4-byte header,
 * RFC 8446 §4). Units wholly inside a chunk are returned as views (no copy); a unit split
 * across chunks is copied once, when complete. The header is checked (by `bodyLength`, which
 * throws ParseError) as soon as its bytes are in, before any body is buffered.
 * After a ParseError the framer is failed: every later `push()` throws the same error.
 */
import { ParseError } from '../bytes/reader';

export class Framer {
  /** Pieces of the partial unit, in order (views into earlier chunks). */
  private parts: Buffer[] = [];
  private partsLen = 0;
  /** Total size (header + body) of the partial unit once its header is known, else -1. */
  private need = -1;
  private failed: ParseError | null = null;
  private readonly scratch: Buffer;

  /**
   * @param headerBytes size of the fixed header
   * @param bodyLength reads and checks the header at `buf[off..off+headerBytes)`, returns the body length
   */
  constructor(
    private readonly headerBytes: number,
    private readonly bodyLength: (buf: Buffer, off: number) => number,
  ) {
    this.scratch = Buffer.alloc(headerBytes);
  }

  /** Bytes held for a unit that is not yet complete. */
  get buffered(): number {
    return this.partsLen;
  }

  /** Hands back the bytes of the incomplete unit and forgets them. */
  takePending(): Buffer {
    const out = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.partsLen);
    this.parts = [];
    this.partsLen = 0;
    this.need = -1;
    return out;
  }

  /** Feeds the next bytes; returns the raw bytes (header + body) of each unit completed, in order. */
  push(chunk: Buffer): Buffer[] {
    if (this.failed) throw this.failed;
    try {
      return this.pushInner(chunk);
    } catch (e) {
      if (e instanceof ParseError) this.failed = e;
      throw e;
    }
  }

  private pushInner(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    const H = this.headerBytes;
    let off = 0;

    if (this.partsLen > 0) {
      // Finish the unit left over from earlier chunks first.
      if (this.need < 0) {
        const take = Math.min(H - this.partsLen, chunk.length);
        this.append(chunk.subarray(0, take));
        off = take;
        if (this.partsLen < H) return out;
        this.learnHeader();
      }
      const take = Math.min(this.need - this.partsLen, chunk.length - off);
      if (take > 0) this.append(chunk.subarray(off, off + take));
      off += take;
      if (this.partsLen < this.need) return out;
      out.push(this.takePending());
    }

    // Fast path: whole units inside this chunk are returned as views.
    while (chunk.length - off >= H) {
      const total = H + this.bodyLength(chunk, off);
      if (chunk.length - off < total) break;
      out.push(chunk.subarray(off, off + total));
      off += total;
    }

    if (off < chunk.length) {
      this.append(chunk.subarray(off));
      if (this.partsLen >= H) this.learnHeader();
    }
    return out;
  }

  private append(piece: Buffer): void {
    this.parts.push(piece);
    this.partsLen += piece.length;
  }

  /** The partial unit has a whole header: check it and learn the unit's size. */
  private learnHeader(): void {
    let head = this.parts[0]!;
    if (head.length < this.headerBytes) {
      // The header itself was split across chunks: gather it into a scratch buffer
      // (the pieces stay as they are; the unit is joined once, when complete).
      let got = 0;
      for (const p of this.parts) {
        const n = Math.min(p.length, this.headerBytes - got);
        p.copy(this.scratch, got, 0, n);
        got += n;
        if (got === this.headerBytes) break;
      }
      head = this.scratch;
    }
    this.need = this.headerBytes + this.bodyLength(head, 0);
  }
}
