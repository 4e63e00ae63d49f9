/**
 * Writes deploy/helm/ca-proxy/values.schema.json (JSON Schema draft-07, which helm checks values
 * against on install, upgrade, template and lint). The parts the chart passes through to ca-proxy's
 * own configuration — `defaults`, `rules`, `limits`, `leaf`, `log`, the extproc and publisher
 * settings — are taken from the config schema (internal/config/schema.ts), so a value the chart
 * accepts is one ca-proxy accepts; test/unit/chart/schema.test.ts checks the committed file is
 * what this script writes.
 *
 *   node dist/scripts/chart-schema.js            write the file
 *   node dist/scripts/chart-schema.js --check    exit 1 if the file differs
 */
import fs from 'node:fs';
import path from 'node:path';
import { configSchema, EXPECTED_KEYWORD } from '../internal/config/schema';

type Schema = Record<string, unknown>;

/** A deep copy without our `x-expected` annotations and, when `optional`, without `required` at the top. */
function fromConfig(s: unknown, optional = false): Schema {
  const strip = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(strip);
    if (v && typeof v === 'object') {
      return Object.fromEntries(Object.entries(v).filter(([k]) => k !== EXPECTED_KEYWORD).map(([k, x]) => [k, strip(x)]));
    }
    return v;
  };
  const copy = strip(s) as Schema;
  if (optional) delete copy.required;
  return copy;
}

const cfg = configSchema.properties;
const pub = cfg.publisher.properties;

const str = (description: string, extra: Schema = {}): Schema => ({ type: 'string', description, ...extra });
const bool = (description: string): Schema => ({ type: 'boolean', description });
const int = (description: string, minimum: number, maximum: number): Schema => ({ type: 'integer', minimum, maximum, description });
const obj = (properties: Record<string, Schema>, description = '', extra: Schema = {}): Schema => ({
  type: 'object',
  additionalProperties: false,
  ...(description ? { description } : {}),
  properties,
  ...extra,
});
/** Free-form Kubernetes fields passed through as they are (resources, affinity, …): the API server checks them. */
const k8s = (description: string, type: 'object' | 'array' = 'object'): Schema => ({ type, description });

const DNS_LABEL = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
const dnsLabel = (description: string): Schema => str(description, { minLength: 1, maxLength: 63, pattern: DNS_LABEL });
const objectName = (description: string): Schema => str(description, { minLength: 1, maxLength: 253, pattern: '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$' });
const pem = (description: string): Schema => str(description, { pattern: '^(|\\s*-----BEGIN CERTIFICATE-----[\\s\\S]*-----END CERTIFICATE-----\\s*)$' });
const port = (description: string): Schema => int(description, 1, 65535);
const duration = (description: string): Schema => str(description, { pattern: '^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$' });
const promDuration = (description: string): Schema => str(description, { pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$' });

const podSettings = (component: string): Record<string, Schema> => ({
  resources: k8s(`Container resources of the ${component}.`),
  podAnnotations: { type: 'object', additionalProperties: { type: 'string' }, description: 'Extra pod annotations.' },
  podLabels: { type: 'object', additionalProperties: { type: 'string' }, description: 'Extra pod labels.' },
  nodeSelector: { type: 'object', additionalProperties: { type: 'string' }, description: 'Pod nodeSelector.' },
  tolerations: k8s('Pod tolerations.', 'array'),
  affinity: k8s('Pod affinity.'),
  priorityClassName: str('Pod priorityClassName.'),
  serviceAccount: obj({ annotations: { type: 'object', additionalProperties: { type: 'string' }, description: 'Annotations of the ServiceAccount (e.g. workload identity).' } }),
});
const pdb = obj({ enabled: bool('Create a PodDisruptionBudget.'), minAvailable: { type: ['integer', 'string'], description: 'minAvailable (number or percentage).' } });

/**
 * `injector.config`: the `injector` section of the config schema, every field optional, without
 * the fields the chart sets itself (addresses, mounts, object names it creates, placement).
 */
function injectorConfigSchema(): Schema {
  const section = (configSchema.properties as Record<string, unknown>).injector as Schema | undefined;
  if (!section) return { type: 'object', description: 'Settings of the injector config file (validated by ca-proxy inject at start).' };
  const copy = fromConfig(section, true);
  const owned = ['listen', 'admin', 'tls', 'imagePullPolicy', 'placement', 'processorAddress', 'envoyClientSecret', 'sidecarConfigMap', 'sidecarSecret', 'caBundleConfigMap', 'caBundleKey'];
  const props = { ...(copy.properties as Record<string, Schema>) };
  for (const k of owned) delete props[k];
  const images = props.images as Schema | undefined;
  if (images) props.images = { ...images, required: undefined, properties: { envoy: (images.properties as Record<string, Schema>).envoy } };
  return { ...copy, description: 'Settings of the injector config file (`injector` in docs/configuration.md), except those the chart sets.', properties: props };
}

export function chartValuesSchema(): Schema {
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'ca-proxy chart values',
    description: 'Generated by scripts/chart-schema.ts from internal/config/schema.ts; do not edit by hand.',
    type: 'object',
    additionalProperties: false,
    properties: {
      nameOverride: str('Overrides the chart name in object names.', { maxLength: 40 }),
      fullnameOverride: str('Overrides the object name prefix.', { maxLength: 40 }),
      // Stripped by helm before validation on some paths; allowed so a values file may set it.
      global: { type: 'object' },
      image: obj({
        repository: str('Image repository.', { minLength: 1, pattern: '^[^\\s:@]+(:[0-9]+)?(/[^\\s:@]+)*$' }),
        tag: str('Image tag; empty: the chart appVersion.', { pattern: '^([\\w][\\w.-]{0,127})?$' }),
        digest: str('Image digest.', { pattern: '^(|sha256:[a-f0-9]{64})$' }),
        pullPolicy: { enum: ['Always', 'IfNotPresent', 'Never'], description: 'imagePullPolicy.' },
      }),
      imagePullSecrets: { type: 'array', items: obj({ name: objectName('Secret name.') }, '', { required: ['name'] }), description: 'imagePullSecrets of every pod.' },
      placement: { enum: ['central', 'sidecar'], description: 'Where the processor runs.' },
      interceptionCA: obj({
        secretName: objectName('kubernetes.io/tls Secret of the interception CA.'),
        certificate: pem('PEM of the interception CA certificate; empty: read from the Secret at install.'),
      }),
      injection: obj({
        namespaces: { type: 'array', uniqueItems: true, items: dnsLabel('An injection namespace.'), description: 'Namespaces whose pods are injected.' },
        caBundleConfigMap: objectName('Name of the workload trust bundle ConfigMap.'),
        caBundleExtra: pem('PEM certificates appended to the workload trust bundle.'),
        envoyClientSecret: objectName('Name of the Envoy client certificate Secret.'),
        sidecarSecret: objectName('placement sidecar: name of the Secret with the processor keys.'),
      }),
      trust: obj({ caCertificates: pem('PEM trust anchors.'), systemRoots: fromConfig(cfg.trust.properties.systemRoots) }),
      revocation: obj({ crlSigners: pem('PEM CRL signers.'), clockSkewSeconds: fromConfig(cfg.revocation.properties.clockSkewSeconds) }),
      identities: {
        type: 'array',
        description: 'Proxy client identities from kubernetes.io/tls Secrets.',
        items: obj({ name: fromConfig(cfg.identities.items.properties.name), secretName: objectName('The Secret with tls.crt and tls.key.') }, '', { required: ['name', 'secretName'] }),
      },
      workloadCA: pem('PEM CAs of workload certificates.'),
      destinations: fromConfig((cfg as Record<string, unknown>).destinations, true),
      defaults: fromConfig(cfg.defaults, true),
      rules: fromConfig(cfg.rules),
      limits: fromConfig(cfg.limits, true),
      leaf: fromConfig(cfg.leaf, true),
      log: fromConfig(cfg.log),
      events: obj({ enabled: bool('Pod Events for denials.'), ratePerMinute: fromConfig(cfg.events.properties.ratePerMinute) }),
      extproc: obj({
        port: port('gRPC port of the central processor.'),
        closeMode: fromConfig(cfg.extproc.properties.closeMode),
        closeStream: fromConfig(cfg.extproc.properties.closeStream),
        shutdownDeadlineMs: fromConfig(cfg.extproc.properties.shutdownDeadlineMs),
        defaultPort: fromConfig(cfg.extproc.properties.defaultPort),
      }),
      adminPort: port('Admin port of every component.'),
      podSecurityContext: k8s('Pod securityContext of every component.'),
      securityContext: k8s('Container securityContext of every component.'),
      processor: obj({
        replicas: int('Processor replicas (without autoscaling).', 1, 1000),
        workers: int('Worker processes per processor pod (config workers); raise with the CPU limit.', 1, 64),
        autoscaling: obj({
          enabled: bool('Create a HorizontalPodAutoscaler.'),
          minReplicas: int('HPA minReplicas.', 1, 1000),
          maxReplicas: int('HPA maxReplicas.', 1, 1000),
          targetCPUUtilizationPercentage: int('HPA CPU target, percent.', 1, 100),
        }),
        podDisruptionBudget: pdb,
        topologySpreadConstraints: k8s('Pod topologySpreadConstraints; empty: spread over nodes.', 'array'),
        service: obj({ type: { enum: ['ClusterIP', 'NodePort', 'LoadBalancer'], description: 'Service type.' } }),
        tlsValidityDays: int('Validity of the generated server certificate, days.', 1, 36500),
        terminationGracePeriodSeconds: int('terminationGracePeriodSeconds.', 0, 3600),
        ...podSettings('processor'),
      }),
      publisher: obj({
        enabled: bool('Deploy the CRL publisher.'),
        replicas: int('Publisher replicas.', 1, 10),
        sources: obj({ urls: fromConfig(pub.sources.properties.urls), caCertificates: pem('PEM CA certificates whose CRL distribution points are fetched.') }),
        configMapName: fromConfig(pub.configMapName),
        intervalSeconds: fromConfig(pub.intervalSeconds),
        nextUpdateMarginSeconds: fromConfig(pub.nextUpdateMarginSeconds),
        fetch: fromConfig(pub.fetch, true),
        lease: obj({ durationSeconds: fromConfig(pub.lease.properties.durationSeconds), renewSeconds: fromConfig(pub.lease.properties.renewSeconds) }),
        ...podSettings('publisher'),
      }),
      injector: obj({
        enabled: bool('Deploy the sidecar injector.'),
        replicas: int('Injector replicas.', 1, 100),
        timeoutSeconds: int('Webhook timeoutSeconds.', 1, 30),
        port: port('HTTPS port of the webhook.'),
        existingSecret: str('kubernetes.io/tls Secret to serve with.', { pattern: '^(|[a-z0-9]([-a-z0-9.]*[a-z0-9])?)$' }),
        tlsValidityDays: int('Validity of the generated serving certificate, days.', 1, 36500),
        config: injectorConfigSchema(),
        podDisruptionBudget: pdb,
        ...podSettings('injector'),
      }),
      certManager: obj({
        enabled: bool('Certificates from cert-manager.'),
        issuerRef: obj(
          { name: objectName('Issuer name.'), kind: { enum: ['Issuer', 'ClusterIssuer'] }, group: str('Issuer API group.') },
          'An existing (CA) issuer; empty: the chart creates one.',
          { dependencies: { kind: ['name'], group: ['name'] } },
        ),
        clusterResourceNamespace: dnsLabel("cert-manager's cluster resource namespace."),
        duration: duration('Certificate duration.'),
        renewBefore: duration('Certificate renewBefore.'),
      }),
      networkPolicy: obj({
        enabled: bool('Create NetworkPolicies.'),
        kubeAPIServer: obj({
          cidrs: { type: 'array', items: str('A CIDR.', { pattern: '^[0-9a-fA-F:.]+/[0-9]{1,3}$' }) },
          ports: { type: 'array', minItems: 1, items: port('A port.') },
        }),
        metricsFrom: k8s('NetworkPolicyPeers that may scrape the admin ports.', 'array'),
        injectorFrom: k8s('NetworkPolicyPeers that may call the webhook.', 'array'),
        publisherEgress: k8s('NetworkPolicyEgressRules for the CRL fetches.', 'array'),
      }),
      monitoring: obj({
        serviceMonitor: obj({ enabled: bool('Create a ServiceMonitor.'), interval: promDuration('Scrape interval.'), labels: { type: 'object', additionalProperties: { type: 'string' } } }),
        podMonitor: obj({ enabled: bool('Create a PodMonitor.'), interval: promDuration('Scrape interval.'), labels: { type: 'object', additionalProperties: { type: 'string' } } }),
        annotations: bool('prometheus.io/* pod annotations.'),
        prometheusRule: obj({
          enabled: bool('Create the PrometheusRule.'),
          labels: { type: 'object', additionalProperties: { type: 'string' } },
          crlNextUpdateWindowSeconds: int('CaProxyCrlNextUpdateSoon window, seconds.', 60, 2592000),
          denialRatePerSecond: { type: 'number', exclusiveMinimum: 0, description: 'CaProxyDenialsRising threshold, per second.' },
          publisherStaleSeconds: int('CaProxyPublisherNotPublishing threshold, seconds.', 60, 2592000),
          runbookBaseURL: str('Base URL of the runbooks.', { pattern: '^(|https?://\\S+)$' }),
        }),
        dashboard: obj({
          enabled: bool('Create the Grafana dashboard ConfigMap.'),
          labels: { type: 'object', additionalProperties: { type: 'string' } },
          namespace: str('Namespace of the dashboard ConfigMap.', { pattern: '^(|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$' }),
        }),
      }),
      tests: obj({
        target: str('HOST:PORT for ca-proxy check.', { pattern: '^(|[A-Za-z0-9.-]+:[0-9]{1,5}|\\[[0-9A-Fa-f:.]+\\]:[0-9]{1,5})$' }),
        sni: str('SNI for ca-proxy check.'),
        expect: { enum: ['allow', 'deny'], description: 'Expected decision.' },
      }),
    },
  };
}

export const SCHEMA_FILE = path.resolve(__dirname, '..', '..', 'deploy', 'helm', 'ca-proxy', 'values.schema.json');

export function renderSchema(): string {
  return JSON.stringify(chartValuesSchema(), null, 2) + '\n';
}

if (require.main === module) {
  const text = renderSchema();
  if (process.argv.includes('--check')) {
    const current = fs.existsSync(SCHEMA_FILE) ? fs.readFileSync(SCHEMA_FILE, 'utf8') : '';
    if (current !== text) {
      process.stderr.write(`${SCHEMA_FILE} is out of date: run node dist/scripts/chart-schema.js\n`);
      process.exit(1);
    }
  } else {
    fs.writeFileSync(SCHEMA_FILE, text);
    process.stdout.write(`wrote ${SCHEMA_FILE}\n`);
  }
}
