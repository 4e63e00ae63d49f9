/**
 * What a `Process` stream says about its connection, and the names both sides use for it: the
 * injector writes them into the Envoy bootstrap (internal/k8s/injector/bootstrap.ts,
 * deploy/envoy/), serve-extproc reads them here (docs/extproc.md "What a decision knows").
 *
 * - The pod's identity: gRPC request headers, Envoy `grpc_service.initial_metadata` (one value
 *   per stream, expanded by kubelet from the Downward API).
 * - The connection (Envoy 1.40): `ProcessingRequest.attributes` of the stream's first request, a
 *   map keyed by filter name whose google.protobuf.Struct holds the values of the filter's
 *   `connection_attributes`, named as Envoy's CEL attributes: `source.address` and
 *   `destination.address` are `ip:port` strings (`[v6]:port` for IPv6), `destination.port` a
 *   number, `connection.requested_server_name` the SNI read by `tls_inspector`.
 * - Before 1.40 (no attributes): the header `x-ca-proxy-destination-port` (one filter chain per
 *   redirected port) and optionally `x-ca-proxy-destination-address`.
 *
 * Every value is checked; one that does not parse is ignored (the next source applies), never
 * an error: the stream is Envoy's, the values come from the pod's own environment.
 */
import net from 'node:net';
import type { Metadata } from '@grpc/grpc-js';
import { fromStruct, type StructValue } from './protos';

/** gRPC initial metadata naming the pod (values from the Downward API). */
export const POD_HEADERS = {
  name: 'x-ca-proxy-pod-name',
  namespace: 'x-ca-proxy-pod-namespace',
  serviceAccount: 'x-ca-proxy-pod-service-account',
} as const;

/** The original destination port for Envoy before 1.40 (no `connection_attributes`). */
export const DESTINATION_PORT_HEADER = 'x-ca-proxy-destination-port';
/** The original destination address, when a front end can name it in a header (tests, benchmarks). */
export const DESTINATION_ADDRESS_HEADER = 'x-ca-proxy-destination-address';

/** The filter's name: the key of its Struct in `ProcessingRequest.attributes`. */
export const ATTRIBUTES_FILTER_NAME = 'envoy.filters.network.ext_proc';

/** The `connection_attributes` the injected bootstrap asks for (CEL attribute names, Envoy 1.40). */
export const CONNECTION_ATTRIBUTES = ['source.address', 'destination.address', 'destination.port', 'connection.requested_server_name'] as const;

export interface PodIdentity {
  pod?: string;
  namespace?: string;
  serviceAccount?: string;
}

export interface ConnectionAttributes {
  source: { address?: string; port?: number };
  destination: { address?: string; port?: number; sni?: string };
}

/** DNS-1123 subdomain (pod and service account names) and label (namespaces), as Kubernetes validates them. */
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** A host name as tls_inspector reports it (lower-case ASCII, ≤ 253 octets). */
const SERVER_NAME = /^(?=.{1,253}$)[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?(\.[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?)*\.?$/i;

/**
 * The pod named by the stream's initial metadata (POD_HEADERS). A value that is no valid
 * Kubernetes name — an unexpanded `$(CA_PROXY_POD_NAME)` among them — is left out.
 */
export function podIdentity(md: Metadata): PodIdentity {
  const out: PodIdentity = {};
  const pod = header(md, POD_HEADERS.name);
  const namespace = header(md, POD_HEADERS.namespace);
  const serviceAccount = header(md, POD_HEADERS.serviceAccount);
  if (pod && DNS_SUBDOMAIN.test(pod)) out.pod = pod;
  if (namespace && DNS_LABEL.test(namespace)) out.namespace = namespace;
  if (serviceAccount && DNS_SUBDOMAIN.test(serviceAccount)) out.serviceAccount = serviceAccount;
  return out;
}

/** The destination named by the headers of Envoy before 1.40; each part absent when missing or malformed. */
export function headerDestination(md: Metadata): { address?: string; port?: number } {
  const out: { address?: string; port?: number } = {};
  const port = parsePort(header(md, DESTINATION_PORT_HEADER));
  const address = header(md, DESTINATION_ADDRESS_HEADER);
  if (port !== undefined) out.port = port;
  if (address && net.isIP(address)) out.address = address;
  return out;
}

/**
 * The connection attributes of a first request, or null when it carries none (Envoy before
 * 1.40, or no `connection_attributes` configured). Reads the filter's own entry
 * (ATTRIBUTES_FILTER_NAME), or the only entry when the map holds one under another name (a
 * filter configured with a custom name). `destination.port` wins over the port of
 * `destination.address`.
 */
export function connectionAttributes(attributes: Record<string, StructValue> | null | undefined): ConnectionAttributes | null {
  if (!attributes || typeof attributes !== 'object') return null;
  const keys = Object.keys(attributes);
  if (!keys.length) return null;
  const entry = attributes[ATTRIBUTES_FILTER_NAME] ?? (keys.length === 1 ? attributes[keys[0]!] : undefined);
  const out: ConnectionAttributes = { source: {}, destination: {} };
  if (!entry || typeof entry !== 'object') return out;
  let values: Record<string, unknown>;
  try {
    values = fromStruct(entry);
  } catch {
    return out;
  }
  const src = parseEndpoint(values['source.address']);
  if (src) out.source = src;
  const dst = parseEndpoint(values['destination.address']);
  if (dst) out.destination = { ...dst };
  const port = parsePort(values['destination.port']);
  if (port !== undefined) out.destination.port = port;
  const sni = values['connection.requested_server_name'];
  if (typeof sni === 'string' && SERVER_NAME.test(sni)) out.destination.sni = sni.toLowerCase();
  return out;
}

/** True when the request map holds anything at all: only Envoy ≥ 1.40 sends `attributes` (and it honours `close_stream_to_ext_proc_server`, 1.39). */
export function hasAttributes(attributes: Record<string, StructValue> | null | undefined): boolean {
  return !!attributes && typeof attributes === 'object' && Object.keys(attributes).length > 0;
}

/** `ip`, `ip:port` or `[ipv6]:port` → its parts; undefined for anything else. */
export function parseEndpoint(v: unknown): { address: string; port?: number } | undefined {
  if (typeof v !== 'string' || v.length > 64) return undefined;
  if (net.isIP(v)) return { address: v };
  const v6 = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(v);
  const m = v6 ?? /^([0-9.]+):(\d{1,5})$/.exec(v);
  if (!m || net.isIP(m[1]!) !== (v6 ? 6 : 4)) return undefined;
  const port = parsePort(m[2]);
  return port === undefined ? { address: m[1]! } : { address: m[1]!, port };
}

/** A TCP port 1–65535 from a number or a decimal string; undefined otherwise. */
export function parsePort(v: unknown): number | undefined {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d{1,5}$/.test(v.trim()) ? Number(v.trim()) : NaN;
  return Number.isInteger(n) && n >= 1 && n <= 65535 ? n : undefined;
}

function header(md: Metadata, key: string): string | undefined {
  const v = md.get(key)[0];
  return typeof v === 'string' ? v.trim() : undefined;
}
