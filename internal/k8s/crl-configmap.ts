/**
 * The CRL ConfigMap format, version 1 (docs/kubernetes.md, "CRL ConfigMap format" is the
 * contract): how the publisher writes one CRL into ConfigMaps (`encodeCrlConfigMaps`) and how a
 * watcher turns them back into the CRL's DER (`groupCrlSets` + `decodeCrlSet`).
 *
 * A *set* holds one CRL. Every ConfigMap of a set is labelled `ca-proxy.io/crl: "true"` and
 * `ca-proxy.io/crl-set: <set>`, and carries the same annotations (`ca-proxy.io/issuer`,
 * `this-update`, `next-update`, `crl-number`, `sha256` of the whole DER, `source`) plus
 * `ca-proxy.io/part: "i/n"`. Payload, in `binaryData`, one key per ConfigMap: `crl.der` (whole,
 * plain), `crl.der.gz` (whole, gzip), or `crl.der[.gz].part-<i>-of-<n>` (i = 1..n) — the
 * concatenation of parts 1..n is the encoded blob.
 *
 * Never trust a half-written set: a set decodes only from a *complete generation* — ConfigMaps
 * agreeing on (sha256, n, encoding) holding exactly parts 1..n — whose reassembled, gunzipped
 * DER hashes to the annotation. While a publisher rewrites parts in place there is no complete
 * generation and the watcher keeps its last good CRL.
 *
 * Size: the API server refuses a ConfigMap whose data exceeds 1 MiB; the publisher puts at most
 * 1,000,000 payload bytes in one ConfigMap, so base64 (4/3) plus metadata stays inside etcd's
 * 1.5 MiB request limit. The DER is stored plain when it fits, gzipped when that fits, else the
 * gzip stream is split.
 */
import crypto from 'node:crypto';
import { promisify } from 'node:util';
import zlib from 'node:zlib';

const gzip = promisify(zlib.gzip);
const gunzip = promisify(zlib.gunzip);

export const FORMAT_VERSION = 1;
export const LABEL_CRL = 'ca-proxy.io/crl';
export const LABEL_SET = 'ca-proxy.io/crl-set';
/** The watcher's default label selector. */
export const CRL_LABEL_SELECTOR = `${LABEL_CRL}=true`;
export const ANN = {
  issuer: 'ca-proxy.io/issuer',
  thisUpdate: 'ca-proxy.io/this-update',
  nextUpdate: 'ca-proxy.io/next-update',
  crlNumber: 'ca-proxy.io/crl-number',
  sha256: 'ca-proxy.io/sha256',
  part: 'ca-proxy.io/part',
  source: 'ca-proxy.io/source',
  /** Publisher's own (informational): the Lease holder identity that wrote it. */
  publishedBy: 'ca-proxy.io/published-by',
} as const;
export const KEY_DER = 'crl.der';
export const KEY_GZ = 'crl.der.gz';

/** Most payload bytes (before base64) in one ConfigMap. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 1_000_000;

export type Encoding = 'identity' | 'gzip';

/** The subset of V1ConfigMap this module reads and writes (structurally compatible with it). */
export interface CrlConfigMap {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    labels?: { [k: string]: string };
    annotations?: { [k: string]: string };
    resourceVersion?: string;
    uid?: string;
  };
  binaryData?: { [k: string]: string };
  data?: { [k: string]: string };
}

/** What the annotations say about the CRL of a set. */
export interface CrlMeta {
  issuer: string;
  thisUpdate: Date;
  nextUpdate: Date | null;
  /** Decimal cRLNumber, null when the CRL has none. */
  crlNumber: string | null;
  /** SHA-256 of the DER, lower-case hex. */
  sha256: string;
  source: string;
}

export interface EncodeInput {
  /** The set name (a DNS label, ≤ 63 characters), stable across updates. */
  set: string;
  namespace: string;
  der: Buffer;
  meta: CrlMeta;
  /** Written into `ca-proxy.io/published-by` (the Lease holder identity). */
  publishedBy?: string;
  /** Most payload bytes per ConfigMap (default 1,000,000). */
  maxPayloadBytes?: number;
  /** Extra labels on every object (e.g. app.kubernetes.io/managed-by). */
  labels?: { [k: string]: string };
}

export interface EncodedSet {
  set: string;
  /** In write order: parts 1..n (or the one whole ConfigMap). */
  configMaps: CrlConfigMap[];
  encoding: Encoding;
  /** Payload bytes (DER or gzip) before base64. */
  payloadBytes: number;
}

/** Error of a set that cannot be decoded. `incomplete`: no complete generation (a write may be in progress). */
export class CrlConfigMapError extends Error {
  constructor(
    readonly code: 'incomplete' | 'malformed' | 'too_large',
    message: string,
  ) {
    super(message);
    this.name = 'CrlConfigMapError';
  }
}

/** A stable, DNS-label-safe id for a CRL source URL: 10 hex digits of its SHA-256. */
export function sourceIdFor(url: string): string {
  return crypto.createHash('sha256').update(url).digest('hex').slice(0, 10);
}

/** ConfigMap name of part i of n (the recommended names: `<set>` whole, `<set>-<i>` parts). */
export function configMapNameFor(set: string, i: number, n: number): string {
  return n === 1 ? set : `${set}-${i}`;
}

/**
 * Build the ConfigMaps of one CRL: plain DER when it fits one ConfigMap; else gzip when that
 * fits; else the gzip stream cut into n parts. gzip runs in the libuv thread pool.
 */
export async function encodeCrlConfigMaps(input: EncodeInput): Promise<EncodedSet> {
  const max = input.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
  let encoding: Encoding = 'identity';
  let payload = input.der;
  if (payload.length > max) {
    encoding = 'gzip';
    // Level 1: on a 2,000,000-entry CRL with random 16-octet serials (as CAs issue them) it took
    // 0.54 s against 1.24 s for level 6, and its output was no larger (35.07 vs 35.15 MB).
    payload = await gzip(input.der, { level: 1 });
  }
  const n = Math.max(1, Math.ceil(payload.length / max));
  const m = input.meta;
  const base = encoding === 'gzip' ? KEY_GZ : KEY_DER;
  const configMaps: CrlConfigMap[] = [];
  for (let i = 1; i <= n; i++) {
    const key = n === 1 ? base : `${base}.part-${i}-of-${n}`;
    configMaps.push({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: configMapNameFor(input.set, i, n),
        namespace: input.namespace,
        labels: { ...(input.labels ?? {}), [LABEL_CRL]: 'true', [LABEL_SET]: input.set },
        annotations: {
          [ANN.issuer]: m.issuer,
          [ANN.thisUpdate]: rfc3339(m.thisUpdate),
          ...(m.nextUpdate ? { [ANN.nextUpdate]: rfc3339(m.nextUpdate) } : {}),
          ...(m.crlNumber !== null ? { [ANN.crlNumber]: m.crlNumber } : {}),
          [ANN.sha256]: m.sha256,
          [ANN.part]: `${i}/${n}`,
          [ANN.source]: m.source,
          ...(input.publishedBy ? { [ANN.publishedBy]: input.publishedBy } : {}),
        },
      },
      binaryData: { [key]: payload.subarray((i - 1) * max, i * max).toString('base64') },
    });
  }
  return { set: input.set, configMaps, encoding, payloadBytes: payload.length };
}

/** RFC 3339 UTC without fractional seconds when there are none (`2025-01-31T12:00:00Z`). */
function rfc3339(d: Date): string {
  return d.toISOString().replace('.000Z', 'Z');
}

/**
 * Group CRL ConfigMaps (e.g. an informer's cache) into sets by `ca-proxy.io/crl-set`; a ConfigMap
 * without that label is a set of its own, named after the ConfigMap. Sorted by set name.
 */
export function groupCrlSets(cms: readonly CrlConfigMap[]): Map<string, CrlConfigMap[]> {
  const out = new Map<string, CrlConfigMap[]>();
  for (const cm of cms) {
    const set = cm.metadata?.labels?.[LABEL_SET] ?? cm.metadata?.name ?? '';
    const list = out.get(set);
    if (list) list.push(cm);
    else out.set(set, [cm]);
  }
  return new Map([...out].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * The CrlMeta of one ConfigMap's annotations.
 * @throws CrlConfigMapError `malformed` when a required annotation is missing or unreadable
 */
export function readCrlMeta(cm: CrlConfigMap): CrlMeta {
  const name = cm.metadata?.name ?? '<unnamed>';
  const a = cm.metadata?.annotations ?? {};
  const need = (k: string): string => {
    const v = a[k];
    if (v === undefined || v === '') throw new CrlConfigMapError('malformed', `${name}: annotation ${k} is missing`);
    return v;
  };
  const date = (k: string, v: string): Date => {
    const d = new Date(v);
    if (Number.isNaN(d.getTime())) throw new CrlConfigMapError('malformed', `${name}: annotation ${k} is not a time: ${JSON.stringify(v)}`);
    return d;
  };
  const sha256 = need(ANN.sha256);
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new CrlConfigMapError('malformed', `${name}: annotation ${ANN.sha256} is not a lower-case hex SHA-256`);
  const crlNumber = a[ANN.crlNumber] ?? null;
  if (crlNumber !== null && !/^[0-9]+$/.test(crlNumber)) throw new CrlConfigMapError('malformed', `${name}: annotation ${ANN.crlNumber} is not a decimal number`);
  return {
    issuer: a[ANN.issuer] ?? '',
    thisUpdate: date(ANN.thisUpdate, need(ANN.thisUpdate)),
    nextUpdate: a[ANN.nextUpdate] ? date(ANN.nextUpdate, a[ANN.nextUpdate]) : null,
    crlNumber,
    sha256,
    source: a[ANN.source] ?? '',
  };
}

/** One ConfigMap's place in a set: which part of how many, the payload key and its encoding. */
interface PartRef {
  cm: CrlConfigMap;
  meta: CrlMeta;
  i: number;
  n: number;
  encoding: Encoding;
  key: string;
}

const KEY_RE = /^crl\.der(\.gz)?(?:\.part-([1-9][0-9]*)-of-([1-9][0-9]*))?$/;

/** @throws CrlConfigMapError `malformed` */
function partRef(cm: CrlConfigMap): PartRef {
  const name = cm.metadata?.name ?? '<unnamed>';
  const keys = Object.keys(cm.binaryData ?? {});
  if (keys.length !== 1 || Object.keys(cm.data ?? {}).length > 0) throw new CrlConfigMapError('malformed', `${name}: needs exactly one binaryData key and no data keys (has ${keys.length} binaryData keys)`);
  const key = keys[0]!;
  const k = KEY_RE.exec(key);
  if (!k) throw new CrlConfigMapError('malformed', `${name}: binaryData key ${JSON.stringify(key)} is not crl.der[.gz][.part-<i>-of-<n>]`);
  const i = k[2] ? Number(k[2]) : 1;
  const n = k[3] ? Number(k[3]) : 1;
  if (i > n || n > 100_000) throw new CrlConfigMapError('malformed', `${name}: part ${i} of ${n}`);
  const ann = cm.metadata?.annotations?.[ANN.part];
  if (ann !== undefined && ann !== `${i}/${n}`) throw new CrlConfigMapError('malformed', `${name}: annotation ${ANN.part} "${ann}" disagrees with key ${key}`);
  return { cm, meta: readCrlMeta(cm), i, n, encoding: k[1] ? 'gzip' : 'identity', key };
}

export interface DecodeOptions {
  /** Largest DER accepted after gunzip (default 256 MiB, the store's default maxCrlBytes). */
  maxDerBytes?: number;
}

export interface DecodedSet {
  der: Buffer;
  meta: CrlMeta;
  /** The ConfigMaps of the generation used, parts 1..n in order. */
  configMaps: CrlConfigMap[];
}

/**
 * Reassemble and check the CRL of one set (the ConfigMaps `groupCrlSets` gave for it): the best
 * complete generation (highest crl-number, then latest this-update), concatenated, gunzipped
 * when encoded so (bounded by `maxDerBytes`), its SHA-256 checked against the annotation. The
 * DER is not parsed or signature-checked here: the caller validates it as any CRL.
 * @throws CrlConfigMapError `incomplete` (no complete generation), `malformed` (a ConfigMap of
 *   the set is unreadable, or the bytes do not hash to the annotation), `too_large`
 */
export async function decodeCrlSet(cms: readonly CrlConfigMap[], opts: DecodeOptions = {}): Promise<DecodedSet> {
  const maxDer = opts.maxDerBytes ?? 256 * 1024 * 1024;
  const refs = cms.map(partRef);
  const setName = cms[0]?.metadata?.labels?.[LABEL_SET] ?? cms[0]?.metadata?.name ?? '<empty>';
  const gens = new Map<string, (PartRef | undefined)[]>();
  for (const r of refs) {
    const g = `${r.meta.sha256}|${r.n}|${r.encoding}`;
    let slots = gens.get(g);
    if (!slots) gens.set(g, (slots = new Array<PartRef | undefined>(r.n).fill(undefined)));
    if (slots[r.i - 1]) throw new CrlConfigMapError('malformed', `set ${setName}: part ${r.i}/${r.n} appears twice (${slots[r.i - 1]!.cm.metadata?.name}, ${r.cm.metadata?.name})`);
    slots[r.i - 1] = r;
  }
  const complete = [...gens.values()].filter((s): s is PartRef[] => s.every((r) => r !== undefined));
  if (complete.length === 0) {
    const have = [...gens.values()].map((s) => `${s.filter(Boolean).length}/${s.length} of ${s.find(Boolean)!.meta.sha256.slice(0, 12)}`);
    throw new CrlConfigMapError('incomplete', `set ${setName}: no complete generation (${have.join(', ') || 'no ConfigMaps'})`);
  }
  complete.sort((a, b) => newerFirst(a[0]!.meta, b[0]!.meta));
  const parts = complete[0]!;
  for (const p of parts) {
    const m = p.meta;
    const m0 = parts[0]!.meta;
    if (m.crlNumber !== m0.crlNumber || m.thisUpdate.getTime() !== m0.thisUpdate.getTime() || (m.nextUpdate?.getTime() ?? null) !== (m0.nextUpdate?.getTime() ?? null)) {
      throw new CrlConfigMapError('malformed', `set ${setName}: parts of sha256 ${m0.sha256.slice(0, 12)} disagree on their annotations`);
    }
  }
  const chunks = parts.map((p) => fromBase64(p.cm.binaryData![p.key]!, `${p.cm.metadata?.name} binaryData.${p.key}`));
  const payload = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  const meta = parts[0]!.meta;
  let der: Buffer;
  if (parts[0]!.encoding === 'gzip') {
    try {
      // maxOutputLength bounds a decompression bomb.
      der = await gunzip(payload, { maxOutputLength: maxDer });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError) throw new CrlConfigMapError('too_large', `set ${setName}: CRL is larger than ${maxDer} bytes after gunzip`);
      throw new CrlConfigMapError('malformed', `set ${setName}: gzip payload: ${(e as Error).message}`);
    }
  } else {
    if (payload.length > maxDer) throw new CrlConfigMapError('too_large', `set ${setName}: CRL is ${payload.length} bytes, limit ${maxDer}`);
    der = payload;
  }
  const got = crypto.createHash('sha256').update(der).digest('hex');
  if (got !== meta.sha256) throw new CrlConfigMapError('malformed', `set ${setName}: SHA-256 of the reassembled CRL is ${got.slice(0, 12)}…, the annotation says ${meta.sha256.slice(0, 12)}…`);
  return { der, meta, configMaps: parts.map((p) => p.cm) };
}

/** What a set holds, from annotations and keys only (no base64 or gzip work). */
export interface SetSummary {
  /** The newest CRL any ConfigMap of the set announces (complete or not): the rollback floor. */
  newest: CrlMeta | null;
  /** The best complete generation's CRL, or null. */
  complete: CrlMeta | null;
  /** The complete generation is the only thing in the set (no leftover or foreign ConfigMaps). */
  clean: boolean;
  /** ConfigMaps that cannot be read as part of a set. */
  unreadable: string[];
}

/** Summarise one set's ConfigMaps (what the publisher needs before writing). Never throws. */
export function summarizeCrlSet(cms: readonly CrlConfigMap[]): SetSummary {
  const refs: PartRef[] = [];
  const unreadable: string[] = [];
  for (const cm of cms) {
    try {
      refs.push(partRef(cm));
    } catch {
      unreadable.push(cm.metadata?.name ?? '<unnamed>');
    }
  }
  let newest: CrlMeta | null = null;
  for (const r of refs) if (!newest || newerFirst(r.meta, newest) < 0) newest = r.meta;
  const gens = new Map<string, Set<number>>();
  const metaOf = new Map<string, PartRef>();
  for (const r of refs) {
    const g = `${r.meta.sha256}|${r.n}|${r.encoding}`;
    if (!gens.has(g)) gens.set(g, new Set());
    gens.get(g)!.add(r.i);
    metaOf.set(g, r);
  }
  const complete = [...gens].filter(([g, have]) => have.size === metaOf.get(g)!.n).map(([g]) => metaOf.get(g)!);
  complete.sort((a, b) => newerFirst(a.meta, b.meta));
  const best = complete[0] ?? null;
  return { newest, complete: best?.meta ?? null, clean: best !== null && cms.length === best.n && unreadable.length === 0, unreadable };
}

/** Sort order: higher cRLNumber first, then later thisUpdate. */
function newerFirst(a: CrlMeta, b: CrlMeta): number {
  if (a.crlNumber !== null && b.crlNumber !== null && a.crlNumber !== b.crlNumber) return BigInt(b.crlNumber) > BigInt(a.crlNumber) ? 1 : -1;
  return b.thisUpdate.getTime() - a.thisUpdate.getTime();
}

function fromBase64(s: string, what: string): Buffer {
  // Buffer.from skips bad characters silently; the API server only ever sends canonical base64.
  // A skipped character (or an early '=') makes the decoded length fall short of what the text's
  // length promises — an O(1) check after the decode, where a regex over a 20 MB value stalled
  // the event loop for ~100 ms (measured with bench/k8s-watcher.ts).
  const pad = s.endsWith('==') ? 2 : s.endsWith('=') ? 1 : 0;
  const out = s.length % 4 === 0 ? Buffer.from(s, 'base64') : null;
  if (!out || out.length !== (s.length / 4) * 3 - pad) throw new CrlConfigMapError('malformed', `${what} is not base64`);
  return out;
}
