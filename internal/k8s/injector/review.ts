/**
 * One `admission.k8s.io/v1` AdmissionReview in, one out (Kubernetes "Dynamic Admission Control":
 * the response carries the request's `uid`, `allowed`, and for a mutation `patchType: JSONPatch`
 * with the base64 of the RFC 6902 patch; `warnings` are shown to the client, e.g. by kubectl).
 *
 * What cannot be answered as a review (not JSON, not an AdmissionReview, another version, no
 * `request.uid`) is a `ReviewError`, which the server turns into HTTP 400: the API server then
 * applies the webhook's failurePolicy (Fail, for ca-proxy). A review of something other than a Pod
 * CREATE is allowed unchanged (with a warning when it is not a Pod: the webhook's rules are wrong).
 * A Pod CREATE whose object cannot be read is denied: admitting it would start it unfiltered.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { planInjection, type InjectorSettings, type Outcome } from './pod';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';

/** A body that is no AdmissionReview we can answer (HTTP 400). */
export class ReviewError extends Error {
  override readonly name = 'ReviewError';
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: 'JSONPatch';
  /** base64 of the JSON patch. */
  patch?: string;
  warnings?: string[];
  status?: { code: number; message: string; reason?: string };
}

export interface ReviewResult {
  /** The AdmissionReview to send back. */
  review: { apiVersion: string; kind: 'AdmissionReview'; response: AdmissionResponse };
  /** For metrics and logs: what was done. `ignored`: not a Pod CREATE. */
  result: Outcome['result'] | 'ignored';
  /** namespace/name (or generateName*) of the object, when there is one. */
  object: string | null;
}

/**
 * Answers one AdmissionReview body (`application/json`, already size-bounded by the server).
 * @throws ReviewError when the body is not an admission.k8s.io/v1 AdmissionReview with a request uid
 */
export function review(body: Buffer | string, s: InjectorSettings): ReviewResult {
  let doc: unknown;
  try {
    doc = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
  } catch (err) {
    throw new ReviewError(`body is not JSON: ${(err as Error).message}`);
  }
  if (!isObject(doc)) throw new ReviewError('body is not a JSON object');
  if (doc.kind !== 'AdmissionReview') throw new ReviewError(`kind is ${JSON.stringify(doc.kind)}, expected "AdmissionReview"`);
  if (doc.apiVersion !== ADMISSION_API_VERSION) {
    throw new ReviewError(`apiVersion is ${JSON.stringify(doc.apiVersion)}; this webhook speaks ${ADMISSION_API_VERSION} only (admissionReviewVersions: ["v1"])`);
  }
  const req = doc.request;
  if (!isObject(req)) throw new ReviewError('the AdmissionReview has no request');
  if (typeof req.uid !== 'string' || req.uid === '' || req.uid.length > 256) throw new ReviewError('request.uid is missing or not a string');
  const uid = req.uid;
  const answer = (response: Omit<AdmissionResponse, 'uid'>, result: ReviewResult['result'], object: string | null = null): ReviewResult => ({
    review: { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response: { uid, ...response } },
    result,
    object,
  });

  const kind = isObject(req.kind) ? req.kind : {};
  const isPod = kind.group === '' && kind.version === 'v1' && kind.kind === 'Pod' && (req.subResource === undefined || req.subResource === '');
  if (!isPod) {
    const what = `${String(kind.group ?? '?') || 'core'}/${String(kind.version ?? '?')} ${String(kind.kind ?? '?')}${req.subResource ? `/${String(req.subResource)}` : ''}`;
    return answer({ allowed: true, warnings: [`ca-proxy injector: sent a ${what}, which it does not mutate (only Pod CREATE); check the webhook's rules`] }, 'ignored');
  }
  if (req.operation !== 'CREATE') return answer({ allowed: true }, 'ignored');

  const namespace = typeof req.namespace === 'string' && req.namespace ? req.namespace : null;
  const pod = req.object;
  const problem = podProblem(pod) ?? (namespace === null ? 'request.namespace is missing' : null);
  if (problem) return answer({ allowed: false, status: { code: 400, reason: 'BadRequest', message: `ca-proxy injector: cannot read the Pod: ${problem}` } }, 'denied');
  const p = pod as V1Pod;
  const object = `${namespace}/${p.metadata?.name || `${p.metadata?.generateName ?? ''}*`}`;

  const out = planInjection(p, namespace!, s);
  switch (out.result) {
    case 'injected':
      return answer({ allowed: true, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(out.patch)).toString('base64'), ...warnings(out.warnings) }, out.result, object);
    case 'denied':
      return answer({ allowed: false, status: { code: 400, reason: 'BadRequest', message: out.message } }, out.result, object);
    default:
      return answer({ allowed: true, ...warnings(out.warnings) }, out.result, object);
  }
}

function warnings(list: string[]): { warnings?: string[] } {
  return list.length ? { warnings: list } : {};
}

/** Why `pod` is not a Pod the injector can patch, or null. Only what the patch relies on is checked. */
function podProblem(pod: unknown): string | null {
  if (!isObject(pod)) return 'request.object is missing or not an object';
  if (pod.metadata !== undefined && !isObject(pod.metadata)) return 'metadata is not an object';
  const md = (pod.metadata ?? {}) as Record<string, unknown>;
  for (const f of ['labels', 'annotations'] as const) {
    if (md[f] === undefined || md[f] === null) continue;
    if (!isObject(md[f]) || Object.values(md[f] as object).some((v) => typeof v !== 'string')) return `metadata.${f} is not a map of strings`;
  }
  if (!isObject(pod.spec)) return 'spec is missing';
  const spec = pod.spec;
  if (!Array.isArray(spec.containers) || spec.containers.length === 0) return 'spec.containers is missing or empty';
  for (const field of ['containers', 'initContainers', 'ephemeralContainers'] as const) {
    if (spec[field] === undefined || spec[field] === null) continue;
    if (!Array.isArray(spec[field])) return `spec.${field} is not a list`;
    for (const [i, c] of (spec[field] as unknown[]).entries()) {
      if (!isObject(c) || typeof c.name !== 'string') return `spec.${field}[${i}] has no name`;
      for (const list of ['env', 'volumeMounts'] as const) {
        if (c[list] === undefined || c[list] === null) continue;
        if (!Array.isArray(c[list]) || !(c[list] as unknown[]).every((e) => isObject(e) && typeof e.name === 'string')) return `spec.${field}[${i}].${list} is not a list of named entries`;
      }
      if (Array.isArray(c.volumeMounts) && !(c.volumeMounts as Record<string, unknown>[]).every((m) => typeof m.mountPath === 'string')) return `spec.${field}[${i}].volumeMounts has an entry without mountPath`;
    }
  }
  if (spec.volumes !== undefined && spec.volumes !== null && (!Array.isArray(spec.volumes) || !spec.volumes.every((v) => isObject(v) && typeof v.name === 'string'))) {
    return 'spec.volumes is not a list of named volumes';
  }
  return null;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
