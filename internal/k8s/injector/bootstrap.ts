/**
 * Renders the Envoy sidecar bootstrap of one pod from the template in deploy/envoy/
 * (sidecar-bootstrap.template.yaml; its header says how a rendering works), and turns it into the
 * `--config-yaml` argument of the Envoy container.
 *
 * The pod's identity is not known here (a pod created under `generateName` has no name at
 * admission), so the bootstrap carries kubelet references `$(CA_PROXY_POD_NAME)` etc., which
 * kubelet expands from the container's Downward API environment when it starts the container
 * (core/v1 Container.args: "$(VAR_NAME) … expanded using the container's environment"; `$$` is a
 * literal `$`). `kubeletArg` escapes every other `$` so nothing else in the bootstrap can be
 * expanded.
 */
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import type { PortSelection } from './annotations';
import { DESTINATION_PORT_HEADER } from '../../extproc/connection-info';

/** The template shipped with ca-proxy. */
export const DEFAULT_TEMPLATE = path.resolve(__dirname, '..', '..', '..', '..', 'deploy', 'envoy', 'sidecar-bootstrap.template.yaml');

/** Environment variables of the Envoy container (Downward API) that the bootstrap references. */
export const POD_ENV = {
  name: { env: 'CA_PROXY_POD_NAME', fieldPath: 'metadata.name' },
  namespace: { env: 'CA_PROXY_POD_NAMESPACE', fieldPath: 'metadata.namespace' },
  serviceAccount: { env: 'CA_PROXY_POD_SERVICE_ACCOUNT', fieldPath: 'spec.serviceAccountName' },
} as const;

/** The header names and attribute keys serve-extproc reads: one definition for both sides. */
export { POD_HEADERS, DESTINATION_PORT_HEADER, CONNECTION_ATTRIBUTES } from '../../extproc/connection-info';

/** Fixed paths inside the pod (emptyDir and Secret mounts the pod patch creates). */
export const POD_PATHS = {
  envoyRunDir: '/var/run/ca-proxy-envoy',
  envoyAdminSocket: '/var/run/ca-proxy-envoy/admin.sock',
  processorRunDir: '/var/run/ca-proxy',
  processorSocket: '/var/run/ca-proxy/extproc.sock',
  clientCertDir: '/etc/ca-proxy/envoy-client',
  sdsDir: '/etc/ca-proxy/envoy-sds',
  sdsFile: 'sds.json',
} as const;

export interface BootstrapOptions {
  placement: 'central' | 'sidecar';
  /** `central`: the processor Service `host:port`. */
  processorAddress: string;
  proxyPort: number;
  readyPort: number;
  messageTimeoutMs: number;
  ipv6: boolean;
  ports: PortSelection;
}

export interface RenderedBootstrap {
  /** The envoy.config.bootstrap.v3.Bootstrap, as a JSON-mapped object (kubelet references still in it). */
  bootstrap: Record<string, unknown>;
  /** `central`: the SDS file (envoy.service.discovery.v3.DiscoveryResponse) Envoy reads its client certificate through; null for `sidecar`. */
  sds: Record<string, unknown> | null;
}

interface Template {
  bootstrap: Record<string, any>;
  egressFilterChain: Record<string, any>;
  processorClusters: { central: Record<string, any>; sidecar: Record<string, any> };
  centralSds: Record<string, any>;
}

/** A template that cannot be read or rendered (a broken custom `injector.envoyBootstrapTemplate`). */
export class TemplateError extends Error {
  override readonly name = 'TemplateError';
}

/** A parsed template, ready to render many pods. */
export class BootstrapTemplate {
  private constructor(
    private readonly t: Template,
    readonly source: string,
  ) {}

  /**
   * Reads and checks a template file (the four top-level parts, the egress listener).
   * @throws TemplateError
   */
  static load(file: string = DEFAULT_TEMPLATE): BootstrapTemplate {
    let doc: unknown;
    try {
      doc = YAML.parse(fs.readFileSync(file, 'utf8'), { maxAliasCount: 100 });
    } catch (err) {
      throw new TemplateError(`${file}: ${(err as Error).message}`);
    }
    const t = doc as Partial<Template> | null;
    for (const part of ['bootstrap', 'egressFilterChain', 'processorClusters', 'centralSds'] as const) {
      if (!t || typeof t[part] !== 'object' || t[part] === null) throw new TemplateError(`${file}: the template has no "${part}" mapping`);
    }
    const tmpl = t as Template;
    if (!tmpl.processorClusters.central || !tmpl.processorClusters.sidecar) throw new TemplateError(`${file}: processorClusters needs "central" and "sidecar"`);
    if (!egressListener(tmpl.bootstrap)) throw new TemplateError(`${file}: bootstrap.static_resources.listeners has no "ca_proxy_egress" listener`);
    return new BootstrapTemplate(tmpl, file);
  }

  /**
   * The bootstrap (and SDS file) for one pod.
   * @throws TemplateError for a placeholder the template names but the injector does not know
   */
  render(o: BootstrapOptions): RenderedBootstrap {
    const [host, portText] = splitHostPort(o.processorAddress);
    const values: Record<string, string | number> = {
      proxyPort: o.proxyPort,
      readyPort: o.readyPort,
      messageTimeout: `${(o.messageTimeoutMs / 1000).toFixed(3).replace(/\.?0+$/, '')}s`,
      envoyAdminSocket: POD_PATHS.envoyAdminSocket,
      processorSocket: POD_PATHS.processorSocket,
      processorHost: host,
      processorPort: Number(portText),
      clientCertDir: POD_PATHS.clientCertDir,
      sdsDir: POD_PATHS.sdsDir,
      sdsPath: `${POD_PATHS.sdsDir}/${POD_PATHS.sdsFile}`,
    };
    const bootstrap = fill(this.t.bootstrap, values) as Record<string, any>;
    const listener = egressListener(bootstrap)!;
    listener.filter_chains = o.ports === '*' ? [this.chain(values, null)] : o.ports.map((p) => this.chain(values, p));
    if (o.ipv6) {
      listener.additional_addresses = [{ address: { socket_address: { address: '::', port_value: o.proxyPort } } }];
    }
    const resources = (bootstrap.static_resources ??= {});
    (resources.clusters ??= []).push(fill(this.t.processorClusters[o.placement], values));
    return { bootstrap, sds: o.placement === 'central' ? (fill(this.t.centralSds, values) as Record<string, unknown>) : null };
  }

  /** One egress filter chain: for `port`, matching it and naming it in the header; for null (`*`), matching everything. */
  private chain(values: Record<string, string | number>, port: number | null): Record<string, any> {
    const chain = fill(this.t.egressFilterChain, { ...values, port: port ?? 'any', portText: String(port ?? 'any') }) as Record<string, any>;
    if (port === null) {
      delete chain.filter_chain_match;
      for (const f of chain.filters ?? []) {
        const md = f?.typed_config?.grpc_service?.initial_metadata;
        if (Array.isArray(md)) f.typed_config.grpc_service.initial_metadata = md.filter((h: { key?: string }) => h.key !== DESTINATION_PORT_HEADER);
      }
    }
    return chain;
  }
}

/**
 * The bootstrap as one `--config-yaml` argument: compact JSON (which is YAML), every `$` doubled
 * except in the kubelet references of POD_ENV, so that kubelet's expansion yields exactly this
 * JSON with the pod's values in place.
 */
export function kubeletArg(value: unknown): string {
  return JSON.stringify(value).replace(KUBELET_DOLLAR, (m, ref: string | undefined) => (ref ? m : '$$'));
}

/** A `$` that starts one of our references (kept), or any other `$` (doubled). */
const KUBELET_DOLLAR = new RegExp(`\\$(\\((?:${Object.values(POD_ENV).map((v) => v.env).join('|')})\\))?`, 'g');

function egressListener(bootstrap: Record<string, any>): Record<string, any> | undefined {
  const listeners = bootstrap?.static_resources?.listeners;
  return Array.isArray(listeners) ? listeners.find((l: { name?: string }) => l?.name === 'ca_proxy_egress') : undefined;
}

/** A deep copy of `node` with "{{name}}" placeholders replaced (a whole-string placeholder keeps the value's type). */
function fill(node: unknown, values: Record<string, string | number>): unknown {
  if (Array.isArray(node)) return node.map((n) => fill(n, values));
  if (node && typeof node === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) {
      if (k === '__proto__') throw new TemplateError('the template has a "__proto__" key');
      out[k] = fill(v, values);
    }
    return out;
  }
  if (typeof node !== 'string' || !node.includes('{{')) return node;
  const whole = /^\{\{(\w+)\}\}$/.exec(node);
  if (whole) return valueOf(whole[1]!, values);
  return node.replace(/\{\{(\w+)\}\}/g, (_m, name: string) => String(valueOf(name, values)));
}

function valueOf(name: string, values: Record<string, string | number>): string | number {
  if (!Object.prototype.hasOwnProperty.call(values, name)) throw new TemplateError(`unknown placeholder {{${name}}} (known: ${Object.keys(values).join(', ')})`);
  return values[name]!;
}

function splitHostPort(address: string): [string, string] {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i), address.slice(i + 1)];
}
