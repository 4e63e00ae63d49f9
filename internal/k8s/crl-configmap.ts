/**
 * The CRL ConfigMap format: how the publisher writes one CRL into ConfigMaps (`encodeCrlConfigMaps`)
 * and how a watcher turns ConfigMaps back into the CRL's DER (`groupCrlConfigMaps` +
 * `decodeCrlSet`). docs/kubernetes.md ("CRL ConfigMap format") describes the same for users.
 *
 * One CRL source (one URL) is one *set*:
 * - a **head** ConfigMap `<base>-<sourceId>` carrying the annotations below; when the payload fits
 *   one object its bytes are in the head's `binaryData` under `crl.der` (plain DER) or
 *   `crl.der.gz` (gzip of the DER);
 * - when even the gzip payload does not fit one object, the head holds no data and the payload is
 *   cut into N chunks in **part** ConfigMaps `<head>-part-<i>` (i = 0..N-1), key `chunk`.
 *
 * Every object of every set carries the label `crl.ca-proxy.io/set: <base>` (the watcher's label
 * selector) and `crl.ca-proxy.io/role: head|part`. Annotations (prefix `crl.ca-proxy.io/`):
 * `issuer` (RFC 4514-style string), `this-update` / `next-update` (RFC 3339, next-update absent
 * when the CRL has none), `crl-number` (decimal), `sha256` (hex, of the whole DER), `source`
 * (URL), `encoding` (`identity` | `gzip`), `parts` (N, "1" when the data is in the head); parts
 * also carry `head` (the head's name), `part` (i), `parts`, `sha256` and `encoding`.
 *
 * Never trust a half-written set: the publisher writes the parts first and the head last, and a
 * set decodes only when the head and all N parts agree on `sha256`, `parts` and `encoding` and
 * the reassembled, gunzipped DER hashes to `sha256`. Anything else is `incomplete` (a write in
 * progress: wait for the next event) or `malformed`, and the watcher keeps its last good CRL.
 *
 * Size: kube-apiserver refuses a ConfigMap whose data exceeds 1 MiB (and etcd's request limit
 * is about 1.5 MiB). `binaryData` travels base64-encoded in JSON (4/3 larger), so a chunk is at
 * most (maxObjectBytes − 16 KiB headroom for metadata) × 3/4 raw bytes: the object then stays
 * under the limit whether the server counts raw data bytes or the encoded request body.
 */
import crypto from 'node:crypto';
import { promisify } from 'node:util';
import zlib from 'node:zlib';

const gzip = promisify(zlib.gzip);
const gunzip = promisify(zlib.gunzip);

/** Label and annotation prefix of the CRL ConfigMaps. */
export const CRL_PREFIX = 'crl.ca-proxy.io/';
export const LABEL_SET = `${CRL_PREFIX}set`;
export const LABEL_ROLE = `${CRL_PREFIX}role`;
export const ANN = {
  issuer: `${CRL_PREFIX}issuer`,
  thisUpdate: `${CRL_PREFIX}this-update`,
  nextUpdate: `${CRL_PREFIX}next-update`,
  crlNumber: `${CRL_PREFIX}crl-number`,
  sha256: `${CRL_PREFIX}sha256`,
  source: `${CRL_PREFIX}source`,
  encoding: `${CRL_PREFIX}encoding`,
  parts: `${CRL_PREFIX}parts`,
  part: `${CRL_PREFIX}part`,
  head: `${CRL_PREFIX}head`,
  publishedBy: `${CRL_PREFIX}published-by`,
} as const;
export const KEY_DER = 'crl.der';
export const KEY_GZ = 'crl.der.gz';
export const KEY_CHUNK = 'chunk';

/** kube-apiserver's ConfigMap limit (1 MiB of data). */
export const DEFAULT_MAX_OBJECT_BYTES = 1024 * 1024;
/** Room left for metadata, keys and JSON framing in each object. */
const HEADROOM_BYTES = 16 * 1024;

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
  /** The set's base name (publisher.configMapName); the label value of `crl.ca-proxy.io/set`. */
  base: string;
  /** Stable id of the source (`sourceIdFor(url)`). */
  sourceId: string;
  namespace: string;
  der: Buffer;
  meta: CrlMeta;
  /** Written into `crl.ca-proxy.io/published-by` (the Lease holder identity). */
  publishedBy?: string;
  maxObjectBytes?: number;
  /** Extra labels on every object (e.g. app.kubernetes.io/*). */
  labels?: { [k: string]: string };
}

export interface EncodedSet {
  headName: string;
  /** Write these first (empty when the payload is in the head). */
  parts: CrlConfigMap[];
  /** Write this last. */
  head: CrlConfigMap;
  encoding: Encoding;
  /** Payload bytes (DER or gzip) before base64. */
  payloadBytes: number;
}

/** Error of a set that cannot be decoded. `incomplete`: a write may be in progress. */
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

export function headNameFor(base: string, sourceId: string): string {
  return `${base}-${sourceId}`;
}

export function partNameFor(headName: string, i: number): string {
  return `${headName}-part-${i}`;
}

/** Largest raw chunk per object for a given object limit (see the module comment). */
export function chunkBytesFor(maxObjectBytes: number): number {
  return Math.max(1024, Math.floor(((maxObjectBytes - HEADROOM_BYTES) * 3) / 4));
}

/**
 * Build the ConfigMaps of one CRL: plain DER in the head when it fits; else gzip in the head when
 * that fits; else gzip cut into parts. gzip runs in the libuv thread pool.
 */
export async function encodeCrlConfigMaps(input: EncodeInput): Promise<EncodedSet> {
  const maxObject = input.maxObjectBytes ?? DEFAULT_MAX_OBJECT_BYTES;
  const chunk = chunkBytesFor(maxObject);
  const headName = headNameFor(input.base, input.sourceId);
  let encoding: Encoding = 'identity';
  let payload = input.der;
  if (payload.length > chunk) {
    encoding = 'gzip';
    payload = await gzip(input.der, { level: 6 });
  }
  const n = Math.max(1, Math.ceil(payload.length / chunk));
  const common = (role: 'head' | 'part'): { [k: string]: string } => ({ ...(input.labels ?? {}), [LABEL_SET]: input.base, [LABEL_ROLE]: role });
  const m = input.meta;
  const headAnn: { [k: string]: string } = {
    [ANN.issuer]: m.issuer,
    [ANN.thisUpdate]: m.thisUpdate.toISOString(),
    ...(m.nextUpdate ? { [ANN.nextUpdate]: m.nextUpdate.toISOString() } : {}),
    ...(m.crlNumber !== null ? { [ANN.crlNumber]: m.crlNumber } : {}),
    [ANN.sha256]: m.sha256,
    [ANN.source]: m.source,
    [ANN.encoding]: encoding,
    [ANN.parts]: String(n),
    ...(input.publishedBy ? { [ANN.publishedBy]: input.publishedBy } : {}),
  };
  const parts: CrlConfigMap[] = [];
  if (n > 1) {
    for (let i = 0; i < n; i++) {
      parts.push({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: {
          name: partNameFor(headName, i),
          namespace: input.namespace,
          labels: common('part'),
          annotations: { [ANN.head]: headName, [ANN.part]: String(i), [ANN.parts]: String(n), [ANN.sha256]: m.sha256, [ANN.encoding]: encoding },
        },
        binaryData: { [KEY_CHUNK]: payload.subarray(i * chunk, (i + 1) * chunk).toString('base64') },
      });
    }
  }
  const head: CrlConfigMap = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: headName, namespace: input.namespace, labels: common('head'), annotations: headAnn },
    ...(n === 1 ? { binaryData: { [encoding === 'gzip' ? KEY_GZ : KEY_DER]: payload.toString('base64') } } : {}),
  };
  return { headName, parts, head, encoding, payloadBytes: payload.length };
}

/** A head with the parts found for it (possibly not all of them yet). */
export interface CrlSetObjects {
  head: CrlConfigMap;
  /** Parts by index (`crl.ca-proxy.io/part`), whatever their sha256. */
  parts: Map<number, CrlConfigMap>;
}

/**
 * Group CRL ConfigMaps (e.g. an informer's cache for one `crl.ca-proxy.io/set`) into sets by
 * head name. Parts without their head are ignored (a set being created, or left over).
 */
export function groupCrlConfigMaps(cms: readonly CrlConfigMap[]): CrlSetObjects[] {
  const heads = new Map<string, CrlSetObjects>();
  for (const cm of cms) {
    if (cm.metadata?.labels?.[LABEL_ROLE] === 'head' && cm.metadata.name) heads.set(cm.metadata.name, { head: cm, parts: new Map() });
  }
  for (const cm of cms) {
    const a = cm.metadata?.annotations;
    if (cm.metadata?.labels?.[LABEL_ROLE] !== 'part' || !a) continue;
    const set = heads.get(a[ANN.head] ?? '');
    const i = Number(a[ANN.part]);
    if (set && Number.isInteger(i) && i >= 0) set.parts.set(i, cm);
  }
  return [...heads.values()].sort((x, y) => (x.head.metadata!.name! < y.head.metadata!.name! ? -1 : 1));
}

/**
 * The head's annotations as CrlMeta.
 * @throws CrlConfigMapError `malformed` when a required annotation is missing or unreadable
 */
export function readCrlMeta(head: CrlConfigMap): CrlMeta {
  const name = head.metadata?.name ?? '<unnamed>';
  const a = head.metadata?.annotations ?? {};
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
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new CrlConfigMapError('malformed', `${name}: annotation ${ANN.sha256} is not a hex SHA-256`);
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

export interface DecodeOptions {
  /** Largest DER accepted after gunzip (default 256 MiB, the store's default). */
  maxDerBytes?: number;
}

/**
 * Reassemble and check one set: returns the CRL's DER (not yet parsed or signature-checked —
 * the caller validates it as any CRL) and the head's metadata.
 * @throws CrlConfigMapError `incomplete` (parts missing or from another write), `malformed`
 *   (bad annotations, base64, gzip, or a SHA-256 mismatch), `too_large`
 */
export async function decodeCrlSet(set: CrlSetObjects, opts: DecodeOptions = {}): Promise<{ der: Buffer; meta: CrlMeta }> {
  const maxDer = opts.maxDerBytes ?? 256 * 1024 * 1024;
  const head = set.head;
  const name = head.metadata?.name ?? '<unnamed>';
  const meta = readCrlMeta(head);
  const a = head.metadata?.annotations ?? {};
  const encoding = a[ANN.encoding];
  if (encoding !== 'identity' && encoding !== 'gzip') throw new CrlConfigMapError('malformed', `${name}: annotation ${ANN.encoding} must be identity or gzip`);
  const n = Number(a[ANN.parts]);
  if (!Number.isInteger(n) || n < 1 || n > 100_000) throw new CrlConfigMapError('malformed', `${name}: annotation ${ANN.parts} must be a positive integer`);

  let chunks: Buffer[];
  if (n === 1) {
    const key = encoding === 'gzip' ? KEY_GZ : KEY_DER;
    const b64 = head.binaryData?.[key];
    if (b64 === undefined) throw new CrlConfigMapError('malformed', `${name}: binaryData.${key} is missing`);
    chunks = [fromBase64(b64, `${name} binaryData.${key}`)];
  } else {
    chunks = [];
    for (let i = 0; i < n; i++) {
      const p = set.parts.get(i);
      const pa = p?.metadata?.annotations ?? {};
      if (!p) throw new CrlConfigMapError('incomplete', `${name}: part ${i} of ${n} is missing`);
      if (pa[ANN.sha256] !== meta.sha256 || pa[ANN.parts] !== String(n) || pa[ANN.encoding] !== encoding) {
        throw new CrlConfigMapError('incomplete', `${name}: part ${i} belongs to another write (sha256 ${pa[ANN.sha256]?.slice(0, 12) ?? 'none'}, head ${meta.sha256.slice(0, 12)})`);
      }
      const b64 = p.binaryData?.[KEY_CHUNK];
      if (b64 === undefined) throw new CrlConfigMapError('malformed', `${p.metadata?.name}: binaryData.${KEY_CHUNK} is missing`);
      chunks.push(fromBase64(b64, `${p.metadata?.name} binaryData.${KEY_CHUNK}`));
    }
  }
  const payload = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  let der: Buffer;
  if (encoding === 'gzip') {
    try {
      // maxOutputLength bounds a decompression bomb.
      der = await gunzip(payload, { maxOutputLength: maxDer });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ERR_BUFFER_TOO_LARGE') throw new CrlConfigMapError('too_large', `${name}: CRL is larger than ${maxDer} bytes after gunzip`);
      throw new CrlConfigMapError('malformed', `${name}: gzip payload: ${(e as Error).message}`);
    }
  } else {
    if (payload.length > maxDer) throw new CrlConfigMapError('too_large', `${name}: CRL is ${payload.length} bytes, limit ${maxDer}`);
    der = payload;
  }
  const got = crypto.createHash('sha256').update(der).digest('hex');
  if (got !== meta.sha256) throw new CrlConfigMapError('malformed', `${name}: SHA-256 of the reassembled CRL is ${got.slice(0, 12)}…, annotation says ${meta.sha256.slice(0, 12)}…`);
  return { der, meta };
}

function fromBase64(s: string, what: string): Buffer {
  // Buffer.from ignores bad characters silently; the API server only ever sends canonical base64.
  if (s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) throw new CrlConfigMapError('malformed', `${what} is not base64`);
  return Buffer.from(s, 'base64');
}
