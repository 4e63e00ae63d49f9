/**
 * Fetching a CRL over HTTP(S) for the publisher: one bounded GET (`fetchCrl`) and the retry
 * loop around it (`fetchCrlWithRetry`).
 *
 * - Timeout: one deadline for the whole exchange (connect, headers and body), so a server that
 *   trickles bytes cannot hold the publisher.
 * - Size: a Content-Length over `maxBytes` is refused before reading; a body that grows past it
 *   is cut off (`too_large`).
 * - Conditional GET (RFC 9110 §13.1): `If-None-Match` with the last ETag and `If-Modified-Since`
 *   with the last Last-Modified; `304 Not Modified` means "what you have is current".
 * - Retries: on network errors, timeouts, 408, 429 and 5xx, with full-jitter exponential backoff
 *   (delay = random × min(maxDelay, base × 2^attempt), as AWS's "Exponential Backoff and
 *   Jitter" recommends), so replicas and sources do not retry in lockstep. Other 4xx and
 *   `too_large` are final: retrying cannot change them.
 *
 * CRLs on HTTP are plain DER (RFC 5280 §4.2.1.13); the body is returned as is and the caller
 * parses it. Redirects are not followed (a CRL distribution point names the file itself).
 */
import http from 'node:http';
import https from 'node:https';

export type FetchErrorCode = 'timeout' | 'network' | 'http_status' | 'too_large' | 'bad_url';

/** Why a fetch failed. `code` is the metric label; `status` is the HTTP status for `http_status`. */
export class FetchError extends Error {
  constructor(
    readonly code: FetchErrorCode,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'FetchError';
  }
  /** Worth another attempt: the server or the network may do better next time. */
  get retryable(): boolean {
    if (this.code === 'timeout' || this.code === 'network') return true;
    if (this.code === 'http_status') return this.status === 408 || this.status === 429 || (this.status ?? 0) >= 500;
    return false;
  }
}

export interface FetchOptions {
  /** Whole-exchange deadline, ms. */
  timeoutMs: number;
  /** Largest body accepted, bytes. */
  maxBytes: number;
  /** Validators from the last 200 answer, for a conditional GET. */
  etag?: string | null;
  lastModified?: string | null;
  /** Extra trust for https sources (PEM); default: Node's bundled roots. */
  ca?: string | Buffer | (string | Buffer)[];
  signal?: AbortSignal;
}

export type FetchResult =
  | { status: 'ok'; body: Buffer; etag: string | null; lastModified: string | null }
  | { status: 'not_modified' };

const USER_AGENT = 'ca-proxy-publisher';

/**
 * One conditional GET of `url`.
 * @throws FetchError `bad_url`, `timeout`, `network`, `http_status` (any status but 200/304),
 *   `too_large`
 */
export function fetchCrl(url: string, opts: FetchOptions): Promise<FetchResult> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return Promise.reject(new FetchError('bad_url', `not a URL: ${JSON.stringify(url)}`));
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return Promise.reject(new FetchError('bad_url', `${url}: only http and https are fetched`));
  const mod = u.protocol === 'https:' ? https : http;
  const headers: Record<string, string> = { 'User-Agent': USER_AGENT, Accept: 'application/pkix-crl, application/octet-stream, */*' };
  if (opts.etag) headers['If-None-Match'] = opts.etag;
  if (opts.lastModified) headers['If-Modified-Since'] = opts.lastModified;

  return new Promise<FetchResult>((resolve, reject) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (err: FetchError | null, res?: FetchResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (err) {
        req.destroy();
        reject(err);
      } else resolve(res!);
    };
    const req = mod.get(u, { headers, agent: false, ...(opts.ca && u.protocol === 'https:' ? { ca: opts.ca } : {}) }, (res) => {
      const status = res.statusCode ?? 0;
      if (status === 304) {
        res.resume();
        return finish(null, { status: 'not_modified' });
      }
      if (status !== 200) {
        res.resume();
        return finish(new FetchError('http_status', `${url}: HTTP ${status}`, status));
      }
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > opts.maxBytes) {
        return finish(new FetchError('too_large', `${url}: Content-Length ${declared} is over the limit of ${opts.maxBytes} bytes`));
      }
      const chunks: Buffer[] = [];
      let n = 0;
      res.on('data', (c: Buffer) => {
        n += c.length;
        if (n > opts.maxBytes) return finish(new FetchError('too_large', `${url}: body is over the limit of ${opts.maxBytes} bytes`));
        chunks.push(c);
      });
      res.on('end', () => {
        if (!res.complete) return finish(new FetchError('network', `${url}: connection closed before the end of the body`));
        const etag = typeof res.headers.etag === 'string' ? res.headers.etag : null;
        const lastModified = typeof res.headers['last-modified'] === 'string' ? res.headers['last-modified'] : null;
        finish(null, { status: 'ok', body: Buffer.concat(chunks, n), etag, lastModified });
      });
      res.on('error', (e) => finish(new FetchError('network', `${url}: ${e.message}`)));
      res.on('aborted', () => finish(new FetchError('network', `${url}: response aborted`)));
    });
    req.on('error', (e) => finish(new FetchError('network', `${url}: ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
    timer = setTimeout(() => finish(new FetchError('timeout', `${url}: no complete answer within ${opts.timeoutMs} ms`)), opts.timeoutMs);
    const onAbort = (): void => finish(new FetchError('network', `${url}: aborted`));
    if (opts.signal?.aborted) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export interface RetryOptions {
  /** Further attempts after the first (0: one attempt). */
  retries: number;
  /** Backoff base, ms (default 500). */
  baseDelayMs?: number;
  /** Backoff cap, ms (default 30 000). */
  maxDelayMs?: number;
  /** [0, 1) source for the jitter (tests pin it). */
  random?: () => number;
  /** Called before each wait with the attempt that failed (1-based), its error and the delay. */
  onRetry?: (attempt: number, err: FetchError, delayMs: number) => void;
}

/** The full-jitter delay before retry number `attempt` (0-based), ms. */
export function backoffDelay(attempt: number, base: number, max: number, random: () => number): number {
  return Math.floor(random() * Math.min(max, base * 2 ** attempt));
}

/**
 * `fetchCrl` with retries on retryable failures (see the module comment). The abort signal in
 * `opts` also cuts a backoff wait short.
 * @throws the last FetchError
 */
export async function fetchCrlWithRetry(url: string, opts: FetchOptions, retry: RetryOptions): Promise<FetchResult & { attempts: number }> {
  const base = retry.baseDelayMs ?? 500;
  const max = retry.maxDelayMs ?? 30_000;
  const random = retry.random ?? Math.random;
  for (let attempt = 0; ; attempt++) {
    try {
      return { ...(await fetchCrl(url, opts)), attempts: attempt + 1 };
    } catch (e) {
      const err = e instanceof FetchError ? e : new FetchError('network', (e as Error).message);
      if (!err.retryable || attempt >= retry.retries || opts.signal?.aborted) throw err;
      const delay = backoffDelay(attempt, base, max, random);
      retry.onRetry?.(attempt + 1, err, delay);
      await sleep(delay, opts.signal);
    }
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
