/**
 * What the injector does to one Pod (DESIGN.md "Kubernetes pieces", injector; docs/kubernetes.md
 * "Sidecar injection"): decide whether it is injected, and build the RFC 6902 JSON Patch against
 * the pod exactly as the API server sent it.
 *
 * Added, in this order among the init containers, before the pod's own (which therefore already
 * run behind the filter):
 *   1. `ca-proxy-redirect` — `ca-proxy redirect`, as root with NET_ADMIN and NET_RAW only;
 *   2. `ca-proxy-envoy` — a native sidecar (restartPolicy Always, Kubernetes ≥ 1.29) running as
 *      the proxy uid whatever the pod's securityContext says, its bootstrap rendered for the pod;
 *   3. `ca-proxy-extproc` — placement `sidecar` only: `ca-proxy serve-extproc` on a Unix socket.
 * and, to every container of the pod's own (init containers included), the interception CA bundle
 * (a read-only ConfigMap volume) announced through SSL_CERT_FILE, NODE_EXTRA_CA_CERTS,
 * REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE, except where the container's `env` already sets one.
 */
import type { V1Container, V1EnvVar, V1Pod, V1Probe, V1SecurityContext, V1Volume, V1VolumeMount } from '@kubernetes/client-node';
import type { ContainerResources, InjectorConfig } from '../../config/types';
import {
  AnnotationError,
  ENVOY_SDS_ANNOTATION,
  INJECTED_ANNOTATION,
  INJECT_LABEL,
  KEPT_ENV_ANNOTATION,
  formatPorts,
  redirectSettings,
  type RedirectSettings,
} from './annotations';
import { BootstrapTemplate, POD_ENV, POD_PATHS, kubeletArg } from './bootstrap';

/** One RFC 6902 operation; the injector only ever adds. */
export interface PatchOperation {
  op: 'add';
  path: string;
  value: unknown;
}

/** What the injector answers for a pod. */
export type Outcome =
  | { result: 'injected'; patch: PatchOperation[]; warnings: string[] }
  /** Admitted unchanged, no warning: opted out, or injected already. */
  | { result: 'opted_out' | 'already_injected'; warnings: string[] }
  /** Admitted unchanged with a warning: the pod cannot be patched safely. */
  | { result: 'unsafe'; warnings: string[] }
  /** Refused: admitting it would start it without the filter it asked for. */
  | { result: 'denied'; message: string };

export const CONTAINER_NAMES = { redirect: 'ca-proxy-redirect', envoy: 'ca-proxy-envoy', processor: 'ca-proxy-extproc' } as const;
export const VOLUME_NAMES = {
  caBundle: 'ca-proxy-ca-bundle',
  envoyRun: 'ca-proxy-envoy-run',
  processorRun: 'ca-proxy-run',
  envoyClient: 'ca-proxy-envoy-client',
  envoySds: 'ca-proxy-envoy-sds',
  processorConfig: 'ca-proxy-config',
  processorSecrets: 'ca-proxy-secrets',
  processorTmp: 'ca-proxy-tmp',
} as const;

/** The variables that point TLS stacks at a CA bundle: OpenSSL, Node.js, Python requests, curl. */
export const CA_ENV_VARS = ['SSL_CERT_FILE', 'NODE_EXTRA_CA_CERTS', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE'] as const;
/** Where the bundle is mounted in the pod's containers. */
export const CA_BUNDLE_DIR = '/etc/ca-proxy/ca-bundle';
export const CA_BUNDLE_FILE = `${CA_BUNDLE_DIR}/ca.crt`;
const PROCESSOR_CONFIG_DIR = '/etc/ca-proxy/config';
const PROCESSOR_SECRETS_DIR = '/etc/ca-proxy/secrets';

/** The injector's settings for every pod (from the `injector` config section), with the parsed template. */
export interface InjectorSettings {
  config: InjectorConfig;
  template: BootstrapTemplate;
  /** Written into `ca-proxy.io/injected`. */
  version: string;
}

/**
 * Decides and builds the injection of `pod` (the AdmissionRequest's object) in `namespace` (the
 * request's namespace: a pod created under generateName may carry none itself). Pods reach the
 * webhook through its objectSelector (pod label `"true"`) or namespaceSelector (namespace label);
 * the pod label `"false"` opts out in either case.
 */
export function planInjection(pod: V1Pod, namespace: string, s: InjectorSettings): Outcome {
  const labels = pod.metadata?.labels ?? {};
  const annotations = pod.metadata?.annotations ?? {};
  const label = labels[INJECT_LABEL];
  if (label === 'false') return { result: 'opted_out', warnings: [] };
  if (label !== undefined && label !== 'true') {
    return { result: 'denied', message: `ca-proxy: label ${INJECT_LABEL} must be "true" or "false" (got ${JSON.stringify(label)})` };
  }

  const spec = pod.spec!;
  const all = [...(spec.initContainers ?? []), ...(spec.containers ?? []), ...((spec as { ephemeralContainers?: V1Container[] }).ephemeralContainers ?? [])];
  const ours = new Set<string>(Object.values(CONTAINER_NAMES));
  const clash = all.filter((c) => ours.has(c.name));
  if (clash.length && annotations[INJECTED_ANNOTATION] !== undefined) return { result: 'already_injected', warnings: [] };

  const who = `pod ${namespace}/${pod.metadata?.name || `${pod.metadata?.generateName ?? ''}*`}`;
  const unchanged = (why: string): Outcome => ({ result: 'unsafe', warnings: [`ca-proxy: ${who} admitted WITHOUT the egress filter: ${why}`] });
  if (spec.hostNetwork) return unchanged("it uses hostNetwork (iptables rules would redirect the node's traffic)");
  if (spec.os?.name === 'windows') return unchanged('it is a Windows pod (the redirect needs Linux iptables)');
  if (clash.length) return unchanged(`it already has a container named ${clash.map((c) => c.name).join(', ')}, without the ${INJECTED_ANNOTATION} annotation`);
  const ourVolumes = new Set<string>(Object.values(VOLUME_NAMES));
  const volumeClash = (spec.volumes ?? []).filter((v) => ourVolumes.has(v.name));
  if (volumeClash.length) return unchanged(`it already has a volume named ${volumeClash.map((v) => v.name).join(', ')}`);
  const mountClash = [...(spec.initContainers ?? []), ...spec.containers].filter((c) => (c.volumeMounts ?? []).some((m) => m.mountPath.replace(/\/+$/, '') === CA_BUNDLE_DIR));
  if (mountClash.length) return unchanged(`container ${mountClash.map((c) => c.name).join(', ')} already mounts something at ${CA_BUNDLE_DIR}`);

  // The proxy uid's traffic is never redirected: a container of the pod's own running as it would
  // reach the network unfiltered (an image's USER cannot be seen here; docs/kubernetes.md says so).
  const podUid = spec.securityContext?.runAsUser;
  const asProxy = [...(spec.initContainers ?? []), ...spec.containers].filter((c) => (c.securityContext?.runAsUser ?? podUid) === s.config.proxyUid);
  if (asProxy.length) {
    return { result: 'denied', message: `ca-proxy: ${who}: container ${asProxy.map((c) => c.name).join(', ')} runs as uid ${s.config.proxyUid}, the proxy's uid, whose traffic is never redirected; run it as another uid` };
  }

  let redirect: RedirectSettings;
  try {
    redirect = redirectSettings(annotations, s.config);
  } catch (err) {
    if (err instanceof AnnotationError) return { result: 'denied', message: `ca-proxy: ${who}: ${err.message}` };
    throw err;
  }
  return { result: 'injected', patch: buildPatch(pod, s, redirect), warnings: [] };
}

/** Renderings by redirected ports: pods of one workload share them, and rendering is most of a review's CPU. */
const renderCache = new WeakMap<InjectorSettings, Map<string, { arg: string; sds: Record<string, unknown> | null }>>();
const RENDER_CACHE_SIZE = 256;

function renderedFor(s: InjectorSettings, redirect: RedirectSettings): { arg: string; sds: Record<string, unknown> | null } {
  let cache = renderCache.get(s);
  if (!cache) renderCache.set(s, (cache = new Map()));
  const key = formatPorts(redirect.ports);
  let hit = cache.get(key);
  if (!hit) {
    const c = s.config;
    const r = s.template.render({ placement: c.placement, processorAddress: c.processorAddress, proxyPort: c.proxyPort, readyPort: c.readyPort, messageTimeoutMs: c.messageTimeoutMs, ipv6: c.ipv6, ports: redirect.ports });
    hit = { arg: kubeletArg(r.bootstrap), sds: r.sds };
    if (cache.size >= RENDER_CACHE_SIZE) cache.clear();
    cache.set(key, hit);
  }
  return hit;
}

function buildPatch(pod: V1Pod, s: InjectorSettings, redirect: RedirectSettings): PatchOperation[] {
  const c = s.config;
  const spec = pod.spec!;
  const ops: PatchOperation[] = [];
  const rendered = renderedFor(s, redirect);

  // The pod's own containers: the CA bundle, without overriding what their env sets.
  const kept: string[] = [];
  const ownContainers: [string, V1Container[] | undefined][] = [
    ['initContainers', spec.initContainers],
    ['containers', spec.containers],
  ];
  for (const [field, list] of ownContainers) {
    (list ?? []).forEach((container, i) => {
      const base = `/spec/${field}/${i}`;
      const set = new Set((container.env ?? []).map((e) => e.name));
      const keep = CA_ENV_VARS.filter((v) => set.has(v));
      if (keep.length) kept.push(`${container.name}=${keep.join(',')}`);
      const env: V1EnvVar[] = CA_ENV_VARS.filter((v) => !set.has(v)).map((name) => ({ name, value: CA_BUNDLE_FILE }));
      appendAll(ops, `${base}/env`, container.env, env);
      appendAll(ops, `${base}/volumeMounts`, container.volumeMounts, [{ name: VOLUME_NAMES.caBundle, mountPath: CA_BUNDLE_DIR, readOnly: true }]);
    });
  }

  const annotations: Record<string, string> = { [INJECTED_ANNOTATION]: s.version };
  if (kept.length) annotations[KEPT_ENV_ANNOTATION] = kept.join(';');
  if (rendered.sds) annotations[ENVOY_SDS_ANNOTATION] = JSON.stringify(rendered.sds);
  if (!pod.metadata) ops.unshift({ op: 'add', path: '/metadata', value: { annotations } });
  else if (!pod.metadata.annotations) ops.unshift({ op: 'add', path: '/metadata/annotations', value: annotations });
  else ops.unshift(...Object.entries(annotations).map(([k, v]) => ({ op: 'add' as const, path: `/metadata/annotations/${pointerEscape(k)}`, value: v })));

  // Ours first among the init containers (after the edits above, whose indices are the pod's).
  const added = [redirectContainer(c, redirect), envoyContainer(c, rendered.arg)];
  if (c.placement === 'sidecar') added.push(processorContainer(c));
  if (!spec.initContainers) ops.push({ op: 'add', path: '/spec/initContainers', value: added });
  else added.forEach((container, i) => ops.push({ op: 'add', path: `/spec/initContainers/${i}`, value: container }));

  appendAll(ops, '/spec/volumes', spec.volumes, volumes(c));
  return ops;
}

/** Adds `items` to the list at `path`: the whole list when the pod has none, else each appended (`/-`). */
function appendAll(ops: PatchOperation[], path: string, existing: unknown[] | undefined, items: unknown[]): void {
  if (!items.length) return;
  if (!existing) ops.push({ op: 'add', path, value: items });
  else for (const item of items) ops.push({ op: 'add', path: `${path}/-`, value: item });
}

/** RFC 6901 §3: `~` → `~0`, `/` → `~1`. */
export function pointerEscape(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

function resources(r: ContainerResources): V1Container['resources'] {
  return JSON.parse(JSON.stringify(r)) as V1Container['resources'];
}

/** Envoy and the processor: the proxy uid (excluded from the redirect), nothing else. */
function proxySecurityContext(uid: number): V1SecurityContext {
  return {
    runAsUser: uid,
    runAsGroup: uid,
    runAsNonRoot: true,
    allowPrivilegeEscalation: false,
    privileged: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  };
}

function redirectContainer(c: InjectorConfig, r: RedirectSettings): V1Container {
  const args = ['redirect', '--proxy-port', String(c.proxyPort), '--proxy-uid', String(c.proxyUid), '--ports', formatPorts(r.ports)];
  if (r.excludePorts.length) args.push('--exclude-ports', r.excludePorts.join(','));
  if (r.excludeCidrs.length) args.push('--exclude-cidrs', r.excludeCidrs.join(','));
  return {
    name: CONTAINER_NAMES.redirect,
    image: c.images.caProxy,
    imagePullPolicy: c.imagePullPolicy,
    args,
    resources: resources(c.resources.redirect),
    // Root for iptables, with only the two capabilities it needs (runAsNonRoot: false overrides a
    // pod-level true, which would otherwise refuse to start this container).
    securityContext: {
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
  };
}

function httpProbe(path: string, port: number, periodSeconds: number, failureThreshold: number): V1Probe {
  return { httpGet: { path, port }, periodSeconds, failureThreshold, timeoutSeconds: 1 };
}

function envoyContainer(c: InjectorConfig, configYaml: string): V1Container {
  const mounts: V1VolumeMount[] = [{ name: VOLUME_NAMES.envoyRun, mountPath: POD_PATHS.envoyRunDir }];
  if (c.placement === 'sidecar') mounts.push({ name: VOLUME_NAMES.processorRun, mountPath: POD_PATHS.processorRunDir });
  else {
    mounts.push({ name: VOLUME_NAMES.envoyClient, mountPath: POD_PATHS.clientCertDir, readOnly: true });
    mounts.push({ name: VOLUME_NAMES.envoySds, mountPath: POD_PATHS.sdsDir, readOnly: true });
  }
  return {
    name: CONTAINER_NAMES.envoy,
    image: c.images.envoy,
    imagePullPolicy: c.imagePullPolicy,
    restartPolicy: 'Always',
    command: ['envoy'],
    args: ['--config-yaml', configYaml, '--disable-hot-restart', '--log-level', c.envoyLogLevel],
    env: Object.values(POD_ENV).map((v) => ({ name: v.env, valueFrom: { fieldRef: { fieldPath: v.fieldPath } } })),
    ports: [{ name: 'ca-proxy-ready', containerPort: c.readyPort, protocol: 'TCP' }],
    // The next init container (and so the workload) starts only once Envoy listens.
    startupProbe: httpProbe('/ready', c.readyPort, 1, 120),
    readinessProbe: httpProbe('/ready', c.readyPort, 5, 3),
    resources: resources(c.resources.envoy),
    securityContext: proxySecurityContext(c.proxyUid),
    volumeMounts: mounts,
  };
}

function processorContainer(c: InjectorConfig): V1Container {
  return {
    name: CONTAINER_NAMES.processor,
    image: c.images.caProxy,
    imagePullPolicy: c.imagePullPolicy,
    restartPolicy: 'Always',
    args: [
      'serve-extproc',
      '--config',
      `${PROCESSOR_CONFIG_DIR}/config.yaml`,
      '--listen',
      `unix:${POD_PATHS.processorSocket}`,
      '--admin',
      `0.0.0.0:${c.processorAdminPort}`,
    ],
    ports: [{ name: 'ca-proxy-admin', containerPort: c.processorAdminPort, protocol: 'TCP' }],
    startupProbe: httpProbe('/healthz', c.processorAdminPort, 1, 120),
    readinessProbe: httpProbe('/readyz', c.processorAdminPort, 5, 3),
    resources: resources(c.resources.processor),
    securityContext: proxySecurityContext(c.proxyUid),
    volumeMounts: [
      { name: VOLUME_NAMES.processorRun, mountPath: POD_PATHS.processorRunDir },
      { name: VOLUME_NAMES.processorConfig, mountPath: PROCESSOR_CONFIG_DIR, readOnly: true },
      { name: VOLUME_NAMES.processorSecrets, mountPath: PROCESSOR_SECRETS_DIR, readOnly: true },
      // The CRL watcher's spool (the root filesystem is read-only).
      { name: VOLUME_NAMES.processorTmp, mountPath: '/tmp' },
    ],
  };
}

function volumes(c: InjectorConfig): V1Volume[] {
  const out: V1Volume[] = [
    // Not optional: a namespace without the bundle ConfigMap gets pods that do not start (and say why).
    { name: VOLUME_NAMES.caBundle, configMap: { name: c.caBundleConfigMap, items: [{ key: c.caBundleKey, path: 'ca.crt' }], defaultMode: 0o444 } },
    { name: VOLUME_NAMES.envoyRun, emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } },
  ];
  if (c.placement === 'sidecar') {
    out.push(
      { name: VOLUME_NAMES.processorRun, emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } },
      { name: VOLUME_NAMES.processorConfig, configMap: { name: c.sidecarConfigMap } },
      { name: VOLUME_NAMES.processorSecrets, secret: { secretName: c.sidecarSecret } },
      { name: VOLUME_NAMES.processorTmp, emptyDir: {} },
    );
  } else {
    out.push(
      { name: VOLUME_NAMES.envoyClient, secret: { secretName: c.envoyClientSecret } },
      {
        name: VOLUME_NAMES.envoySds,
        downwardAPI: { items: [{ path: POD_PATHS.sdsFile, fieldRef: { fieldPath: `metadata.annotations['${ENVOY_SDS_ANNOTATION}']` } }] },
      },
    );
  }
  return out;
}
