/**
 * GeneralNames (RFC 5280 §4.2.1.6), distribution points (§4.2.1.13, §5.2.5) and name constraints
 * (§4.2.1.10) — the name-shaped parts of path validation and CRL scope.
 *
 * Names are compared by key: a directoryName by `nameKey` (RFC 5280 §7.1), DNS names and e-mail
 * hosts case-insensitively, URIs exactly except for the host's case. Every parser throws
 * `ParseError` on malformed DER; callers turn that into a refusal.
 */
import { BoundedReader, ParseError } from '../bytes/reader';
import { Tag, bitStringContent, booleanContent, contextTag, enter, oidToString, peekTag, readLength, readOidBytes, readRawElement, readTag } from './der';
import { nameKey, rdnKey } from './certinfo';

export type GeneralName =
  | { type: 'email'; value: string }
  | { type: 'dns'; value: string }
  | { type: 'dn'; key: string; rdns: string[] }
  | { type: 'uri'; value: string }
  | { type: 'ip'; value: Buffer }
  | { type: 'other'; tag: number; value: Buffer };

/** Read GeneralName elements until the reader's end. */
export function readGeneralNames(r: BoundedReader): GeneralName[] {
  const out: GeneralName[] = [];
  while (!r.atEnd) out.push(readGeneralName(r));
  return out;
}

/**
 * GeneralNames given as a whole SEQUENCE (tag included), e.g. a subjectAltName extnValue.
 * `strict`: also hold every GeneralName to its CHOICE alternative (`checkGeneralName`) and the
 * SEQUENCE to SIZE (1..MAX) — what a CRL entry's certificateIssuer must satisfy, since a name that
 * does not decode there would silently name nobody.
 */
export function parseGeneralNames(der: Buffer, opts: { strict?: boolean } = {}): GeneralName[] {
  const r = new BoundedReader(der);
  const seq = enter(r, Tag.SEQUENCE, 'GeneralNames');
  r.expectEnd('GeneralNames');
  if (!opts.strict) return readGeneralNames(seq);
  if (seq.atEnd) throw new ParseError('malformed', 'GeneralNames: empty SEQUENCE (SIZE (1..MAX))');
  const out: GeneralName[] = [];
  while (!seq.atEnd) {
    const start = seq.offset;
    const name = readGeneralName(seq);
    checkGeneralName(seq.buf.subarray(start, seq.offset));
    out.push(name);
  }
  return out;
}

/**
 * Structure of a Name: SEQUENCE OF RelativeDistinguishedName, each a non-empty SET OF
 * AttributeTypeAndValue { OID, ANY } (RFC 5280 §4.1.2.4). @throws ParseError
 */
export function checkName(nameDer: Buffer): void {
  const r = new BoundedReader(nameDer);
  const seq = enter(r, Tag.SEQUENCE, 'Name');
  r.expectEnd('Name');
  while (!seq.atEnd) {
    const set = enter(seq, Tag.SET, 'RelativeDistinguishedName');
    if (set.atEnd) throw new ParseError('malformed', 'empty RelativeDistinguishedName');
    while (!set.atEnd) {
      const atv = enter(set, Tag.SEQUENCE, 'AttributeTypeAndValue');
      readOidBytes(atv, 'AttributeType');
      readRawElement(atv, 'AttributeValue');
      atv.expectEnd('AttributeTypeAndValue');
    }
  }
}

/**
 * One GeneralName element (tag, length, content) against its CHOICE alternative (RFC 5280
 * §4.2.1.6): otherName [0] { OID, [0] EXPLICIT ANY }; rfc822Name [1], dNSName [2] and URI [6]
 * IA5String; x400Address [3] and ediPartyName [5] constructed; directoryName [4] EXPLICIT Name;
 * iPAddress [7] of 4 or 16 octets; registeredID [8] an OBJECT IDENTIFIER. @throws ParseError
 */
export function checkGeneralName(element: Buffer): void {
  const r = new BoundedReader(element);
  const tag = readTag(r, 'GeneralName');
  const content = r.bytes(readLength(r, 'GeneralName'), 'GeneralName');
  r.expectEnd('GeneralName');
  const n = tag & 0x1f;
  const want = [true, false, false, true, true, true, false, false, false][n];
  if ((tag & 0xc0) !== 0x80 || want === undefined || (tag === contextTag(n, true)) !== want) {
    throw new ParseError('malformed', `GeneralName: tag 0x${tag.toString(16)} is no GeneralName alternative`);
  }
  switch (n) {
    case 0: {
      const o = new BoundedReader(content);
      readOidBytes(o, 'otherName type-id');
      enter(o, contextTag(0, true), 'otherName value');
      o.expectEnd('otherName');
      break;
    }
    case 1:
    case 2:
    case 6:
      for (const b of content) if (b > 0x7f) throw new ParseError('malformed', `GeneralName [${n}]: not an IA5String`);
      break;
    case 3:
    case 5:
      break;
    case 4:
      checkName(content);
      break;
    case 7:
      if (content.length !== 4 && content.length !== 16) throw new ParseError('malformed', `iPAddress of ${content.length} octets (4 or 16)`);
      break;
    case 8:
      oidToString(content, 'registeredID');
      break;
  }
}

function readGeneralName(r: BoundedReader): GeneralName {
  const tag = readTag(r, 'GeneralName');
  const content = r.bytes(readLength(r, 'GeneralName'), 'GeneralName');
  switch (tag) {
    case contextTag(1, false):
      return { type: 'email', value: content.toString('latin1') };
    case contextTag(2, false):
      return { type: 'dns', value: content.toString('latin1') };
    case contextTag(4, true): {
      // directoryName [4] EXPLICIT Name
      return dnName(content);
    }
    case contextTag(6, false):
      return { type: 'uri', value: content.toString('latin1') };
    case contextTag(7, false):
      return { type: 'ip', value: content };
    default:
      return { type: 'other', tag, value: content };
  }
}

function dnName(nameDer: Buffer): GeneralName {
  const key = nameKey(nameDer);
  return { type: 'dn', key, rdns: rdnsOf(nameDer) };
}

/** The per-RDN keys of a Name (for subtree and relative-name matching). */
export function rdnsOf(nameDer: Buffer): string[] {
  const r = new BoundedReader(nameDer);
  const seq = enter(r, Tag.SEQUENCE, 'Name');
  const out: string[] = [];
  while (!seq.atEnd) out.push(rdnKey(enter(seq, Tag.SET, 'RelativeDistinguishedName')));
  return out;
}

/** A directoryName GeneralName for a Name DER. */
export function directoryName(nameDer: Buffer): GeneralName {
  return dnName(nameDer);
}

/** Whether two GeneralNames name the same thing. */
export function sameGeneralName(a: GeneralName, b: GeneralName): boolean {
  if (a.type !== b.type) return false;
  switch (a.type) {
    case 'dn':
      return a.key === (b as typeof a).key;
    case 'dns':
    case 'email':
      return a.value.toLowerCase() === (b as typeof a).value.toLowerCase();
    case 'uri':
      return normalizeUri(a.value) === normalizeUri((b as typeof a).value);
    case 'ip':
      return a.value.equals((b as typeof a).value);
    case 'other':
      return a.tag === (b as typeof a).tag && a.value.equals((b as typeof a).value);
  }
}

/** Scheme and host are case-insensitive (RFC 3986 §6.2.2.1); the rest is compared as is. */
function normalizeUri(u: string): string {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)(.*)$/s.exec(u);
  return m ? `${m[1]!.toLowerCase()}://${m[2]!.toLowerCase()}${m[3]}` : u;
}

export function anyNameMatches(a: readonly GeneralName[], b: readonly GeneralName[]): boolean {
  return a.some((x) => b.some((y) => sameGeneralName(x, y)));
}

// ---- distribution points -------------------------------------------------------------------

/** ReasonFlags bits 1..8 (RFC 5280 §4.2.1.13): every reason a CRL can cover. */
export const ALL_REASONS = 0x1fe;

/**
 * DistributionPointName resolved to GeneralNames: fullName as is; nameRelativeToCRLIssuer
 * appended to `crlIssuerDer` (RFC 5280 §4.2.1.13: relative to the CRL issuer).
 */
export type DpName = GeneralName[];

export interface DistributionPoint {
  /** null when the distributionPoint field is absent. */
  name: DpName | null;
  /** ReasonFlags as a mask of bits 1..8, or null when absent (all reasons). */
  reasons: number | null;
  /** cRLIssuer GeneralNames, or null when absent. */
  crlIssuer: GeneralName[] | null;
}

/** ReasonFlags BIT STRING content → mask with bit n set for ReasonFlags bit n. */
export function reasonFlags(content: Buffer): number {
  const bits = bitStringContent(content, 'ReasonFlags');
  let mask = 0;
  const n = bits.bytes.length * 8 - bits.unusedBits;
  for (let i = 0; i < Math.min(n, 16); i++) if ((bits.bytes[i >> 3]! >> (7 - (i & 7))) & 1) mask |= 1 << i;
  return mask;
}

/**
 * DistributionPointName content of a `[0]` element (`content` is what is inside [0]).
 * `relativeTo`: the Name DER a nameRelativeToCRLIssuer is relative to.
 */
export function readDpName(content: Buffer, relativeTo: readonly Buffer[]): DpName {
  const r = new BoundedReader(content);
  const tag = readTag(r, 'DistributionPointName');
  const inner = r.sub(readLength(r, 'DistributionPointName'), 'DistributionPointName');
  if (tag === contextTag(0, true)) return readGeneralNames(inner);
  if (tag === contextTag(1, true)) {
    const rdn = rdnKey(inner);
    return relativeTo.map((n) => {
      const rdns = [...rdnsOf(n), rdn];
      return { type: 'dn', key: rdns.join(','), rdns } as GeneralName;
    });
  }
  throw new ParseError('malformed', `DistributionPointName: unexpected tag 0x${tag.toString(16)}`);
}

/**
 * CRLDistributionPoints / FreshestCRL extnValue (RFC 5280 §4.2.1.13). A nameRelativeToCRLIssuer
 * is resolved against the DP's cRLIssuer, or the certificate issuer `issuerDer` when absent.
 */
export function parseDistributionPoints(value: Buffer, issuerDer: Buffer): DistributionPoint[] {
  const r = new BoundedReader(value);
  const seq = enter(r, Tag.SEQUENCE, 'CRLDistributionPoints');
  r.expectEnd('CRLDistributionPoints');
  const out: DistributionPoint[] = [];
  while (!seq.atEnd) {
    const dp = enter(seq, Tag.SEQUENCE, 'DistributionPoint');
    let nameContent: Buffer | null = null;
    let reasons: number | null = null;
    let crlIssuer: GeneralName[] | null = null;
    let crlIssuerDns: Buffer[] = [];
    while (!dp.atEnd) {
      const t = readTag(dp, 'DistributionPoint field');
      const content = dp.bytes(readLength(dp, 'DistributionPoint field'));
      if (t === contextTag(0, true)) nameContent = content;
      else if (t === contextTag(1, false)) reasons = reasonFlags(content);
      else if (t === contextTag(2, true)) {
        const gr = new BoundedReader(content);
        crlIssuer = [];
        crlIssuerDns = [];
        while (!gr.atEnd) {
          const start = gr.offset;
          const gn = readGeneralName(gr);
          crlIssuer.push(gn);
          if (gn.type === 'dn') {
            const e = new BoundedReader(gr.buf, start, gr.offset);
            readTag(e);
            readLength(e);
            crlIssuerDns.push(e.buf.subarray(e.offset, gr.offset));
          }
        }
      } else throw new ParseError('malformed', `DistributionPoint: unexpected tag 0x${t.toString(16)}`);
    }
    const name = nameContent ? readDpName(nameContent, crlIssuer ? crlIssuerDns : [issuerDer]) : null;
    out.push({ name, reasons, crlIssuer });
  }
  return out;
}

/** IssuingDistributionPoint (RFC 5280 §5.2.5), with its name resolved against the CRL issuer. */
export interface Idp {
  name: DpName | null;
  onlyContainsUserCerts: boolean;
  onlyContainsCACerts: boolean;
  onlyContainsAttributeCerts: boolean;
  /** onlySomeReasons mask (bit n = ReasonFlags bit n), or null when absent (all reasons). */
  onlySomeReasons: number | null;
  indirectCRL: boolean;
}

/**
 * Parse and validate an IssuingDistributionPoint extnValue (RFC 5280 §5.2.5) — the one parser,
 * run when a CRL is parsed (so a CRL whose IDP does not decode is refused `malformed`) and when
 * the revocation check reads its scope. Fields in tag order, each at most once: distributionPoint
 * [0] (constructed; one DistributionPointName, a nameRelativeToCRLIssuer resolved against
 * `crlIssuerDer`), the BOOLEANs [1] [2] [4] [5] in DER, onlySomeReasons [3] ReasonFlags; at most
 * one of onlyContainsUserCerts, onlyContainsCACerts, onlyContainsAttributeCerts TRUE.
 * @throws ParseError
 */
export function parseIdp(value: Buffer, crlIssuerDer: Buffer): Idp {
  const r = new BoundedReader(value);
  const seq = enter(r, Tag.SEQUENCE, 'IssuingDistributionPoint');
  r.expectEnd('IssuingDistributionPoint');
  const out: Idp = { name: null, onlyContainsUserCerts: false, onlyContainsCACerts: false, onlyContainsAttributeCerts: false, onlySomeReasons: null, indirectCRL: false };
  let last = -1;
  while (!seq.atEnd) {
    const t = readTag(seq, 'IssuingDistributionPoint field');
    const content = seq.bytes(readLength(seq, 'IssuingDistributionPoint field'));
    const n = t & 0x1f;
    if ((t & 0xc0) !== 0x80 || n <= last || n > 5) throw new ParseError('malformed', `IssuingDistributionPoint: unexpected tag 0x${t.toString(16)}`);
    last = n;
    if (t !== contextTag(n, n === 0)) throw new ParseError('malformed', `IssuingDistributionPoint: field [${n}] must be ${n === 0 ? 'constructed' : 'primitive'}`);
    switch (n) {
      case 0: {
        // Exactly one DistributionPointName inside [0].
        const d = new BoundedReader(content);
        readTag(d, 'DistributionPointName');
        d.skip(readLength(d, 'DistributionPointName'));
        d.expectEnd('distributionPoint');
        out.name = readDpName(content, [crlIssuerDer]);
        break;
      }
      case 1:
        out.onlyContainsUserCerts = booleanContent(content, 'onlyContainsUserCerts');
        break;
      case 2:
        out.onlyContainsCACerts = booleanContent(content, 'onlyContainsCACerts');
        break;
      case 3:
        out.onlySomeReasons = reasonFlags(content);
        break;
      case 4:
        out.indirectCRL = booleanContent(content, 'indirectCRL');
        break;
      case 5:
        out.onlyContainsAttributeCerts = booleanContent(content, 'onlyContainsAttributeCerts');
        break;
    }
  }
  const only = Number(out.onlyContainsUserCerts) + Number(out.onlyContainsCACerts) + Number(out.onlyContainsAttributeCerts);
  if (only > 1) throw new ParseError('malformed', 'IssuingDistributionPoint: at most one of onlyContainsUserCerts, onlyContainsCACerts, onlyContainsAttributeCerts may be TRUE (RFC 5280 §5.2.5)');
  return out;
}

// ---- name constraints ----------------------------------------------------------------------

export interface NameConstraints {
  permitted: GeneralName[];
  excluded: GeneralName[];
}

/** NameConstraints extnValue (RFC 5280 §4.2.1.10); minimum/maximum must be absent (0 / absent). */
export function parseNameConstraints(value: Buffer): NameConstraints {
  const r = new BoundedReader(value);
  const seq = enter(r, Tag.SEQUENCE, 'NameConstraints');
  const out: NameConstraints = { permitted: [], excluded: [] };
  while (!seq.atEnd) {
    const t = readTag(seq, 'NameConstraints field');
    const list = seq.sub(readLength(seq, 'NameConstraints field'));
    const target = t === contextTag(0, true) ? out.permitted : t === contextTag(1, true) ? out.excluded : null;
    if (!target) throw new ParseError('malformed', `NameConstraints: unexpected tag 0x${t.toString(16)}`);
    while (!list.atEnd) {
      const sub = enter(list, Tag.SEQUENCE, 'GeneralSubtree');
      target.push(readGeneralName(sub));
      if (peekTag(sub) !== undefined) throw new ParseError('unsupported', 'GeneralSubtree minimum/maximum (RFC 5280 §4.2.1.10: MUST be absent)');
    }
  }
  return out;
}

/** Whether `name` lies in the subtree `base` (same type assumed). */
export function inSubtree(name: GeneralName, base: GeneralName): boolean {
  switch (base.type) {
    case 'dn': {
      const n = name as typeof base;
      return base.rdns.length <= n.rdns.length && base.rdns.every((r, i) => r === n.rdns[i]);
    }
    case 'dns': {
      const c = base.value.toLowerCase().replace(/^\./, '');
      const v = (name as typeof base).value.toLowerCase();
      return c === '' || v === c || v.endsWith('.' + c);
    }
    case 'email': {
      const c = base.value.toLowerCase();
      const v = (name as typeof base).value.toLowerCase();
      if (c.includes('@')) return v === c;
      const host = v.slice(v.lastIndexOf('@') + 1);
      return c.startsWith('.') ? host.endsWith(c) : host === c;
    }
    case 'uri': {
      const c = base.value.toLowerCase();
      const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/(?:[^@/?#]*@)?(\[[^\]]*\]|[^:/?#]*)/.exec((name as typeof base).value);
      if (!m) return false; // a URI without an authority cannot satisfy a host constraint
      const host = m[1]!.toLowerCase();
      return c.startsWith('.') ? host.endsWith(c) : host === c;
    }
    case 'ip': {
      const ip = (name as typeof base).value;
      const half = base.value.length / 2;
      if (ip.length !== half) return false;
      for (let i = 0; i < half; i++) if ((ip[i]! & base.value[half + i]!) !== (base.value[i]! & base.value[half + i]!)) return false;
      return true;
    }
    case 'other':
      return false;
  }
}

/**
 * Whether `names` (a certificate's subject as a directoryName plus its subjectAltName entries and
 * any emailAddress attributes) satisfy every constraint set in `sets` (one per CA above it,
 * RFC 5280 §6.1.3 (b)(c): the intersection of permitted subtrees, the union of excluded ones).
 * Returns the first violation, or null.
 */
export function checkNameConstraints(names: readonly GeneralName[], sets: readonly NameConstraints[]): string | null {
  for (const set of sets) {
    for (const n of names) {
      if (n.type === 'dn' && n.rdns.length === 0) continue;
      const sameType = set.permitted.filter((p) => p.type === n.type);
      if (sameType.length > 0 && !sameType.some((p) => inSubtree(n, p))) return `${describe(n)} is outside the permitted subtrees`;
      if (set.excluded.some((e) => e.type === n.type && inSubtree(n, e))) return `${describe(n)} is in an excluded subtree`;
    }
  }
  return null;
}

function describe(n: GeneralName): string {
  switch (n.type) {
    case 'dn':
      return `directoryName ${n.key}`;
    case 'ip':
      return `iPAddress ${n.value.toString('hex')}`;
    case 'other':
      return `GeneralName [${n.tag & 0x1f}]`;
    default:
      return `${n.type} ${n.value}`;
  }
}
