/**
 * The webhook's serving certificate and key, read from files and reloaded when they change
 * (cert-manager renews the Secret; kubelet swaps the mounted files through the `..data` symlink).
 *
 * A change is noticed by fs.watch on both files' folders and, because watches miss events on
 * some volume types, by polling: every `pollMs` the two files are read and hashed. A pair that is
 * new is accepted only if it parses and the key belongs to the certificate; a half-replaced pair
 * (new certificate, old key) is refused and the pair in use stays until a good one appears. The
 * server applies an accepted pair to new connections only (node:tls `setSecureContext`), so open
 * connections and requests in flight are untouched.
 */
import crypto, { X509Certificate } from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';

export interface KeyPair {
  cert: Buffer;
  key: Buffer;
  /** The leaf's notAfter. */
  notAfter: Date;
  /** SHA-256 of the leaf (DER), lower-case hex. */
  fingerprint: string;
}

/** Files larger than this are not a certificate chain or key. */
const MAX_FILE_BYTES = 1024 * 1024;

/**
 * Reads and checks a certificate chain and key (PEM).
 * @throws Error naming the file and the problem (unreadable, not PEM, key does not match)
 */
export function readKeyPair(certFile: string, keyFile: string): KeyPair {
  const cert = readBounded(certFile);
  const key = readBounded(keyFile);
  return checkKeyPair(cert, key, certFile, keyFile);
}

function checkKeyPair(cert: Buffer, key: Buffer, certFile: string, keyFile: string): KeyPair {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (err) {
    throw new Error(`${certFile}: not a PEM certificate (${(err as Error).message})`);
  }
  let privateKey: crypto.KeyObject;
  try {
    privateKey = crypto.createPrivateKey(key);
  } catch (err) {
    throw new Error(`${keyFile}: not a PEM private key (${(err as Error).message})`);
  }
  if (!leaf.checkPrivateKey(privateKey)) throw new Error(`${keyFile}: the key does not belong to the certificate in ${certFile}`);
  // What the server will do with it: fails on anything OpenSSL refuses (e.g. a broken chain PEM).
  tls.createSecureContext({ cert, key });
  return { cert, key, notAfter: new Date(leaf.validTo), fingerprint: leaf.fingerprint256.replace(/:/g, '').toLowerCase() };
}

function readBounded(file: string): Buffer {
  const st = fs.statSync(file);
  if (st.size > MAX_FILE_BYTES) throw new Error(`${file}: larger than ${MAX_FILE_BYTES} bytes`);
  return fs.readFileSync(file);
}

export interface ServingCertificateOptions {
  certFile: string;
  keyFile: string;
  /** Poll period, ms (default 1000). */
  pollMs?: number;
}

/**
 * Emits `reload` (KeyPair) when a new pair is accepted and `refused` ({error, certFile, keyFile})
 * once per distinct bad pair.
 */
export class ServingCertificate extends EventEmitter {
  private pair: KeyPair;
  /** Hash of the file contents last looked at (accepted or refused), so one bad pair is reported once. */
  private seen: string;
  private timer: NodeJS.Timeout | null = null;
  private watchers: fs.FSWatcher[] = [];
  private pending: NodeJS.Timeout | null = null;

  /** @throws Error when the files do not hold a usable pair now (the server cannot start without one). */
  constructor(private readonly opts: ServingCertificateOptions) {
    super();
    const { cert, key } = this.readRaw();
    this.pair = checkKeyPair(cert, key, opts.certFile, opts.keyFile);
    this.seen = digest(cert, key);
  }

  /** The pair in use. */
  get current(): KeyPair {
    return this.pair;
  }

  /** Starts watching and polling. */
  start(): void {
    const dirs = new Set([path.dirname(path.resolve(this.opts.certFile)), path.dirname(path.resolve(this.opts.keyFile))]);
    for (const dir of dirs) {
      try {
        const w = fs.watch(dir, () => this.soon());
        w.on('error', () => undefined);
        this.watchers.push(w);
      } catch {
        // Polling covers a folder that cannot be watched.
      }
    }
    this.timer = setInterval(() => this.check(), this.opts.pollMs ?? 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.pending) clearTimeout(this.pending);
    this.timer = this.pending = null;
    for (const w of this.watchers) w.close();
    this.watchers = [];
  }

  /** Reads the files now; returns whether a new pair was accepted. */
  check(): boolean {
    let raw: { cert: Buffer; key: Buffer };
    try {
      raw = this.readRaw();
    } catch (err) {
      // Mid-swap (a file briefly missing): report once per distinct error, keep the pair in use.
      const id = `error:${(err as Error).message}`;
      if (id !== this.seen) {
        this.seen = id;
        this.emit('refused', { error: err as Error, certFile: this.opts.certFile, keyFile: this.opts.keyFile });
      }
      return false;
    }
    const id = digest(raw.cert, raw.key);
    if (id === this.seen) return false;
    this.seen = id;
    let pair: KeyPair;
    try {
      pair = checkKeyPair(raw.cert, raw.key, this.opts.certFile, this.opts.keyFile);
    } catch (err) {
      this.emit('refused', { error: err as Error, certFile: this.opts.certFile, keyFile: this.opts.keyFile });
      return false;
    }
    this.pair = pair;
    this.emit('reload', pair);
    return true;
  }

  private soon(): void {
    // A swap writes several entries in a burst: look once it has settled a little.
    if (this.pending) return;
    this.pending = setTimeout(() => {
      this.pending = null;
      this.check();
    }, 50);
    this.pending.unref();
  }

  private readRaw(): { cert: Buffer; key: Buffer } {
    return { cert: readBounded(this.opts.certFile), key: readBounded(this.opts.keyFile) };
  }
}

function digest(cert: Buffer, key: Buffer): string {
  return crypto.createHash('sha256').update(cert).update('\0').update(key).digest('hex');
}
