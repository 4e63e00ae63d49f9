/**
 * The pod labels and annotations the injector reads and writes (docs/kubernetes.md "Sidecar
 * injection"), and the parsers of the redirect settings. Values are validated strictly: a pod
 * whose annotation cannot be read is denied with a message naming the annotation, never admitted
 * with a guess (a filter that silently covers fewer ports than asked is a hole).
 */
import { parseCidr } from '../../config/cidr';

/** Pod (or namespace) label selecting injection: `"true"`; on the pod, `"false"` opts out. */
export const INJECT_LABEL = 'ca-proxy.io/inject';
/** Written by the injector: the ca-proxy version that injected the pod. */
export const INJECTED_ANNOTATION = 'ca-proxy.io/injected';
/** Written by the injector: containers whose own `env` already set a CA variable, and which ones (`app=SSL_CERT_FILE,CURL_CA_BUNDLE;init=…`). */
export const KEPT_ENV_ANNOTATION = 'ca-proxy.io/kept-env';
/** Written by the injector (central placement): Envoy's SDS file, projected into the pod by a Downward API volume. */
export const ENVOY_SDS_ANNOTATION = 'ca-proxy.io/envoy-sds';
/** Read: the ports whose outbound TCP is redirected (comma-separated, or `*`). */
export const PORTS_ANNOTATION = 'ca-proxy.io/ports';
/** Read: outbound ports never redirected. */
export const EXCLUDE_PORTS_ANNOTATION = 'ca-proxy.io/exclude-ports';
/** Read: destination CIDRs never redirected (IPv4 and IPv6). */
export const EXCLUDE_CIDRS_ANNOTATION = 'ca-proxy.io/exclude-cidrs';

/** Redirected ports: every port, or a sorted list without duplicates. */
export type PortSelection = '*' | number[];

/** The redirect settings of one pod, normalised (what `ca-proxy redirect` is given). */
export interface RedirectSettings {
  ports: PortSelection;
  excludePorts: number[];
  /** Normalised `address/prefix` (network address, lower-case IPv6). */
  excludeCidrs: string[];
}

/** A value that cannot be used; `message` names the annotation (or config field) and what is wrong. */
export class AnnotationError extends Error {
  override readonly name = 'AnnotationError';
}

/**
 * Parses a comma-separated port list (`443`, `443, 8443`); with `allowAll`, `*` means every port.
 * Empty (or whitespace) is the empty list.
 * @throws AnnotationError naming `what`
 */
export function parsePorts(value: string, what: string, allowAll: boolean): PortSelection {
  const text = value.trim();
  if (allowAll && text === '*') return '*';
  if (text === '') return [];
  const out = new Set<number>();
  for (const raw of text.split(',')) {
    const item = raw.trim();
    if (!/^\d{1,5}$/.test(item) || Number(item) < 1 || Number(item) > 65535) {
      throw new AnnotationError(`${what}: ${JSON.stringify(item)} is not a port 1-65535 (expected comma-separated ports${allowAll ? ', or *' : ''})`);
    }
    out.add(Number(item));
  }
  return [...out].sort((a, b) => a - b);
}

/**
 * Parses a comma-separated CIDR list (`10.0.0.0/8,fd00::/8`; a bare address is a host route).
 * Host bits must be zero (`10.1.2.3/8` is refused, as iptables would silently widen it).
 * @throws AnnotationError naming `what`
 */
export function parseCidrs(value: string, what: string): string[] {
  const text = value.trim();
  if (text === '') return [];
  const out = new Set<string>();
  for (const raw of text.split(',')) {
    const item = raw.trim();
    const c = parseCidr(item);
    if (!c) throw new AnnotationError(`${what}: ${JSON.stringify(item)} is not an IPv4 or IPv6 CIDR (e.g. 10.0.0.0/8, fd00::/8)`);
    if (c.hostBits) throw new AnnotationError(`${what}: ${JSON.stringify(item)} has host bits set (the network is ${c.network}/${c.prefix})`);
    out.add(`${c.network}/${c.prefix}`);
  }
  return [...out];
}

/**
 * The pod's redirect settings: its annotations over the injector's defaults.
 * @throws AnnotationError for an unreadable annotation, or a port both redirected and excluded
 */
export function redirectSettings(annotations: Record<string, string>, defaults: { ports: string; excludePorts: string; excludeCidrs: string }): RedirectSettings {
  const pick = (key: string, fallback: string): [string, string] => (typeof annotations[key] === 'string' ? [annotations[key]!, `annotation ${key}`] : [fallback, `injector default for ${key}`]);
  const [portsText, portsWhat] = pick(PORTS_ANNOTATION, defaults.ports);
  const [exPortsText, exPortsWhat] = pick(EXCLUDE_PORTS_ANNOTATION, defaults.excludePorts);
  const [cidrsText, cidrsWhat] = pick(EXCLUDE_CIDRS_ANNOTATION, defaults.excludeCidrs);
  const ports = parsePorts(portsText, portsWhat, true);
  if (ports !== '*' && ports.length === 0) {
    throw new AnnotationError(`${portsWhat}: no port given; to leave a pod out, label it ${INJECT_LABEL}: "false"`);
  }
  const excludePorts = parsePorts(exPortsText, exPortsWhat, false) as number[];
  if (ports !== '*') {
    const both = ports.filter((p) => excludePorts.includes(p));
    if (both.length) throw new AnnotationError(`${exPortsWhat}: ${both.join(',')} also in ${portsWhat}; a port cannot be both redirected and excluded`);
  }
  return { ports, excludePorts, excludeCidrs: parseCidrs(cidrsText, cidrsWhat) };
}

/** `*` or `443,8443`, as `ca-proxy redirect --ports` takes it. */
export function formatPorts(p: PortSelection): string {
  return p === '*' ? '*' : p.join(',');
}
