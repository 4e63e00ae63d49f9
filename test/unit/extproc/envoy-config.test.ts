/**
 * deploy/envoy/sidecar-bootstrap.yaml checked against Envoy's API protos: the v3 Bootstrap and
 * extension protos shipped in `@grpc/grpc-js-xds/deps`, plus our proto/ for the network ext_proc
 * filter's config. The YAML is walked under the proto3 JSON mapping, strictly: an unknown field,
 * a wrong type, an unknown enum name or an unresolvable `@type` is an error (Envoy rejects those
 * at startup too). Then the pieces the issue asks for are checked by value.
 */
import { test, beforeAll } from '@jest/globals';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';
import YAML from 'yaml';
import { repoRoot } from '../../support/root';

const XDS_DEPS = path.join(repoRoot(), 'node_modules/@grpc/grpc-js-xds/deps');
const INCLUDE = ['envoy-api', 'xds', 'protoc-gen-validate', 'googleapis'].map((d) => path.join(XDS_DEPS, d)).concat(path.join(repoRoot(), 'proto'), path.join(repoRoot(), 'node_modules/protobufjs'));
const FILES = [
  'envoy/config/bootstrap/v3/bootstrap.proto',
  'envoy/extensions/filters/listener/original_dst/v3/original_dst.proto',
  'envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto',
  'envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto',
  'envoy/extensions/access_loggers/stream/v3/stream.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
  'envoy/extensions/filters/network/ext_proc/v3/ext_proc.proto',
];
const BOOTSTRAP = path.join(repoRoot(), 'deploy/envoy/sidecar-bootstrap.yaml');

let root: protobuf.Root;
beforeAll(() => {
  root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    for (const dir of INCLUDE) {
      const p = path.join(dir, target);
      if (fs.existsSync(p)) return p;
    }
    return target; // google/protobuf/*.proto: bundled with protobufjs
  };
  root.loadSync(FILES, { keepCase: true });
  root.resolveAll();
});

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

/** Every problem of `value` as a `type` message under the proto3 JSON mapping. */
function validate(type: protobuf.Type, value: unknown, at: string, out: string[] = []): string[] {
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
    checkField(f, v, `${at}.${k}`, out);
  }
  for (const o of type.oneofsArray) {
    const set = o.fieldsArray.filter((f) => f.name in value || camel(f.name) in value);
    if (set.length > 1) out.push(`${at}: oneof ${o.name} has ${set.map((f) => f.name).join(' and ')}`);
  }
  return out;
}

function checkField(f: protobuf.Field, v: unknown, at: string, out: string[]): void {
  f.resolve();
  if (f instanceof protobuf.MapField) {
    if (!isObject(v)) return void out.push(`${at}: expected a map`);
    for (const [k, x] of Object.entries(v)) checkValue(f.type, f.resolvedType, x, `${at}[${k}]`, out);
  } else if (f.repeated) {
    if (!Array.isArray(v)) return void out.push(`${at}: expected a list`);
    v.forEach((x, i) => checkValue(f.type, f.resolvedType, x, `${at}[${i}]`, out));
  } else {
    checkValue(f.type, f.resolvedType, v, at, out);
  }
}

function checkValue(typeName: string, resolved: protobuf.Type | protobuf.Enum | null, v: unknown, at: string, out: string[]): void {
  if (resolved instanceof protobuf.Enum) {
    if (!(typeof v === 'string' && v in resolved.values) && !(Number.isInteger(v) && Object.values(resolved.values).includes(v as number))) {
      out.push(`${at}: ${JSON.stringify(v)} is not a value of ${resolved.fullName.slice(1)} (${Object.keys(resolved.values).join(', ')})`);
    }
    return;
  }
  if (resolved instanceof protobuf.Type) {
    const name = resolved.fullName;
    if (WRAPPERS[name]) return checkValue(WRAPPERS[name]!, null, v, at, out);
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
        validate(t, rest, at, out);
        return;
      }
      default:
        validate(resolved, v, at, out);
        return;
    }
  }
  const ok =
    typeName === 'string'
      ? typeof v === 'string'
      : typeName === 'bool'
        ? typeof v === 'boolean'
        : INT.has(typeName)
          ? Number.isInteger(v) || (typeof v === 'string' && /^-?\d+$/.test(v))
          : INT64.has(typeName)
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

function bootstrap(): Record<string, unknown> {
  return YAML.parse(fs.readFileSync(BOOTSTRAP, 'utf8')) as Record<string, unknown>;
}

function validateBootstrap(doc: unknown): string[] {
  return validate(root.lookupType('envoy.config.bootstrap.v3.Bootstrap'), doc, 'bootstrap');
}

test('the sidecar bootstrap is a valid envoy.config.bootstrap.v3.Bootstrap (strict: no unknown fields, right types, resolvable @type)', () => {
  assert.deepEqual(validateBootstrap(bootstrap()), []);
});

test('the validator catches an unknown field, a wrong type, a bad enum name and an unknown @type', () => {
  const doc = bootstrap() as any;
  const listener = doc.static_resources.listeners[0];
  listener.filter_chains[0].filters[0].typed_config.message_timout = '0.2s';
  listener.address.socket_address.port_value = 'fifteen';
  doc.static_resources.clusters[0].lb_policy = 'ROUND_ROBINISH';
  listener.listener_filters[0].typed_config['@type'] = 'type.googleapis.com/envoy.extensions.filters.listener.nope.v3.Nope';
  listener.filter_chains[0].filters[0].typed_config.failure_mode_allow = 'no';
  const errors = validateBootstrap(doc).join('\n');
  assert.match(errors, /message_timout: unknown field of envoy\.extensions\.filters\.network\.ext_proc\.v3\.NetworkExternalProcessor/);
  assert.match(errors, /port_value: expected uint32, got "fifteen"/);
  assert.match(errors, /lb_policy: "ROUND_ROBINISH" is not a value/);
  assert.match(errors, /unknown type type\.googleapis\.com\/envoy\.extensions\.filters\.listener\.nope/);
  assert.match(errors, /failure_mode_allow: expected bool/);
});

test('the bootstrap has what the sidecar needs: 15001 with original_dst + tls_inspector, ext_proc to ca-proxy, tcp_proxy to ORIGINAL_DST, ca_proxy metadata in the access log', () => {
  const doc = bootstrap() as any;
  const l = doc.static_resources.listeners[0];
  assert.equal(l.address.socket_address.port_value, 15001);
  assert.deepEqual(l.listener_filters.map((f: { name: string }) => f.name), ['envoy.filters.listener.original_dst', 'envoy.filters.listener.tls_inspector']);
  const [extProc, tcp] = l.filter_chains[0].filters;
  assert.equal(extProc.typed_config['@type'], 'type.googleapis.com/envoy.extensions.filters.network.ext_proc.v3.NetworkExternalProcessor');
  assert.equal(extProc.typed_config.failure_mode_allow, false, 'fail closed');
  assert.equal(extProc.typed_config.message_timeout, '0.2s');
  assert.ok(extProc.typed_config.stat_prefix.length > 0, 'stat_prefix is required (min_len 1)');
  const grpcCluster = doc.static_resources.clusters.find((c: { name: string }) => c.name === extProc.typed_config.grpc_service.envoy_grpc.cluster_name);
  assert.ok(grpcCluster.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'].explicit_http_config.http2_protocol_options, 'gRPC needs HTTP/2');
  assert.equal(tcp.name, 'envoy.filters.network.tcp_proxy');
  const dst = doc.static_resources.clusters.find((c: { name: string }) => c.name === tcp.typed_config.cluster);
  assert.equal(dst.type, 'ORIGINAL_DST');
  assert.equal(dst.lb_policy, 'CLUSTER_PROVIDED');
  const fmt = JSON.stringify(tcp.typed_config.access_log[0].typed_config.log_format);
  assert.match(fmt, /%DYNAMIC_METADATA\(ca_proxy:outcome\)%/);
  assert.match(fmt, /%DYNAMIC_METADATA\(ca_proxy:reason\)%/);
});

test('our network ext_proc protos match the field numbers and types of Envoy 1.40', () => {
  const cfg = root.lookupType('envoy.extensions.filters.network.ext_proc.v3.NetworkExternalProcessor');
  assert.deepEqual(
    cfg.fieldsArray.map((f) => [f.name, f.id, f.type]),
    [
      ['grpc_service', 1, 'envoy.config.core.v3.GrpcService'],
      ['failure_mode_allow', 2, 'bool'],
      ['processing_mode', 3, 'ProcessingMode'],
      ['message_timeout', 4, 'google.protobuf.Duration'],
      ['stat_prefix', 5, 'string'],
      ['metadata_options', 6, 'MetadataOptions'],
      ['connection_attributes', 7, 'string'],
    ],
  );
  assert.ok(cfg.fields.connection_attributes!.repeated, 'connection_attributes is repeated string');
  const mo = root.lookupType('envoy.extensions.filters.network.ext_proc.v3.MetadataOptions');
  assert.deepEqual(mo.fieldsArray.map((f) => [f.name, f.id, f.type]), [['forwarding_namespaces', 1, 'MetadataNamespaces'], ['receiving_namespaces', 2, 'MetadataNamespaces']]);
  const svc = new protobuf.Root();
  svc.resolvePath = root.resolvePath;
  svc.loadSync('envoy/service/network_ext_proc/v3/network_external_processor.proto', { keepCase: true });
  const res = svc.lookupType('envoy.service.network_ext_proc.v3.ProcessingResponse');
  assert.deepEqual(res.fieldsArray.map((f) => [f.name, f.id]), [['read_data', 1], ['write_data', 2], ['data_processing_status', 3], ['connection_status', 4], ['dynamic_metadata', 5], ['close_stream_to_ext_proc_server', 6]]);
  assert.deepEqual({ ...svc.lookupEnum('envoy.service.network_ext_proc.v3.ProcessingResponse.DataProcessedStatus').values }, { UNKNOWN: 0, UNMODIFIED: 1, MODIFIED: 2 });
  assert.deepEqual({ ...svc.lookupEnum('envoy.service.network_ext_proc.v3.ProcessingResponse.ConnectionStatus').values }, { CONTINUE: 0, CLOSE: 1, CLOSE_RST: 2 });
  const req = svc.lookupType('envoy.service.network_ext_proc.v3.ProcessingRequest');
  assert.deepEqual(req.fieldsArray.map((f) => [f.name, f.id]), [['read_data', 1], ['write_data', 2], ['metadata', 3], ['attributes', 4]]);
  const attrs = req.fields.attributes as unknown as protobuf.MapField;
  assert.equal(attrs.keyType, 'string');
  assert.equal(attrs.type, 'google.protobuf.Struct');
});
