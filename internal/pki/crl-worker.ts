/**
 * Reading CRL files without stalling the event loop.
 *
 * A file is read, unwrapped (DER, or PEM with one or many `X509 CRL` / `CRL` blocks), parsed
 * (crl.ts), hashed and, given trust certificates, signature-checked. Files of at least `inlineBelowBytes` (1 MiB) go to one shared
 * `worker_threads` worker, which sends each ParsedCrl back as its two ArrayBuffers in the
 * transferList (zero copy), so a 49 MB, million-entry CRL costs the main thread only the message
 * hop. Measured (bench/crl.ts, docs/benchmarks.md): the main-thread stall stays a few ms, where a
 * synchronous parse of the same file blocks for well over 50 ms. Smaller files parse inline: a
 * worker round trip costs more than parsing them.
 *
 * The worker is created on first use, `unref()`ed while idle (it never keeps a process alive) and
 * restarted after a crash; `closeCrlWorker()` ends it.
 */
import fs from 'node:fs';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { pemBlocks } from './pem';
import { X509Certificate, webcrypto } from 'node:crypto';
import { ParsedCrl, parseCrl, type CrlTransfer, type ParseCrlOptions } from './crl';
import { verifyCrlSignatureSync } from './crl-verify';
import { CrlError, errText, type CrlErrorCode } from './errors';

/**
 * One CRL of a file: parsed (and, when `trust` was given, signature-verified: `signer` is the
 * certificate whose key verified it), or the reason it could not be. `index` counts CRLs in the
 * file (0-based).
 */
export type CrlFileItem =
  | { ok: true; index: number; crl: ParsedCrl; signer?: X509Certificate }
  | { ok: false; index: number; code: CrlErrorCode; message: string };

export interface CrlFileResult {
  path: string;
  /** The file vanished or could not be read (e.g. mid atomic swap): it is simply not there. */
  readError?: string;
  items: CrlFileItem[];
}

export interface LoadCrlFileOptions extends ParseCrlOptions {
  /** Files smaller than this parse on the calling thread (default 1 MiB); `Infinity` = never use the worker. */
  inlineBelowBytes?: number;
  /**
   * Verify each CRL's signature with these issuer candidates on the parsing thread (crl.ts
   * `verifyCrlSignatureSync`). Doing it in the worker matters: node:crypto's async verify still
   * copies a 49 MB tbsCertList on the main thread (a 20–30 ms stall, measured).
   */
  trust?: readonly X509Certificate[];
}

const WORKER_TAG = 'ca-proxy-crl-worker';

/**
 * The DER CRLs inside a file's bytes: PEM blocks labelled `X509 CRL` (RFC 7468 §9) or `CRL`, in
 * order, other blocks (certificates in a bundle) ignored; otherwise the bytes themselves as DER.
 * @throws CrlError `malformed` for PEM text without a CRL block or with broken base64
 */
export function decodeCrlFile(buf: Buffer, source = '<bytes>'): Buffer[] {
  // DER always starts with a SEQUENCE tag; PEM text never does.
  if (buf.length > 0 && buf[0] === 0x30) return [buf];
  const text = buf.toString('latin1');
  if (!text.includes('-----BEGIN ')) throw new CrlError('malformed', `${source}: neither DER nor PEM`);
  let blocks;
  try {
    blocks = pemBlocks(text, undefined, source);
  } catch (e) {
    throw new CrlError('malformed', errText(e), { cause: e });
  }
  const crls = blocks.filter((b) => b.label === 'X509 CRL' || b.label === 'CRL').map((b) => b.der);
  if (crls.length === 0) throw new CrlError('malformed', `${source}: no PEM X509 CRL block`);
  return crls;
}

/** Parse (and verify, with `trust`) every CRL in `buf` synchronously, each item independently. */
export function parseCrlBytes(buf: Buffer, source: string, opts: ParseCrlOptions = {}, trust?: readonly X509Certificate[]): CrlFileItem[] {
  let ders: Buffer[];
  try {
    ders = decodeCrlFile(buf, source);
  } catch (e) {
    return [errorItem(0, e)];
  }
  return ders.map((der, index) => {
    try {
      const crl = parseCrl(der, opts);
      void crl.sha256; // hash here, on the parsing thread
      const signer = trust ? verifyCrlSignatureSync(crl, trust) : undefined;
      return { ok: true as const, index, crl, signer };
    } catch (e) {
      return errorItem(index, e);
    }
  });
}

/**
 * `parseCrlBytes` for the worker: the SHA-256 of each DER runs in the libuv thread pool
 * (WebCrypto digest) while this thread walks the entries, instead of after them.
 */
async function parseCrlBytesOverlapped(buf: Buffer, source: string, opts: ParseCrlOptions, trust?: readonly X509Certificate[]): Promise<CrlFileItem[]> {
  let ders: Buffer[];
  try {
    ders = decodeCrlFile(buf, source);
  } catch (e) {
    return [errorItem(0, e)];
  }
  const items: CrlFileItem[] = [];
  for (const [index, der] of ders.entries()) {
    const digest = webcrypto.subtle.digest('SHA-256', der);
    try {
      const crl = parseCrl(der, opts);
      const signer = trust ? verifyCrlSignatureSync(crl, trust) : undefined;
      crl.presetSha256(Buffer.from(await digest).toString('hex'));
      items.push({ ok: true, index, crl, signer });
    } catch (e) {
      await digest.catch(() => undefined);
      items.push(errorItem(index, e));
    }
  }
  return items;
}

function errorItem(index: number, e: unknown): CrlFileItem {
  if (e instanceof CrlError) return { ok: false, index, code: e.code, message: e.message };
  return { ok: false, index, code: 'malformed', message: errText(e) };
}

function readSync(file: string, maxBytes: number): { buf?: Buffer; readError?: string; tooLarge?: number } {
  try {
    const st = fs.statSync(file);
    if (st.size > maxBytes) return { tooLarge: st.size };
    return { buf: fs.readFileSync(file) };
  } catch (e) {
    return { readError: (e as NodeJS.ErrnoException).code ?? errText(e) };
  }
}

/** Read a CRL file, or say why it yields no bytes to parse. */
function readCrlFile(file: string, opts: ParseCrlOptions): Buffer | CrlFileResult {
  // A PEM file is ~4/3 of its DER: allow for that before refusing on size.
  const limit = Math.ceil(((opts.maxBytes ?? 256 * 1024 * 1024) * 4) / 3) + 4096;
  const r = readSync(file, limit);
  if (r.readError !== undefined) return { path: file, readError: r.readError, items: [] };
  if (r.tooLarge !== undefined) return { path: file, items: [{ ok: false, index: 0, code: 'too_large', message: `${file} is ${r.tooLarge} bytes` }] };
  return r.buf!;
}

function loadSync(file: string, opts: ParseCrlOptions, trust?: readonly X509Certificate[]): CrlFileResult {
  const r = readCrlFile(file, opts);
  return Buffer.isBuffer(r) ? { path: file, items: parseCrlBytes(r, file, opts, trust) } : r;
}

/**
 * Read and parse one CRL file, off the main thread when it is large.
 * Never rejects for bad input: problems are items with a code, or `readError`.
 */
export async function loadCrlFile(file: string, opts: LoadCrlFileOptions = {}): Promise<CrlFileResult> {
  const inlineBelow = opts.inlineBelowBytes ?? 1024 * 1024;
  let size = 0;
  try {
    size = (await fs.promises.stat(file)).size;
  } catch (e) {
    return { path: file, readError: (e as NodeJS.ErrnoException).code ?? String(e), items: [] };
  }
  const { inlineBelowBytes: _ignored, trust, ...parseOpts } = opts;
  if (size < inlineBelow) return loadSync(file, parseOpts, trust);
  return workerClient().load(file, parseOpts, trust);
}

// ---- worker plumbing -----------------------------------------------------------------------

type WireItem = { ok: true; index: number; crl: CrlTransfer; signerIndex: number } | { ok: false; index: number; code: CrlErrorCode; message: string };
interface Request {
  id: number;
  file: string;
  opts: ParseCrlOptions;
  /** DER of the trust certificates, or null for no verification. */
  trust: Buffer[] | null;
}
interface Response {
  id: number;
  readError?: string;
  items: WireItem[];
}

class WorkerClient {
  private worker: Worker | null = null;
  private nextId = 1;
  private pending = new Map<number, { file: string; trust?: readonly X509Certificate[]; resolve: (r: CrlFileResult) => void }>();

  load(file: string, opts: ParseCrlOptions, trust?: readonly X509Certificate[]): Promise<CrlFileResult> {
    const w = this.ensure();
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, { file, trust, resolve });
      w.ref();
      w.postMessage({ id, file, opts, trust: trust ? trust.map((c) => c.raw) : null } satisfies Request);
    });
  }

  private ensure(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(__filename, { workerData: { tag: WORKER_TAG } });
    w.on('message', (m: Response) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) w.unref();
      p.resolve({
        path: p.file,
        readError: m.readError,
        items: m.items.map((it) =>
          it.ok ? { ok: true, index: it.index, crl: ParsedCrl.fromTransfer(it.crl), signer: it.signerIndex >= 0 ? p.trust?.[it.signerIndex] : undefined } : it,
        ),
      });
    });
    const fail = (why: string): void => {
      if (this.worker === w) this.worker = null;
      for (const [id, p] of this.pending) {
        this.pending.delete(id);
        p.resolve({ path: p.file, items: [{ ok: false, index: 0, code: 'malformed', message: `CRL worker failed: ${why}` }] });
      }
    };
    w.on('error', (e) => fail(e.message));
    w.on('exit', (code) => fail(`exited with code ${code}`));
    w.unref();
    this.worker = w;
    return w;
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = null;
    if (w) await w.terminate();
  }
}

let client: WorkerClient | null = null;
function workerClient(): WorkerClient {
  client ??= new WorkerClient();
  return client;
}

/** End the shared worker (tests, shutdown). A later load starts a new one. */
export async function closeCrlWorker(): Promise<void> {
  await client?.close();
}

// Worker side: the same module, started with workerData.tag.
if (!isMainThread && (workerData as { tag?: string } | null)?.tag === WORKER_TAG && parentPort) {
  const port = parentPort;
  // Trust certificates parsed once per distinct set (reloads send the same set every time).
  let trustKey = '';
  let trustCerts: X509Certificate[] = [];
  port.on('message', (req: Request) => {
    let trust: X509Certificate[] | undefined;
    if (req.trust) {
      const key = req.trust.map((d) => Buffer.from(d).toString('base64')).join(',');
      if (key !== trustKey) {
        trustCerts = req.trust.map((d) => new X509Certificate(Buffer.from(d)));
        trustKey = key;
      }
      trust = trustCerts;
    }
    // Verification stays synchronous here: overlapping it with the SHA-256 in the thread pool
    // was measured to starve the main thread on a 2-core machine (stall 5 ms → 13 ms); only the
    // file's SHA-256 overlaps the parse (parseCrlBytesOverlapped).
    void respond(req, trust);
  });
  async function respond(req: Request, trust: X509Certificate[] | undefined): Promise<void> {
    const read = readCrlFile(req.file, req.opts);
    const res: CrlFileResult = Buffer.isBuffer(read) ? { path: req.file, items: await parseCrlBytesOverlapped(read, req.file, req.opts, trust) } : read;
    const transferList: ArrayBuffer[] = [];
    const items: WireItem[] = res.items.map((it) => {
      if (!it.ok) return it;
      const t = it.crl.toTransfer();
      transferList.push(...t.transferList);
      return { ok: true, index: it.index, crl: t.msg, signerIndex: it.signer ? trustCerts.indexOf(it.signer) : -1 };
    });
    port.postMessage({ id: req.id, readError: res.readError, items } satisfies Response, transferList);
  }
}
