/**
 * RevocationStore: the set of accepted CRLs that every revocation check reads (RFC 5280 §6.3).
 *
 * Loading validates every CRL (structure, signature by a trusted CRL signer, thisUpdate ≤ now +
 * skew, no unsupported critical extension, no cRLNumber rollback) and then swaps
 * the whole new set in with one reference assignment, so a check sees either the old set or the
 * new one, never a mix. A refused CRL never replaces a good one.
 *
 * What a reload keeps (decided here, documented in one place):
 * - A *scope* is the CRL issuer Name plus its issuingDistributionPoint (RFC 5280 §5.2.5), and
 *   whether it is a delta CRL (§5.2.4): a scope's delta CRL is kept beside its complete CRL and
 *   applied to it when checking (revocation.ts); a delta alone never answers `good`. Per
 *   scope the store holds one CRL: the accepted one with the highest cRLNumber (latest thisUpdate
 *   when there is no cRLNumber). Other CRLs of the same scope in the same load are reported as
 *   refused with code `rollback` ("superseded").
 * - A CRL whose cRLNumber (or thisUpdate) is lower than the highest ever accepted for its scope
 *   is refused as `rollback`. That high-water mark outlives the CRL itself, so deleting a CRL and
 *   putting an older one back is still a rollback.
 * - When a scope's new CRL is refused, the last good CRL stays.
 * - A scope whose file is gone from disk (deleted, or dropped from a ConfigMap) keeps its last
 *   good CRL too, reported under `retained`: a non-atomic update (`rm; curl -o`) or a deleted
 *   folder must not turn revoked certificates into `unknown` — under softFail that would let
 *   them through. Restarting the process drops what no file provides any more.
 * - A CRL past nextUpdate + skew is judged the same way at start and on every reload: it is
 *   refused as `expired` (not usable as current; logged and counted like any refusal). When its
 *   scope holds no current CRL it is nevertheless kept as that scope's last resort — listed under
 *   `stale` and its refusal marked `kept` — so the certificates it lists stay `revoked` while the
 *   others answer `stale`; a current CRL is never replaced by it, whatever its number. The
 *   readiness rule (readiness.ts) counts only current CRLs as usable.
 *
 * Files: each path is a file or a folder; a folder's regular files (symlinks followed; names
 * starting with "." skipped, so a Kubernetes ConfigMap volume's `..data` machinery is not read
 * twice) are loaded in name order. A file holds DER or PEM with one or many X509 CRL blocks.
 *
 * Events: `'reload'` with a `LoadReport` after every load.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { createHash, type X509Certificate } from 'node:crypto';
import { X509Certificate as X509 } from 'node:crypto';
import { certInfo, formatName, type CertInfo } from './certinfo';
import type { ParsedCrl } from './crl';
import { crlTimeStatus } from './crl-verify';
import { CrlError, type CrlErrorCode } from './errors';
import { certStatus, crlRecord, type CrlRecord } from './revocation';
import { loadCrlFile } from './crl-worker';
import type { CrlInfo, RevocationResult } from './types';

export interface RevocationStoreOptions {
  /** Trust anchors and CRL signers: a CRL is accepted only when one of these signed it. */
  trust: X509Certificate[];
  /** Allowed clock difference for thisUpdate / nextUpdate, ms (default 300 000). */
  clockSkewMs?: number;
  /** The clock (tests move it). */
  now?: () => Date;
  /** Largest CRL accepted, bytes of DER (default 256 MiB): larger is refused `too_large`. */
  maxCrlBytes?: number;
  /** Files below this size parse on the main thread (default 1 MiB; see crl-worker.ts). */
  inlineBelowBytes?: number;
}

export interface Refusal {
  /** File path, with `#n` for the n-th CRL of a PEM bundle holding several. */
  source: string;
  code: CrlErrorCode;
  message: string;
  /** `expired` only: the CRL is held anyway, as the stale last resort of its scope (see the file docstring). */
  kept?: boolean;
}

/** What one load did. Also the payload of the `'reload'` event. */
export interface LoadReport {
  /** CRLs accepted by this load as current (now active). */
  accepted: CrlInfo[];
  refused: Refusal[];
  /** CRLs of this load past nextUpdate + skew, refused as `expired` but held as their scope's last resort (they answer `stale`). */
  stale: CrlInfo[];
  /** CRLs kept although the file they came from is gone (see the file docstring). */
  retained: CrlInfo[];
  /** The gate (see `gate`) held this load back: nothing changed. */
  held?: boolean;
}

export interface WatchOptions {
  /** Wait this long after the last change before reloading (default 250 ms). */
  debounceMs?: number;
  /** Stat-polling period, the fallback for missed fs.watch events (default 1000 ms). */
  pollMs?: number;
}

interface ActiveCrl extends CrlRecord {
  info: CrlInfo;
  /** `scope`, prefixed for delta CRLs: the store keeps one CRL per slot. */
  slot: string;
  /** The file it came from (without `#n`). */
  file: string;
}

interface State {
  byIssuer: Map<string, ActiveCrl[]>;
  byScope: Map<string, ActiveCrl>;
}

const EMPTY: State = { byIssuer: new Map(), byScope: new Map() };
const NONE: readonly ActiveCrl[] = [];

export class RevocationStore extends EventEmitter {
  private state: State = EMPTY;
  private readonly trust: X509Certificate[];
  private readonly skewMs: number;
  private readonly now: () => Date;
  private readonly maxCrlBytes: number;
  private readonly inlineBelowBytes: number | undefined;
  /** Highest (cRLNumber, thisUpdate) ever accepted per scope: the rollback guard. */
  private readonly highWater = new Map<string, { crlNumber: bigint | null; thisUpdate: number }>();
  private chain: Promise<unknown> = Promise.resolve();
  private watchers: (() => void)[] = [];
  private readonly included: string[] = [];
  private gateFn: ((digest: string) => Promise<boolean>) | null = null;

  constructor(opts: RevocationStoreOptions) {
    super();
    this.trust = [...opts.trust];
    this.skewMs = opts.clockSkewMs ?? 300_000;
    this.now = opts.now ?? (() => new Date());
    this.maxCrlBytes = opts.maxCrlBytes ?? 256 * 1024 * 1024;
    this.inlineBelowBytes = opts.inlineBelowBytes;
  }

  /** True once at least one CRL is active (current or not: see `status`). */
  get ready(): boolean {
    return this.state.byScope.size > 0;
  }

  /** The active CRLs. */
  snapshot(): CrlInfo[] {
    return [...this.state.byScope.values()].map((a) => a.info);
  }

  /**
   * The active CRLs judged now (the same `crlTimeStatus` a load applies): `current` ones, and
   * `stale` ones — past nextUpdate + skew, held as their scope's last resort or gone past it
   * since they were loaded. What readiness.ts decides on.
   */
  status(): { current: CrlInfo[]; stale: CrlInfo[] } {
    const now = this.now();
    const out = { current: [] as CrlInfo[], stale: [] as CrlInfo[] };
    for (const a of this.state.byScope.values()) (crlTimeStatus(a.crl, now, this.skewMs) === 'expired' ? out.stale : out.current).push(a.info);
    return out;
  }

  /**
   * Load files and folders, validate every CRL, swap the new set in and emit `'reload'`.
   * Loads are serialised: a call made during another load runs after it. Never rejects for bad
   * CRLs (they are in `refused`).
   */
  loadPaths(paths: string[]): Promise<LoadReport> {
    const run = this.chain.then(() => this.load(paths));
    this.chain = run.catch(() => undefined);
    return run;
  }

  /**
   * Adds paths to every later load, beside the ones each `loadPaths`/`watch` call names (the
   * Kubernetes watcher's spool folder, which it writes and reloads itself: `watch` does not poll it).
   */
  include(paths: string[]): void {
    for (const p of paths) if (!this.included.includes(p)) this.included.push(p);
  }

  /**
   * Makes every later load ask `fn` before it swaps its new set in, passing a digest of that set
   * (the active CRLs' scopes and SHA-256s, in order). Answering false holds the load back whole:
   * the set, the rollback guard and the metrics stay as they were, no `'reload'` is emitted, and
   * the load resolves with `held: true`. With several workers this is the barrier that makes a
   * reload reach all of them together (cmd/ca-proxy/workers.ts).
   */
  gate(fn: ((digest: string) => Promise<boolean>) | null): void {
    this.gateFn = fn;
  }

  private async load(given: string[]): Promise<LoadReport> {
    const paths = [...new Set([...given, ...this.included])];
    const refused: Refusal[] = [];
    const files = await listFiles(paths, refused);
    const present = new Set<string>();
    const candidates: ActiveCrl[] = [];
    const now = this.now();

    for (const file of files) {
      // Signatures are checked where the file is parsed (the worker for large files).
      const res = await loadCrlFile(file, { maxBytes: this.maxCrlBytes, inlineBelowBytes: this.inlineBelowBytes, trust: this.trust });
      if (res.readError !== undefined) continue; // vanished between listing and reading
      present.add(file);
      const many = res.items.length > 1;
      for (const it of res.items) {
        const source = many ? `${file}#${it.index}` : file;
        if (!it.ok) {
          refused.push({ source, code: it.code, message: it.message });
          continue;
        }
        try {
          candidates.push(this.validate(it.crl, source, file, now));
        } catch (e) {
          if (!(e instanceof CrlError)) throw e;
          refused.push({ source, code: e.code, message: e.message });
        }
      }
    }

    // One CRL per scope: the newest of this load.
    const best = new Map<string, ActiveCrl>();
    for (const c of candidates) {
      const prev = best.get(c.slot);
      if (!prev) best.set(c.slot, c);
      else {
        const [win, lose] = newer(c, prev) ? [c, prev] : [prev, c];
        best.set(c.slot, win);
        refused.push({ source: lose.info.source, code: 'rollback', message: `superseded by ${win.info.source} (cRLNumber ${win.info.cRLNumber ?? 'none'})` });
      }
    }

    const old = this.state;
    const byScope = new Map<string, ActiveCrl>();
    const accepted: CrlInfo[] = [];
    const stale: CrlInfo[] = [];
    for (const [scope, c] of best) {
      const hw = this.highWater.get(scope);
      if (hw && isLower(c, hw)) {
        refused.push({
          source: c.info.source,
          code: 'rollback',
          message: `cRLNumber ${c.info.cRLNumber ?? 'none'} / thisUpdate ${c.info.thisUpdate.toISOString()} is older than the accepted ${hw.crlNumber ?? 'none'} / ${new Date(hw.thisUpdate).toISOString()}`,
        });
        continue;
      }
      if (crlTimeStatus(c.crl, now, this.skewMs) === 'expired') {
        // The same judgement at start and on reload: refused as `expired`. Only what is kept differs.
        const current = old.byScope.get(scope);
        const passed = `nextUpdate ${c.info.nextUpdate?.toISOString()} has passed (clock skew ${this.skewMs} ms)`;
        if (current && crlTimeStatus(current.crl, now, this.skewMs) === 'current') {
          refused.push({ source: c.info.source, code: 'expired', message: `${passed}; the current CRL ${current.info.source} (cRLNumber ${current.info.cRLNumber ?? 'none'}) stays` });
          continue;
        }
        refused.push({
          source: c.info.source,
          code: 'expired',
          kept: true,
          message: `${passed} and its scope has no current CRL: kept only so that the certificates it lists stay revoked; its issuer's other certificates answer stale (hardFail denies them revocation_stale)`,
        });
        byScope.set(scope, c);
        stale.push(c.info);
        continue;
      }
      byScope.set(scope, c);
      accepted.push(c.info);
    }
    // Keep the last good CRL of every scope without a new accepted one, even when its file is gone.
    const retained: CrlInfo[] = [];
    for (const [scope, a] of old.byScope) {
      if (byScope.has(scope)) continue;
      byScope.set(scope, a);
      if (!present.has(a.file)) retained.push(a.info);
    }
    if (this.gateFn && !(await this.gateFn(stateDigest(byScope)))) {
      return { accepted: [], refused: [], stale: [], retained: [], held: true };
    }
    for (const c of byScope.values()) {
      const hw = this.highWater.get(c.slot);
      if (!hw || !isLower(c, hw)) this.highWater.set(c.slot, { crlNumber: c.crl.crlNumber, thisUpdate: c.crl.thisUpdate.getTime() });
    }
    const byIssuer = new Map<string, ActiveCrl[]>();
    for (const c of byScope.values()) {
      const list = byIssuer.get(c.issuerKey);
      if (list) list.push(c);
      else byIssuer.set(c.issuerKey, [c]);
    }
    this.state = { byIssuer, byScope }; // the atomic swap

    const report: LoadReport = { accepted, refused, stale, retained };
    this.emit('reload', report);
    return report;
  }

  /** Checks of one parsed, signature-verified CRL that do not depend on other CRLs. @throws CrlError */
  private validate(crl: ParsedCrl, source: string, file: string, now: Date): ActiveCrl {
    if (crlTimeStatus(crl, now, this.skewMs) === 'not_yet_valid') {
      throw new CrlError('not_yet_valid', `thisUpdate ${crl.thisUpdate.toISOString()} is after now (${now.toISOString()}) + ${this.skewMs} ms`);
    }
    let issuer: string;
    try {
      issuer = formatName(crl.issuerDer);
    } catch {
      issuer = `#${crl.issuerDer.toString('hex')}`;
    }
    const rec: CrlRecord = crlRecord(crl); // its IDP was validated by parseCrl
    return {
      ...rec,
      slot: `${rec.deltaBase !== null ? 'delta|' : ''}${rec.scope}`,
      info: {
        issuer,
        cRLNumber: crl.crlNumber === null ? null : crl.crlNumber.toString(),
        thisUpdate: crl.thisUpdate,
        nextUpdate: crl.nextUpdate,
        entries: crl.entryCount,
        sha256: crl.sha256,
        source,
      },
      file,
    };
  }

  /**
   * Revocation status of `cert`, issued by `issuer` (RFC 5280 §6.3.3, revocation.ts `certStatus`):
   * the CRLs of the certificate issuer, and of the cRLIssuer its distribution points name
   * (indirect CRLs), in scope per the issuingDistributionPoint; a scope's delta CRL applied to its
   * complete CRL. `revoked` when a usable CRL lists the serial (a CRL past nextUpdate too, when no
   * current CRL decides); `good` when current CRLs cover every reason; `stale` when only CRLs past
   * nextUpdate do; else `unknown`. O(1) per candidate CRL (hash probe).
   */
  check(cert: CertInfo, issuer: CertInfo | X509Certificate): RevocationResult {
    const iss = issuer instanceof X509 ? certInfo(issuer) : (issuer as CertInfo);
    if (cert.issuerKey !== iss.subjectKey) return { status: 'unknown' };
    const byIssuer = this.state.byIssuer;
    const st = certStatus(cert, { byIssuer: (k) => byIssuer.get(k) ?? NONE }, { now: this.now(), skewMs: this.skewMs });
    switch (st.status) {
      case 'revoked':
        return { status: 'revoked', crl: st.rec.info, reason: st.entry.reason, revocationDate: st.entry.revocationDate };
      case 'good':
        return { status: 'good', crl: st.rec.info };
      case 'stale':
        return { status: 'stale', crl: st.rec.info };
      case 'unknown':
        return { status: 'unknown' };
    }
  }

  /**
   * Reload `paths` when they change: fs.watch on every path (file or folder) plus a stat poll
   * every `pollMs` (atomic renames and ConfigMap `..data` symlink swaps that fs.watch misses),
   * debounced by `debounceMs`. Timers are unref'd. Returns a function that stops this watch;
   * `close()` stops all.
   */
  watch(paths: string[], opts: WatchOptions = {}): () => void {
    const debounceMs = opts.debounceMs ?? 250;
    const pollMs = opts.pollMs ?? 1000;
    let timer: NodeJS.Timeout | null = null;
    let stopped = false;
    let lastPrint: string | null = null;
    const fsWatchers = new Map<string, fs.FSWatcher>();

    const schedule = (): void => {
      if (stopped) return;
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        timer = null;
        void (async () => {
          lastPrint = await fingerprint(paths);
          if (!stopped) await this.loadPaths(paths).catch(() => undefined);
        })();
      }, debounceMs);
      timer.unref();
    };
    const arm = (): void => {
      for (const p of paths) {
        if (fsWatchers.has(p)) continue;
        try {
          const w = fs.watch(p, { persistent: false }, schedule);
          w.on('error', () => {
            w.close();
            fsWatchers.delete(p);
          });
          fsWatchers.set(p, w);
        } catch {
          // Missing for now: the poll notices when it appears.
        }
      }
    };
    arm();
    void fingerprint(paths).then((f) => (lastPrint ??= f));
    let polling = false;
    const poll = setInterval(() => {
      if (polling) return;
      polling = true;
      void fingerprint(paths)
        .then((f) => {
          arm();
          if (lastPrint !== null && f !== lastPrint) {
            lastPrint = f;
            schedule();
          }
          lastPrint ??= f;
        })
        .finally(() => (polling = false));
    }, pollMs);
    poll.unref();

    const stop = (): void => {
      stopped = true;
      clearInterval(poll);
      if (timer) clearTimeout(timer);
      for (const w of fsWatchers.values()) w.close();
      fsWatchers.clear();
      this.watchers = this.watchers.filter((s) => s !== stop);
    };
    this.watchers.push(stop);
    return stop;
  }

  /** Stop every watch. The active CRLs stay. */
  close(): void {
    for (const stop of [...this.watchers]) stop();
  }
}

/** The set as one string: equal digests mean the same CRLs in the same scopes. */
function stateDigest(byScope: Map<string, ActiveCrl>): string {
  const lines = [...byScope].map(([scope, c]) => `${scope}=${c.info.sha256}`).sort();
  return createHash('sha256').update(lines.join('\n')).digest('hex');
}

function newer(a: ActiveCrl, b: ActiveCrl): boolean {
  const na = a.crl.crlNumber;
  const nb = b.crl.crlNumber;
  if (na !== null && nb !== null && na !== nb) return na > nb;
  return a.crl.thisUpdate.getTime() > b.crl.thisUpdate.getTime();
}

function isLower(c: ActiveCrl, hw: { crlNumber: bigint | null; thisUpdate: number }): boolean {
  const n = c.crl.crlNumber;
  if (n !== null && hw.crlNumber !== null) return n < hw.crlNumber;
  return c.crl.thisUpdate.getTime() < hw.thisUpdate;
}

/** The regular files named by `paths` (folders expanded one level, dot-names skipped), sorted. */
async function listFiles(paths: string[], refused: Refusal[]): Promise<string[]> {
  const out: string[] = [];
  for (const p of paths) {
    let st: fs.Stats;
    try {
      st = await fs.promises.stat(p);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      refused.push(code === 'ENOENT' ? { source: p, code: 'not_found', message: `${p} does not exist` } : { source: p, code: 'malformed', message: `cannot read ${p}: ${code ?? String(e)}` });
      continue;
    }
    if (st.isFile()) {
      out.push(p);
      continue;
    }
    if (!st.isDirectory()) continue;
    let names: string[];
    try {
      names = (await fs.promises.readdir(p)).filter((n) => !n.startsWith('.')).sort();
    } catch {
      continue;
    }
    for (const n of names) {
      const f = path.join(p, n);
      try {
        if ((await fs.promises.stat(f)).isFile()) out.push(f);
      } catch {
        // dangling symlink mid-swap: not there
      }
    }
  }
  return [...new Set(out)];
}

/** A string that changes when any watched file changes (identity, size, mtime), symlinks followed. */
async function fingerprint(paths: string[]): Promise<string> {
  const parts: string[] = [];
  const statOf = async (f: string): Promise<string> => {
    try {
      const s = await fs.promises.stat(f);
      return `${f}:${s.ino}:${s.size}:${s.mtimeMs}:${s.isDirectory() ? 'd' : 'f'}`;
    } catch {
      return `${f}:-`;
    }
  };
  for (const p of paths) {
    parts.push(await statOf(p));
    let names: string[] = [];
    try {
      names = (await fs.promises.readdir(p)).filter((n) => !n.startsWith('.')).sort();
    } catch {
      continue;
    }
    for (const n of names) parts.push(await statOf(path.join(p, n)));
  }
  return parts.join('\n');
}
