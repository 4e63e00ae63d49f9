/**
 * The API server's side of a mutating webhook call, for tests and benchmarks (no API server runs
 * on the project's machines): build the `admission.k8s.io/v1` AdmissionReview it sends for a Pod
 * CREATE, apply the JSON Patch of the response as it does (RFC 6902, with the `fast-json-patch`
 * library, every operation validated against the document), and validate the result against the
 * Kubernetes Pod schema (`kubernetes-models`, the API's OpenAPI schema compiled).
 */
import { randomUUID } from 'node:crypto';
import { applyPatch, type Operation } from 'fast-json-patch';
import { Pod } from 'kubernetes-models/v1';
import type { V1Pod } from '@kubernetes/client-node';
import { defaultConfig, PACKAGE_VERSION } from '../../internal/config/defaults';
import type { InjectorConfig } from '../../internal/config/types';
import { BootstrapTemplate } from '../../internal/k8s/injector/bootstrap';
import type { InjectorSettings } from '../../internal/k8s/injector/pod';
import type { AdmissionResponse } from '../../internal/k8s/injector/review';

/** The injector's settings with the default config, shipped template and `over` merged in. */
export function injectorSettings(over: Partial<InjectorConfig> = {}): InjectorSettings {
  const config = { ...defaultConfig().injector!, images: { caProxy: 'registry.test/ca-proxy:test', envoy: 'registry.test/envoy:v1.40.0' }, ...over };
  return { config, template: BootstrapTemplate.load(), version: PACKAGE_VERSION };
}

/** A minimal valid Pod with one container; `over` replaces top-level parts of spec and metadata. */
export function podFixture(over: { metadata?: V1Pod['metadata']; spec?: Partial<NonNullable<V1Pod['spec']>> } = {}): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web', namespace: 'shop', labels: { 'ca-proxy.io/inject': 'true' }, ...over.metadata },
    spec: { serviceAccountName: 'web-sa', containers: [{ name: 'app', image: 'registry.test/app:1' }], ...over.spec },
  };
}

/** The AdmissionReview the API server sends for `operation` on `pod` in `namespace`. */
export function admissionReview(pod: unknown, o: { namespace?: string; operation?: string; uid?: string; kind?: { group: string; version: string; kind: string } } = {}): Record<string, unknown> {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: o.uid ?? randomUUID(),
      kind: o.kind ?? { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: o.kind ?? { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      namespace: o.namespace ?? 'shop',
      operation: o.operation ?? 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller', uid: randomUUID(), groups: ['system:serviceaccounts', 'system:authenticated'] },
      object: pod,
      oldObject: null,
      dryRun: false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
    },
  };
}

/** The JSON Patch of a response (decoded from base64), or null when it carries none. */
export function responsePatch(r: AdmissionResponse): Operation[] | null {
  if (r.patch === undefined) return null;
  if (r.patchType !== 'JSONPatch') throw new Error(`patchType is ${String(r.patchType)}`);
  return JSON.parse(Buffer.from(r.patch, 'base64').toString('utf8')) as Operation[];
}

/**
 * `pod` with the response's patch applied (a copy; `pod` is untouched), as the API server applies
 * it. Throws when an operation does not apply cleanly (a path that does not exist, an index out
 * of range, a malformed operation).
 */
export function applyResponse(pod: V1Pod, r: AdmissionResponse): V1Pod {
  const patch = responsePatch(r);
  if (!patch) return pod;
  return applyPatch(structuredClone(pod), patch, true, false).newDocument as V1Pod;
}

/** Throws with the schema's message when `pod` is not a valid core/v1 Pod. */
export function validatePod(pod: V1Pod): void {
  new Pod(pod as ConstructorParameters<typeof Pod>[0]).validate();
}

/** What the API server stores: the patched pod with the name (generateName) and namespace assigned. */
export function stored(pod: V1Pod, namespace: string): V1Pod {
  const out = structuredClone(pod);
  out.metadata = { ...out.metadata, namespace };
  if (!out.metadata.name) out.metadata.name = `${out.metadata.generateName ?? 'pod-'}x7k2q`;
  return out;
}
