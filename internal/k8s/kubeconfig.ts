/**
 * The KubeConfig a controller talks to the API server with: in-cluster (the pod's service
 * account token and CA under /var/run/secrets/kubernetes.io/serviceaccount, and the
 * KUBERNETES_SERVICE_HOST/PORT variables) when `path` is null, else the kubeconfig file at `path`
 * (its current context).
 */
import fs from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';

/** In-cluster service account namespace file (the default namespace when none is configured). */
export const SERVICE_ACCOUNT_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/**
 * @throws Error when `path` is given but cannot be read, or in-cluster is asked for outside a pod
 *   (no KUBERNETES_SERVICE_HOST).
 */
/**
 * @param field the config field that names the kubeconfig, for the error when there is none
 */
export function loadKubeConfig(path: string | null, field = 'revocation.kubernetes.kubeconfig'): KubeConfig {
  const kc = new KubeConfig();
  if (path !== null) {
    if (!fs.existsSync(path)) throw new Error(`kubeconfig ${path}: no such file`);
    kc.loadFromFile(path);
    if (!kc.getCurrentCluster()) throw new Error(`kubeconfig ${path}: no current context with a cluster`);
    return kc;
  }
  if (!process.env.KUBERNETES_SERVICE_HOST) {
    throw new Error(`in-cluster Kubernetes configuration needs KUBERNETES_SERVICE_HOST (not running in a pod?); set ${field}`);
  }
  kc.loadFromCluster();
  return kc;
}

/** The pod's own namespace when running in a cluster, else null. */
export function inClusterNamespace(): string | null {
  try {
    return fs.readFileSync(SERVICE_ACCOUNT_NAMESPACE_FILE, 'utf8').trim() || null;
  } catch {
    return null;
  }
}
