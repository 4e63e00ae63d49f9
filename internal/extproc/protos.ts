/**
 * Loads the project's protos (proto/ at the package root) for the gRPC server and the tests.
 * Field names keep their proto spelling (`read_data`, `end_of_stream`), enums are their names
 * (`'MODIFIED'`, `'CLOSE_RST'`), bytes are Buffers.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

let root: string | undefined;

/**
 * The folder holding the project's .proto files: `proto/` beside the nearest package.json above
 * this file (works from `internal/extproc` and from `dist/internal/extproc`). Throws if absent.
 */
export function protoRoot(): string {
  if (root !== undefined) return root;
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'proto'))) {
      root = path.join(dir, 'proto');
      return root;
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`ca-proxy: no proto/ folder beside a package.json above ${__dirname}`);
    dir = parent;
  }
}

export const EXTPROC_SERVICE = 'envoy.service.network_ext_proc.v3.NetworkExternalProcessor';
export const HEALTH_SERVICE = 'grpc.health.v1.Health';

export const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, enums: String, longs: String, defaults: false, oneofs: false };

export interface Protos {
  extProc: grpc.ServiceClientConstructor;
  health: grpc.ServiceClientConstructor;
}

let cached: Protos | undefined;

/** The NetworkExternalProcessor and Health service definitions (loaded once). */
export function loadProtos(): Protos {
  if (cached) return cached;
  const def = protoLoader.loadSync(
    ['envoy/service/network_ext_proc/v3/network_external_processor.proto', 'grpc/health/v1/health.proto'],
    { ...LOADER_OPTIONS, includeDirs: [protoRoot()] },
  );
  const pkg = grpc.loadPackageDefinition(def) as unknown as Record<string, unknown>;
  const at = (name: string): grpc.ServiceClientConstructor => {
    const ctor = name.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], pkg);
    if (typeof ctor !== 'function') throw new Error(`ca-proxy: ${name} missing from proto/`);
    return ctor as grpc.ServiceClientConstructor;
  };
  cached = { extProc: at(EXTPROC_SERVICE), health: at(HEALTH_SERVICE) };
  return cached;
}

// ───────────── message shapes (proto field names, enums as names) ─────────────

export interface Data {
  data?: Buffer;
  end_of_stream?: boolean;
}

export interface ProcessingRequest {
  read_data?: Data | null;
  write_data?: Data | null;
  metadata?: { filter_metadata?: Record<string, StructValue> } | null;
  /** Envoy 1.40+: the filter's `connection_attributes`, in the stream's first request (keyed by filter name). */
  attributes?: Record<string, StructValue> | null;
}

export type ConnectionStatus = 'CONTINUE' | 'CLOSE' | 'CLOSE_RST';

export interface ProcessingResponse {
  read_data?: Data;
  write_data?: Data;
  data_processing_status?: 'UNKNOWN' | 'UNMODIFIED' | 'MODIFIED';
  connection_status?: ConnectionStatus;
  dynamic_metadata?: StructValue;
  close_stream_to_ext_proc_server?: boolean;
}

/** google.protobuf.Struct as protobufjs represents it. */
export interface StructValue {
  fields: Record<string, ProtoValue>;
}
export type ProtoValue =
  | { nullValue: 'NULL_VALUE' | 0 }
  | { numberValue: number }
  | { stringValue: string }
  | { boolValue: boolean }
  | { structValue: StructValue }
  | { listValue: { values: ProtoValue[] } };

/** JSON → google.protobuf.Struct (undefined members are dropped, as JSON.stringify does). */
export function toStruct(obj: Record<string, unknown>): StructValue {
  const fields: Record<string, ProtoValue> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v !== undefined) fields[k] = toValue(v);
  }
  return { fields };
}

function toValue(v: unknown): ProtoValue {
  if (v === null) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.filter((x) => x !== undefined).map(toValue) } };
  if (typeof v === 'object') return { structValue: toStruct(v as Record<string, unknown>) };
  return { stringValue: String(v) };
}

/** google.protobuf.Struct → JSON. */
export function fromStruct(s: StructValue | null | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s?.fields ?? {})) out[k] = fromValue(v);
  return out;
}

function fromValue(v: ProtoValue | Record<string, unknown>): unknown {
  const x = v as Record<string, unknown>;
  if ('structValue' in x && x.structValue) return fromStruct(x.structValue as StructValue);
  if ('listValue' in x && x.listValue) return ((x.listValue as { values?: ProtoValue[] }).values ?? []).map(fromValue);
  if ('stringValue' in x) return x.stringValue;
  if ('numberValue' in x) return x.numberValue;
  if ('boolValue' in x) return x.boolValue;
  return null;
}
