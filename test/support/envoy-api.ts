/**
 * Envoy configuration checked against Envoy's own API protos, for tests: the v3 Bootstrap and
 * extension protos shipped in `@grpc/grpc-js-xds/deps` (envoy-api, xds, protoc-gen-validate,
 * googleapis), plus our proto/ for the network ext_proc filter. Envoy itself cannot run on the
 * project's machines (DESIGN.md), so this is how a bootstrap is known to be one Envoy accepts.
 *
 * A value is walked under the proto3 JSON mapping, strictly: an unknown field, a wrong type, an
 * unknown enum name, two members of a oneof or an unresolvable `@type` is an error (Envoy rejects
 * those at start-up too). protoc-gen-validate rules (min_len, ranges, required) are not
 * evaluated; tests check the values that matter by value.
 */
import fs from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';
import { repoRoot } from './root';

const XDS_DEPS = path.join(repoRoot(), 'node_modules/@grpc/grpc-js-xds/deps');
const INCLUDE = ['envoy-api', 'xds', 'protoc-gen-validate', 'googleapis']
  .map((d) => path.join(XDS_DEPS, d))
  .concat(path.join(repoRoot(), 'proto'), path.join(repoRoot(), 'node_modules/protobufjs'));

/** Every proto whose messages may appear in a sidecar bootstrap (as fields or as `@type` of an Any). */
export const ENVOY_PROTO_FILES = [
  'envoy/config/bootstrap/v3/bootstrap.proto',
  'envoy/extensions/filters/listener/original_dst/v3/original_dst.proto',
  'envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto',
  'envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/access_loggers/stream/v3/stream.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/transport_sockets/tls/v3/secret.proto',
  'envoy/service/discovery/v3/discovery.proto',
  'envoy/extensions/filters/network/ext_proc/v3/ext_proc.proto',
];

let cached: protobuf.Root | undefined;

/** The loaded, resolved proto root (loaded once per process: a few hundred ms). */
export function envoyProtos(): protobuf.Root {
  if (cached) return cached;
  const root = new protobuf.Root();
  root.resolvePath = resolveProtoPath;
  root.loadSync(ENVOY_PROTO_FILES, { keepCase: true });
  root.resolveAll();
  cached = root;
  return root;
}

/** Where an imported proto file is, among the include folders (google/protobuf/*: bundled with protobufjs). */
export function resolveProtoPath(_origin: string, target: string): string {
  for (const dir of INCLUDE) {
    const p = path.join(dir, target);
    if (fs.existsSync(p)) return p;
  }
  return target;
}

/** Every problem of `doc` as an `envoy.config.bootstrap.v3.Bootstrap`; empty when Envoy would accept its shape. */
export function validateBootstrap(doc: unknown): string[] {
  return validateMessage('envoy.config.bootstrap.v3.Bootstrap', doc, 'bootstrap');
}

/** Every problem of `value` as the message `typeName` (e.g. `envoy.service.discovery.v3.DiscoveryResponse`). */
export function validateMessage(typeName: string, value: unknown, at = typeName): string[] {
  const root = envoyProtos();
  return validate(root, root.lookupType(typeName), value, at, []);
}

const INT = new Set(['int32', 'uint32', 'sint32', 'fixed32', 'sfixed32']);
const INT64 = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);
const WRAPPERS: Record<string, string> = {
  '.google.protobuf.BoolValue': 'bool',
  '.google.protobuf.UInt32Value': 'uint32',
  '.google.protobuf.Int32Value': 'int32',
  '.google.protobuf.UInt64Value': 'uint64',
  '.google.protobuf.Int64Value': 'int64',
  '.google.protobuf.DoubleValue': 'double',
  '.google.protobuf.FloatValue': 'float',
  '.google.protobuf.StringValue': 'string',
  '.google.protobuf.BytesValue': 'bytes',
};

function validate(root: protobuf.Root, type: protobuf.Type, value: unknown, at: string, out: string[]): string[] {
  if (!isObject(value)) {
    out.push(`${at}: expected an object (${type.fullName.slice(1)}), got ${JSON.stringify(value)}`);
    return out;
  }
  const byJson = new Map<string, protobuf.Field>();
  for (const f of type.fieldsArray) {
    byJson.set(f.name, f);
    byJson.set(camel(f.name), f);
  }
  for (const [k, v] of Object.entries(value)) {
    const f = byJson.get(k);
    if (!f) {
      out.push(`${at}.${k}: unknown field of ${type.fullName.slice(1)}`);
      continue;
    }
    checkField(root, f, v, `${at}.${k}`, out);
  }
  for (const o of type.oneofsArray) {
    const set = o.fieldsArray.filter((f) => f.name in value || camel(f.name) in value);
    if (set.length > 1) out.push(`${at}: oneof ${o.name} has ${set.map((f) => f.name).join(' and ')}`);
  }
  return out;
}

function checkField(root: protobuf.Root, f: protobuf.Field, v: unknown, at: string, out: string[]): void {
  f.resolve();
  if (f instanceof protobuf.MapField) {
    if (!isObject(v)) return void out.push(`${at}: expected a map`);
    for (const [k, x] of Object.entries(v)) checkValue(root, f.type, f.resolvedType, x, `${at}[${k}]`, out);
  } else if (f.repeated) {
    if (!Array.isArray(v)) return void out.push(`${at}: expected a list`);
    v.forEach((x, i) => checkValue(root, f.type, f.resolvedType, x, `${at}[${i}]`, out));
  } else {
    checkValue(root, f.type, f.resolvedType, v, at, out);
  }
}

function checkValue(root: protobuf.Root, typeName: string, resolved: protobuf.Type | protobuf.Enum | null, v: unknown, at: string, out: string[]): void {
  if (resolved instanceof protobuf.Enum) {
    if (!(typeof v === 'string' && v in resolved.values) && !(Number.isInteger(v) && Object.values(resolved.values).includes(v as number))) {
      out.push(`${at}: ${JSON.stringify(v)} is not a value of ${resolved.fullName.slice(1)} (${Object.keys(resolved.values).join(', ')})`);
    }
    return;
  }
  if (resolved instanceof protobuf.Type) {
    const name = resolved.fullName;
    if (WRAPPERS[name]) return checkValue(root, WRAPPERS[name]!, null, v, at, out);
    switch (name) {
      case '.google.protobuf.Duration':
        if (typeof v !== 'string' || !/^-?\d+(\.\d{1,9})?s$/.test(v)) out.push(`${at}: expected a duration like "0.2s", got ${JSON.stringify(v)}`);
        return;
      case '.google.protobuf.Timestamp':
        if (typeof v !== 'string') out.push(`${at}: expected an RFC 3339 timestamp`);
        return;
      case '.google.protobuf.Struct':
        if (!isObject(v)) out.push(`${at}: expected an object`);
        return;
      case '.google.protobuf.Value':
        return;
      case '.google.protobuf.ListValue':
        if (!Array.isArray(v)) out.push(`${at}: expected a list`);
        return;
      case '.google.protobuf.Empty':
        if (!isObject(v) || Object.keys(v).length) out.push(`${at}: expected {}`);
        return;
      case '.google.protobuf.Any': {
        if (!isObject(v) || typeof v['@type'] !== 'string') return void out.push(`${at}: an Any needs "@type"`);
        const url = v['@type'];
        const m = /^type\.googleapis\.com\/(.+)$/.exec(url);
        const t = m ? root.lookup(m[1]!) : null;
        if (!(t instanceof protobuf.Type)) return void out.push(`${at}["@type"]: unknown type ${url}`);
        const { ['@type']: _drop, ...rest } = v;
        validate(root, t, rest, at, out);
        return;
      }
      default:
        validate(root, resolved, v, at, out);
        return;
    }
  }
  const ok =
    typeName === 'string'
      ? typeof v === 'string'
      : typeName === 'bool'
        ? typeof v === 'boolean'
        : INT.has(typeName) || INT64.has(typeName)
          ? Number.isInteger(v) || (typeof v === 'string' && /^-?\d+$/.test(v))
          : typeName === 'double' || typeName === 'float'
            ? typeof v === 'number'
            : typeName === 'bytes'
              ? typeof v === 'string'
              : false;
  if (!ok) out.push(`${at}: expected ${typeName}, got ${JSON.stringify(v)}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function camel(s: string): string {
  return s.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}
