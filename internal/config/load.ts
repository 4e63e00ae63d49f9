/**
 * Loads the ca-proxy configuration: YAML (the `yaml` package, YAML 1.2 core schema) merged
 * over the embedded defaults, validated against ./schema.ts with ajv, checked across fields,
 * and with file paths resolved against the config file's folder.
 *
 * Every problem is collected, not only the first, and thrown as one `ConfigError` whose
 * lines read like compiler errors: `config.yaml:12:13: rules[2].action: must be one of
 * intercept, passthrough, deny` (line:column when the value is in the file, not from the
 * defaults).
 */
import fs from 'node:fs';
import path from 'node:path';
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import YAML, { isMap, isSeq, type Document, LineCounter } from 'yaml';
import { defaultConfig } from './defaults';
import { parseCidr } from './cidr';
import { configSchema, EXPECTED_KEYWORD } from './schema';
import type { Config, IdentityConfig } from './types';

/** One problem in a configuration. `path` is `rules[2].action` style, `(root)` for the whole file. */
export interface ConfigProblem {
  path: string;
  message: string;
  /** 1-based position of the offending value in the source, when it came from the source. */
  line?: number;
  column?: number;
}

/** An invalid configuration; `problems` lists all of them, `message` has one line per problem. */
export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: readonly ConfigProblem[],
  ) {
    super(problems.map((p) => formatProblem(source, p)).join('\n'));
    this.name = 'ConfigError';
  }
}

/** `source:line:col: path: message` (position omitted when unknown). */
export function formatProblem(source: string, p: ConfigProblem): string {
  const at = p.line === undefined ? '' : `:${p.line}${p.column === undefined ? '' : `:${p.column}`}`;
  return p.path === '' ? `${source}${at}: ${p.message}` : `${source}${at}: ${p.path}: ${p.message}`;
}

/** Config files are a few KiB; anything this large is a mistake (or an attack on the parser). */
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

/**
 * Reads and validates the configuration file `file`. Relative paths inside it are resolved
 * against its folder; problems are reported against `file` as given.
 * @throws ConfigError for an unreadable file or any invalid content
 */
export function loadConfig(file: string): Config {
  let text: string;
  try {
    const stat = fs.statSync(file);
    if (!stat.isFile()) throw new Error('not a regular file');
    if (stat.size > MAX_CONFIG_BYTES) throw new Error(`larger than ${MAX_CONFIG_BYTES} bytes`);
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [{ path: '', message: `cannot read: ${(err as Error).message}` }]);
  }
  return parseConfig(text, path.dirname(path.resolve(file)), file);
}

/**
 * Parses configuration text (YAML or JSON). `baseDir` resolves relative paths; `sourceName`
 * prefixes error lines.
 * @throws ConfigError listing every problem found
 */
export function parseConfig(text: string, baseDir: string, sourceName: string): Config {
  const lineCounter = new LineCounter();
  const doc = YAML.parseDocument(text.replace(/^\uFEFF/, ''), { prettyErrors: true, lineCounter, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      sourceName,
      doc.errors.map((e) => ({
        path: '',
        message: `invalid YAML: ${e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')}`,
        line: e.linePos?.[0].line,
        column: e.linePos?.[0].col,
      })),
    );
  }
  let raw: unknown;
  try {
    // maxAliasCount bounds alias expansion ("billion laughs").
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError(sourceName, [{ path: '', message: `invalid YAML: ${(err as Error).message}` }]);
  }
  if (raw === null || raw === undefined) raw = {};
  if (!isPlainObject(raw)) {
    throw new ConfigError(sourceName, [{ path: '(root)', message: `must be a mapping (got ${describe(raw)})` }]);
  }
  const merged = mergeOver(defaultConfig(), raw);
  const problems = collectProblems(merged).map((p) => locate(p, doc, lineCounter));
  if (problems.length > 0) throw new ConfigError(sourceName, sortProblems(problems));
  return resolvePaths(merged as Config, baseDir);
}

/**
 * Validates an already-built configuration object (schema and cross-field checks, no merging,
 * no path resolution), e.g. `devConfig()`.
 * @throws ConfigError listing every problem found
 */
export function validateConfig(value: unknown, sourceName: string): Config {
  const problems = collectProblems(value).map(toProblem);
  if (problems.length > 0) throw new ConfigError(sourceName, problems);
  return value as Config;
}

/**
 * Splits a `host:port` listener address (`127.0.0.1:3128`, `[::1]:9090`, `localhost:0`).
 * @throws RangeError when the value is not host:port with a port 0–65535
 */
export function parseHostPort(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new RangeError(`not a host:port address: ${JSON.stringify(value)}`);
  return { host: m[1] ?? m[2], port };
}

// ---------------------------------------------------------------------------------------------
// Merging and path resolution

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Objects merge key by key; anything else (lists included) in `override` replaces the base.
 * Keys are defined, not assigned, so a YAML key `__proto__` stays an ordinary (and, to the
 * schema, unknown) field instead of replacing the prototype.
 */
function mergeOver(base: unknown, override: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(override)) return override === undefined ? base : override;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(base)) define(out, k, v);
  for (const [k, v] of Object.entries(override)) define(out, k, mergeOver(base[k], v));
  return out;
}

function define(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function resolvePaths(c: Config, baseDir: string): Config {
  const r = (p: string): string => path.resolve(baseDir, p);
  const identity = (i: IdentityConfig): IdentityConfig => ({
    ...i,
    ...(i.cert !== undefined && { cert: r(i.cert) }),
    ...(i.key !== undefined && { key: r(i.key) }),
    ...(i.pfx !== undefined && { pfx: r(i.pfx) }),
  });
  return {
    ...c,
    interceptionCA: { cert: r(c.interceptionCA.cert), key: r(c.interceptionCA.key) },
    trust: { ...c.trust, caFiles: c.trust.caFiles.map(r) },
    revocation: { ...c.revocation, crlPaths: c.revocation.crlPaths.map(r), crlSigners: c.revocation.crlSigners.map(r) },
    identities: c.identities.map(identity),
    workloadCA: c.workloadCA.map(r),
  };
}

// ---------------------------------------------------------------------------------------------
// Validation

type Segments = (string | number)[];
interface RawProblem {
  segments: Segments;
  message: string;
  /** The problem is about the key itself (unknown field), not its value. */
  atKey?: boolean;
}

let compiled: ValidateFunction | undefined;
function schemaValidator(): ValidateFunction {
  if (compiled === undefined) {
    const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, allowUnionTypes: true });
    ajv.addKeyword(EXPECTED_KEYWORD);
    compiled = ajv.compile(configSchema as object);
  }
  return compiled;
}

/** Schema and cross-field problems of a merged configuration, deduplicated, in report order. */
function collectProblems(value: unknown): RawProblem[] {
  const validate = schemaValidator();
  const errors = validate(value) ? [] : (validate.errors ?? []);
  // A oneOf/anyOf that says what it expects is one problem, not one per branch that failed.
  const summarised = new Set(errors.filter((e) => (e.keyword === 'oneOf' || e.keyword === 'anyOf') && (e.parentSchema as Record<string, unknown> | undefined)?.[EXPECTED_KEYWORD] !== undefined).map((e) => e.instancePath));
  const all: RawProblem[] = errors.filter((e) => !summarised.has(e.instancePath) || e.keyword === 'oneOf' || e.keyword === 'anyOf').map(fromAjv);
  all.push(...crossFieldProblems(value));
  const seen = new Set<string>();
  return all.filter((p) => {
    const id = `${formatPath(p.segments)}\0${p.message}`;
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}

function toProblem(p: RawProblem): ConfigProblem {
  return { path: formatPath(p.segments), message: p.message };
}

function instanceSegments(instancePath: string): Segments {
  if (instancePath === '') return [];
  return instancePath
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^(0|[1-9][0-9]*)$/.test(s) ? Number(s) : s));
}

/** Turns one ajv error into a sentence about the field (what was expected, what was found). */
function fromAjv(e: ErrorObject): RawProblem {
  const segments = instanceSegments(e.instancePath);
  const params = e.params as Record<string, unknown>;
  const parent = (e.parentSchema ?? {}) as Record<string, unknown>;
  const expected = parent[EXPECTED_KEYWORD] as string | undefined;
  switch (e.keyword) {
    case 'enum':
      return { segments, message: `must be one of ${(params.allowedValues as unknown[]).map(String).join(', ')} (got ${describe(e.data)})` };
    case 'type': {
      const types = Array.isArray(params.type) ? params.type : String(params.type).split(',');
      return { segments, message: `must be ${types.map(typeName).join(' or ')} (got ${describe(e.data)})` };
    }
    case 'required':
      return { segments: [...segments, String(params.missingProperty)], message: 'is required' };
    case 'additionalProperties': {
      const field = String(params.additionalProperty);
      const known = Object.keys((parent.properties as object | undefined) ?? {});
      const guess = closest(field, known);
      const hint = guess !== undefined ? `did you mean "${guess}"? ` : '';
      return { segments: [...segments, field], message: `unknown field (${hint}allowed: ${known.join(', ')})`, atKey: true };
    }
    case 'pattern':
      return { segments, message: `must be ${expected ?? `a string matching ${String(params.pattern)}`} (got ${describe(e.data)})` };
    case 'minProperties':
      return { segments, message: expected !== undefined ? `must set ${expected}` : (e.message ?? 'invalid') };
    case 'minimum':
      return { segments, message: `must be at least ${String(params.limit)} (got ${describe(e.data)})` };
    case 'maximum':
      return { segments, message: `must be at most ${String(params.limit)} (got ${describe(e.data)})` };
    case 'minLength':
      return { segments, message: params.limit === 1 ? 'must not be empty' : `must be at least ${String(params.limit)} characters` };
    case 'maxLength':
      return { segments, message: `must be at most ${String(params.limit)} characters` };
    case 'oneOf':
    case 'anyOf':
      return { segments, message: expected !== undefined ? `must be ${expected} (got ${describe(e.data)})` : (e.message ?? `fails ${e.keyword}`) };
    case 'maxItems':
      return { segments, message: `must have at most ${String(params.limit)} entries` };
    default:
      return { segments, message: e.message ?? `fails ${e.keyword}` };
  }
}

function typeName(t: string): string {
  const names: Record<string, string> = {
    integer: 'an integer',
    number: 'a number',
    string: 'a string',
    boolean: 'true or false',
    object: 'a mapping',
    array: 'a list',
    null: 'null',
  };
  return names[t] ?? t;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
  if (typeof v === 'number' && !Number.isInteger(v)) return `${v}`;
  return String(v);
}

/** The known field nearest to a misspelt one (edit distance ≤ 2), if any. */
function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

/**
 * Checks that span fields. Written defensively: it runs even when the schema failed, so a file
 * with a bad enum *and* a dangling identity reference reports both.
 */
function crossFieldProblems(value: unknown): RawProblem[] {
  if (!isPlainObject(value)) return [];
  const out: RawProblem[] = [];
  const listen = value.listen;
  if (isPlainObject(listen) && listen.connect === null && listen.sni === null) {
    out.push({ segments: ['listen'], message: 'at least one of connect, sni must be set (both are null)' });
  }
  const addresses: [string, unknown][] = [
    ['listen.connect', isPlainObject(listen) ? listen.connect : null],
    ['listen.sni', isPlainObject(listen) ? listen.sni : null],
    ['admin', value.admin],
  ];
  for (let i = 1; i < addresses.length; i++) {
    for (let j = 0; j < i; j++) {
      const [name, addr] = addresses[i];
      if (typeof addr === 'string' && addr === addresses[j][1] && !addr.endsWith(':0')) {
        out.push({ segments: name.split('.'), message: `same address as ${addresses[j][0]} (${addr})` });
      }
    }
  }

  const names = new Map<string, number>();
  const identities = Array.isArray(value.identities) ? value.identities : [];
  identities.forEach((id: unknown, i) => {
    if (!isPlainObject(id)) return;
    if (typeof id.name === 'string') {
      const first = names.get(id.name);
      if (first !== undefined) {
        out.push({ segments: ['identities', i, 'name'], message: `duplicate identity name "${id.name}" (first at identities[${first}])` });
      } else names.set(id.name, i);
    }
    const has = (k: string): boolean => id[k] !== undefined;
    if (has('pfx') && (has('cert') || has('key'))) {
      out.push({ segments: ['identities', i], message: 'set either cert and key, or pfx, not both' });
    } else if (!has('pfx')) {
      if (!has('cert') && !has('key')) out.push({ segments: ['identities', i], message: 'needs cert and key, or pfx' });
      else if (!has('key')) out.push({ segments: ['identities', i, 'key'], message: 'is required with cert' });
      else if (!has('cert')) out.push({ segments: ['identities', i, 'cert'], message: 'is required with key' });
    }
  });

  const workloadCAs = Array.isArray(value.workloadCA) ? value.workloadCA.length : 0;
  const checkSettings = (settings: Record<string, unknown>, at: Segments): void => {
    const ref = settings.identity;
    if (typeof ref === 'string' && !names.has(ref)) {
      const known = names.size > 0 ? `identities: ${[...names.keys()].join(', ')}` : 'no identities are configured';
      out.push({ segments: [...at, 'identity'], message: `no identity named "${ref}" (${known})` });
    }
    const clientAuth = settings.clientAuth;
    if ((clientAuth === 'optional' || clientAuth === 'require') && workloadCAs === 0) {
      out.push({ segments: [...at, 'clientAuth'], message: `"${clientAuth}" needs at least one workloadCA file to verify workload certificates` });
    }
  };
  if (isPlainObject(value.defaults)) checkSettings(value.defaults, ['defaults']);

  const checkCidrs = (list: unknown, at: Segments): void => {
    if (!Array.isArray(list)) return;
    list.forEach((c, j) => {
      if (typeof c === 'string' && !parseCidr(c)) out.push({ segments: [...at, j], message: `"${c}" is not a CIDR (an IPv4 or IPv6 address, optionally /prefix within 32 or 128)` });
    });
  };
  if (isPlainObject(value.destinations)) {
    checkCidrs(value.destinations.allow, ['destinations', 'allow']);
    checkCidrs(value.destinations.deny, ['destinations', 'deny']);
  }

  const ruleNames = new Map<string, number>();
  const rules = Array.isArray(value.rules) ? value.rules : [];
  rules.forEach((rule: unknown, i) => {
    if (!isPlainObject(rule)) return;
    checkSettings(rule, ['rules', i]);
    if (isPlainObject(rule.match)) checkCidrs(rule.match.cidr, ['rules', i, 'match', 'cidr']);
    if (typeof rule.name === 'string') {
      const first = ruleNames.get(rule.name);
      if (rule.name === 'default') {
        out.push({ segments: ['rules', i, 'name'], message: '"default" is reserved: decisions name the defaults so' });
      } else if (first !== undefined) {
        out.push({ segments: ['rules', i, 'name'], message: `duplicate rule name "${rule.name}" (first at rules[${first}])` });
      } else ruleNames.set(rule.name, i);
    }
  });
  return out;
}

/** `['rules', 2, 'action']` → `rules[2].action`; odd keys are quoted: `listen["a b"]`. */
export function formatPath(segments: Segments): string {
  if (segments.length === 0) return '(root)';
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$-]*$/.test(s)) out += out === '' ? s : `.${s}`;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Source positions

/** Adds line:column when the offending value (or key, or nearest enclosing node) is in the file. */
function locate(raw: RawProblem, doc: Document, lineCounter: LineCounter): ConfigProblem {
  const problem = toProblem(raw);
  const offset = sourceOffset(doc, raw);
  if (offset === undefined) return problem;
  const pos = lineCounter.linePos(offset);
  return { ...problem, line: pos.line, column: pos.col };
}

/**
 * Offset of the node a problem is about; when that node is not in the file (a missing
 * required field, a value from the defaults), the nearest enclosing node that is.
 */
function sourceOffset(doc: Document, raw: RawProblem): number | undefined {
  const segs = raw.segments;
  for (let n = segs.length; n > 0; n--) {
    const parent = n === 1 ? doc.contents : doc.getIn(segs.slice(0, n - 1), true);
    const key = segs[n - 1];
    let node: unknown;
    if (isMap(parent)) {
      const pair = parent.items.find((p) => (isScalarLike(p.key) ? p.key.value : p.key) === key);
      if (pair !== undefined) node = raw.atKey && n === segs.length ? pair.key : (pair.value ?? pair.key);
    } else if (isSeq(parent) && typeof key === 'number') {
      node = parent.items[key];
    }
    const start = rangeStart(node);
    if (start !== undefined) return start;
  }
  return undefined;
}

function isScalarLike(v: unknown): v is { value: unknown } {
  return typeof v === 'object' && v !== null && 'value' in v;
}

function rangeStart(node: unknown): number | undefined {
  if (typeof node !== 'object' || node === null || !('range' in node)) return undefined;
  const range = (node as { range?: [number, number, number] | null }).range;
  return range ? range[0] : undefined;
}

function sortProblems(problems: ConfigProblem[]): ConfigProblem[] {
  // Problems located in the file first, in file order; then those about defaulted values.
  return problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => (a.p.line ?? Infinity) - (b.p.line ?? Infinity) || (a.p.column ?? 0) - (b.p.column ?? 0) || a.i - b.i)
    .map(({ p }) => p);
}
