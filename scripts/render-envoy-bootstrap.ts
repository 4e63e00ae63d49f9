/**
 * Writes deploy/envoy/sidecar-bootstrap.yaml: the bootstrap template rendered as the injector
 * renders it for a pod with the default injector settings, placement `sidecar` and port 443 (the
 * kubelet references `$(CA_PROXY_POD_NAME)` etc. left in). A reference for readers and for
 * hand-placed sidecars; test/unit/extproc/envoy-config.test.ts fails when it is out of date.
 *
 *   node dist/scripts/render-envoy-bootstrap.js     (after `npx tsc -p .`)
 */
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { defaultConfig } from '../internal/config/defaults';
import { BootstrapTemplate, DEFAULT_TEMPLATE } from '../internal/k8s/injector/bootstrap';

export const EXAMPLE_FILE = path.resolve(__dirname, '..', '..', 'deploy', 'envoy', 'sidecar-bootstrap.yaml');

const HEADER = `# Envoy sidecar bootstrap for ca-proxy (Envoy 1.40, API v3) — GENERATED, do not edit.
#
# Rendered from sidecar-bootstrap.template.yaml (beside this file) by
# \`node dist/scripts/render-envoy-bootstrap.js\`, as \`ca-proxy inject\` renders it for a pod with the
# default settings, placement \`sidecar\` (ca-proxy serve-extproc on a Unix socket) and port 443.
# The injector passes it to Envoy as \`--config-yaml\`, where kubelet replaces $(CA_PROXY_POD_NAME),
# $(CA_PROXY_POD_NAMESPACE) and $(CA_PROXY_POD_SERVICE_ACCOUNT) from the Downward API; a sidecar
# placed by hand must put the pod's values there itself.
#
# The pod's init container redirects outbound TCP to port 443 to 15001 (\`ca-proxy redirect\`),
# excluding Envoy's own uid. Validated against Envoy's API protos by
# test/unit/extproc/envoy-config.test.ts.
`;

/** The text of the example file. */
export function renderExample(): string {
  const d = defaultConfig().injector!;
  const { bootstrap } = BootstrapTemplate.load(DEFAULT_TEMPLATE).render({ ...d, placement: 'sidecar', ports: [443] });
  return HEADER + YAML.stringify(bootstrap, { lineWidth: 0 });
}

if (require.main === module) {
  fs.writeFileSync(EXAMPLE_FILE, renderExample());
  process.stdout.write(`wrote ${path.relative(process.cwd(), EXAMPLE_FILE)}\n`);
}
