/**
 * Test helper: put a CRL into the fake API server in the docs/kubernetes.md format, as a
 * publisher would (through crl-configmap.ts's encoder), or tamper with what is there.
 */
import fs from 'node:fs';
import { parseCrl } from '../../../internal/pki/crl';
import { formatName } from '../../../internal/pki/certinfo';
import { encodeCrlConfigMaps, type CrlMeta } from '../../../internal/k8s/crl-configmap';
import type { FakeKubeApiServer, KubeObject } from '../../support/kube-apiserver';

export function metaOf(der: Buffer, source = 'test'): CrlMeta {
  const c = parseCrl(der);
  return {
    issuer: formatName(c.issuerDer),
    thisUpdate: c.thisUpdate,
    nextUpdate: c.nextUpdate,
    crlNumber: c.crlNumber === null ? null : c.crlNumber.toString(),
    sha256: c.sha256,
    source,
  };
}

/**
 * Writes the CRL at `derPath` as set `set` (parts in order; stale higher parts deleted after), the
 * way docs/kubernetes.md says a publisher updates a set. `onlyParts` writes just those part
 * indexes (a publisher caught mid-update). Returns the number of parts.
 */
export async function publish(
  api: FakeKubeApiServer, namespace: string, set: string, der: Buffer | string,
  opts: { maxPayloadBytes?: number; onlyParts?: number[]; meta?: Partial<CrlMeta> } = {},
): Promise<number> {
  const bytes = typeof der === 'string' ? fs.readFileSync(der) : der;
  const enc = await encodeCrlConfigMaps({ set, namespace, der: bytes, meta: { ...metaOf(bytes), ...(opts.meta ?? {}) }, maxPayloadBytes: opts.maxPayloadBytes });
  const n = enc.configMaps.length;
  enc.configMaps.forEach((cm, idx) => {
    if (opts.onlyParts && !opts.onlyParts.includes(idx + 1)) return;
    api.put('configmaps', cm as unknown as KubeObject);
  });
  if (!opts.onlyParts) {
    for (const o of api.listObjects('configmaps', namespace)) {
      if (o.metadata.labels?.['ca-proxy.io/crl-set'] === set && !enc.configMaps.some((c) => c.metadata?.name === o.metadata.name)) {
        api.remove('configmaps', namespace, o.metadata.name);
      }
    }
  }
  return n;
}
