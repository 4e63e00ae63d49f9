/**
 * JSON Schema (draft-07, as validated by ajv 8) of the ca-proxy configuration, i.e. of
 * `Config` in ./types.ts *after* the loader has merged the file over the defaults.
 *
 * Every object is closed (`additionalProperties: false`) so a misspelt key is an error,
 * never a silently ignored setting. Constraints that span fields (identity references,
 * duplicate names, "at least one listener") are checked in ./load.ts, where the message can
 * name both ends.
 *
 * `x-expected` is an annotation of ours (registered with ajv as a no-op keyword): the
 * human-readable description of what a `pattern`/`minProperties` keyword wants, used in
 * error messages instead of the raw regular expression.
 */

/** `host:port`: a DNS name, an IPv4 address or a bracketed IPv6 address, and a port 0–65535 (0: any free port). */
export const HOST_PORT_PATTERN =
  '^(?:\\[[0-9A-Fa-f:.]+(?:%[A-Za-z0-9]+)?\\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)' +
  ':(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}|0)$';

const SNI_LABEL = '(?:\\*\\*|\\*|[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)';
/** SNI glob: dot-separated labels, each a DNS label, `*` (one label) or `**` (one or more labels); optional trailing dot. */
export const SNI_GLOB_PATTERN = `^${SNI_LABEL}(?:\\.${SNI_LABEL})*\\.?$`;

/** Identity names are referenced from rules and appear in logs and Envoy metadata: keep them plain. */
export const IDENTITY_NAME_PATTERN = '^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})$';

const ENV_VAR_PATTERN = '^[A-Za-z_][A-Za-z0-9_]*$';

export const ACTIONS = ['intercept', 'inspect', 'passthrough', 'deny'] as const;
export const TLS13_POLICIES = ['deny', 'allowUnchecked', 'intercept'] as const;
export const REVOCATION_POLICIES = ['hardFail', 'softFail'] as const;
export const CLIENT_AUTH_MODES = ['none', 'optional', 'require'] as const;
export const MIN_TLS_VERSIONS = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'] as const;
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/** The annotation keyword described above; load.ts registers it with ajv. */
export const EXPECTED_KEYWORD = 'x-expected';

const hostPort = {
  type: 'string',
  pattern: HOST_PORT_PATTERN,
  [EXPECTED_KEYWORD]: 'host:port, e.g. 127.0.0.1:3128 or [::1]:3128',
};
const nullableHostPort = { ...hostPort, type: ['string', 'null'] };
const filePath = { type: 'string', minLength: 1, maxLength: 4096 };
const filePaths = { type: 'array', items: filePath, maxItems: 1024 };
const port = { type: 'integer', minimum: 1, maximum: 65535 };

/** A Kubernetes object name (DNS subdomain, RFC 1123), e.g. of a ConfigMap or Secret. */
const kubernetesName = {
  type: 'string',
  maxLength: 253,
  pattern: '^[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?$',
  [EXPECTED_KEYWORD]: 'a Kubernetes object name (lower-case letters, digits, "-", ".")',
};
/** A container image reference (no spaces; tag or digest as the registry wants). */
const image = { type: 'string', minLength: 1, maxLength: 1024, pattern: '^[^\\s]+$', [EXPECTED_KEYWORD]: 'an image reference without spaces' };
/** Kubernetes resource.Quantity (its OpenAPI pattern), e.g. 100m, 64Mi, 1. */
const quantity = {
  type: 'string',
  pattern: '^(?:[+-]?[0-9.]+)(?:[eEinumkKMGTP]*[-+]?[0-9]*)$',
  [EXPECTED_KEYWORD]: 'a Kubernetes quantity, e.g. 100m or 64Mi',
};
const resourceList = {
  type: 'object',
  maxProperties: 16,
  propertyNames: { pattern: '^[a-z0-9]([-a-z0-9./]*[a-zA-Z0-9])?$' },
  additionalProperties: quantity,
};
const containerResources = {
  type: 'object',
  additionalProperties: false,
  properties: { requests: resourceList, limits: resourceList },
};

const identityName = {
  type: 'string',
  pattern: IDENTITY_NAME_PATTERN,
  [EXPECTED_KEYWORD]: 'a name of letters, digits, ".", "_", "-" (at most 64)',
};

/** The fields a rule may override; in `defaults` all are required. */
const settingsProperties = {
  action: { enum: [...ACTIONS] },
  identity: { ...identityName, type: ['string', 'null'] },
  revocation: { enum: [...REVOCATION_POLICIES] },
  clientAuth: { enum: [...CLIENT_AUTH_MODES] },
  leafOnly: { type: 'boolean' },
  tls13: { enum: [...TLS13_POLICIES] },
  minVersion: { enum: [...MIN_TLS_VERSIONS] },
};

const cidr = {
  type: 'string',
  minLength: 2,
  maxLength: 64,
  pattern: '^[0-9A-Fa-f:.]+(?:/[0-9]{1,3})?$',
  [EXPECTED_KEYWORD]: 'a CIDR, e.g. 10.0.0.0/8 or fd00::/8',
};
const cidrs = { type: 'array', items: cidr, maxItems: 10_000 };

export const configSchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://ca-proxy.io/schemas/config.json',
  title: 'ca-proxy configuration',
  type: 'object',
  additionalProperties: false,
  required: [
    'listen',
    'admin',
    'workers',
    'interceptionCA',
    'leaf',
    'trust',
    'revocation',
    'destinations',
    'identities',
    'workloadCA',
    'limits',
    'defaults',
    'rules',
    'log',
    'extproc',
  ],
  properties: {
    listen: {
      type: 'object',
      additionalProperties: false,
      required: ['connect', 'sni', 'sniUpstreamPort'],
      properties: {
        connect: nullableHostPort,
        sni: nullableHostPort,
        sniUpstreamPort: port,
      },
    },
    admin: nullableHostPort,
    workers: { [EXPECTED_KEYWORD]: 'an integer from 1 to 256, or "auto"', oneOf: [{ type: 'integer', minimum: 1, maximum: 256 }, { const: 'auto' }] },
    interceptionCA: {
      type: 'object',
      additionalProperties: false,
      required: ['cert', 'key'],
      properties: { cert: filePath, key: filePath },
    },
    leaf: {
      type: 'object',
      additionalProperties: false,
      required: ['validityHours', 'cacheSize'],
      properties: {
        // A minted leaf lives only as long as the connections that use it; a year is plenty.
        validityHours: { type: 'integer', minimum: 1, maximum: 8760 },
        cacheSize: { type: 'integer', minimum: 1, maximum: 1_000_000 },
      },
    },
    trust: {
      type: 'object',
      additionalProperties: false,
      required: ['caFiles', 'systemRoots'],
      properties: { caFiles: filePaths, systemRoots: { type: 'boolean' } },
    },
    revocation: {
      type: 'object',
      additionalProperties: false,
      required: ['crlPaths', 'crlSigners', 'clockSkewSeconds', 'watch'],
      properties: {
        crlPaths: filePaths,
        crlSigners: filePaths,
        clockSkewSeconds: { type: 'integer', minimum: 0, maximum: 86400 },
        watch: { type: 'boolean' },
        kubernetes: {
          type: ['object', 'null'],
          additionalProperties: false,
          required: ['namespace'],
          properties: {
            namespace: { type: 'string', minLength: 1, maxLength: 63, pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' },
            labelSelector: { type: 'string', minLength: 1, maxLength: 1024 },
            kubeconfig: { type: ['string', 'null'], minLength: 1, maxLength: 4096 },
            volumePaths: filePaths,
            mode: { enum: ['api', 'volume', 'auto'] },
          },
        },
      },
    },
    destinations: {
      type: 'object',
      additionalProperties: false,
      required: ['allow', 'deny'],
      properties: { allow: cidrs, deny: cidrs },
    },
    identities: {
      type: 'array',
      maxItems: 256,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        properties: {
          name: identityName,
          cert: filePath,
          key: filePath,
          pfx: filePath,
          passphraseEnv: {
            type: 'string',
            pattern: ENV_VAR_PATTERN,
            [EXPECTED_KEYWORD]: 'an environment variable name, e.g. PROXY_KEY_PASSPHRASE',
          },
        },
      },
    },
    workloadCA: filePaths,
    limits: {
      type: 'object',
      additionalProperties: false,
      required: ['maxHandshakeMessageBytes', 'handshakeTimeoutMs', 'connectTimeoutMs', 'maxBufferedBytes', 'maxConnections', 'maxConnectionsPerSource', 'requestTimeoutMs', 'shutdownGraceMs'],
      properties: {
        // Handshake message lengths are uint24 (RFC 8446 §4); below 4 KiB no real Certificate fits.
        maxHandshakeMessageBytes: { type: 'integer', minimum: 4096, maximum: 16777215 },
        handshakeTimeoutMs: { type: 'integer', minimum: 1, maximum: 600_000 },
        connectTimeoutMs: { type: 'integer', minimum: 1, maximum: 300_000 },
        // Must hold a server flight up to a Certificate of maxHandshakeMessageBytes (checked in the engine too).
        maxBufferedBytes: { type: 'integer', minimum: 16384, maximum: 67108864 },
        maxConnections: { type: 'integer', minimum: 1, maximum: 1000000 },
        maxConnectionsPerSource: { type: 'integer', minimum: 1, maximum: 1000000 },
        requestTimeoutMs: { type: 'integer', minimum: 1, maximum: 600_000 },
        shutdownGraceMs: { type: 'integer', minimum: 0, maximum: 3600000 },
      },
    },
    defaults: {
      type: 'object',
      additionalProperties: false,
      required: ['action', 'identity', 'revocation', 'clientAuth', 'leafOnly', 'tls13', 'minVersion'],
      properties: settingsProperties,
    },
    rules: {
      type: 'array',
      maxItems: 10_000,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['match'],
        properties: {
          name: { type: 'string', minLength: 1, maxLength: 128 },
          match: {
            type: 'object',
            additionalProperties: false,
            minProperties: 1,
            [EXPECTED_KEYWORD]: 'at least one of sni, port, cidr',
            properties: {
              sni: {
                type: 'string',
                maxLength: 254,
                pattern: SNI_GLOB_PATTERN,
                [EXPECTED_KEYWORD]: 'a host name glob, e.g. api.example.com, *.example.com or **.example.com',
              },
              port,
              cidr: { ...cidrs, minItems: 1 },
            },
          },
          ...settingsProperties,
        },
      },
    },
    log: {
      type: 'object',
      additionalProperties: false,
      required: ['level'],
      properties: { level: { enum: [...LOG_LEVELS] } },
    },
    events: {
      type: 'object',
      additionalProperties: false,
      required: ['enabled', 'ratePerMinute'],
      properties: {
        enabled: { type: 'boolean' },
        namespace: { type: ['string', 'null'], minLength: 1, maxLength: 63, pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' },
        ratePerMinute: { type: 'integer', minimum: 1, maximum: 6000 },
        kubeconfig: { type: ['string', 'null'], minLength: 1, maxLength: 4096 },
      },
    },
    publisher: {
      type: 'object',
      additionalProperties: false,
      required: ['sources', 'namespace', 'configMapName', 'intervalSeconds', 'nextUpdateMarginSeconds', 'fetch', 'lease', 'kubeconfig'],
      properties: {
        sources: {
          type: 'object',
          additionalProperties: false,
          required: ['urls', 'caFiles'],
          properties: {
            urls: {
              type: 'array',
              maxItems: 256,
              items: { type: 'string', pattern: '^https?://[^\\s]+$', maxLength: 2048, [EXPECTED_KEYWORD]: 'an http:// or https:// URL' },
            },
            caFiles: filePaths,
          },
        },
        namespace: { type: ['string', 'null'], minLength: 1, maxLength: 63, pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', [EXPECTED_KEYWORD]: 'a namespace name (DNS label)' },
        // A DNS label with room for "-<10 hex>-<part>" inside 63 characters.
        configMapName: { type: 'string', minLength: 1, maxLength: 40, pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', [EXPECTED_KEYWORD]: 'a DNS label of at most 40 characters, e.g. ca-proxy-crl' },
        intervalSeconds: { type: 'integer', minimum: 1, maximum: 86400 },
        nextUpdateMarginSeconds: { type: 'integer', minimum: 0, maximum: 604800 },
        fetch: {
          type: 'object',
          additionalProperties: false,
          required: ['timeoutMs', 'maxBytes', 'retries'],
          properties: {
            timeoutMs: { type: 'integer', minimum: 1, maximum: 600_000 },
            maxBytes: { type: 'integer', minimum: 1024, maximum: 268435456 },
            retries: { type: 'integer', minimum: 0, maximum: 20 },
          },
        },
        lease: {
          type: 'object',
          additionalProperties: false,
          required: ['name', 'durationSeconds', 'renewSeconds'],
          properties: {
            name: { type: 'string', minLength: 1, maxLength: 253, pattern: '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$', [EXPECTED_KEYWORD]: 'a Lease name (DNS subdomain)' },
            durationSeconds: { type: 'integer', minimum: 2, maximum: 3600 },
            renewSeconds: { type: 'integer', minimum: 1, maximum: 1800 },
          },
        },
        kubeconfig: { type: ['string', 'null'], minLength: 1, maxLength: 4096 },
      },
    },
    injector: {
      type: 'object',
      additionalProperties: false,
      required: [
        'listen',
        'admin',
        'tls',
        'maxRequestBytes',
        'images',
        'imagePullPolicy',
        'placement',
        'processorAddress',
        'envoyClientSecret',
        'sidecarConfigMap',
        'sidecarSecret',
        'proxyUid',
        'proxyPort',
        'readyPort',
        'processorAdminPort',
        'ipv6',
        'ports',
        'excludePorts',
        'excludeCidrs',
        'caBundleConfigMap',
        'caBundleKey',
        'messageTimeoutMs',
        'envoyLogLevel',
        'envoyBootstrapTemplate',
        'resources',
      ],
      properties: {
        listen: hostPort,
        admin: nullableHostPort,
        tls: {
          type: 'object',
          additionalProperties: false,
          required: ['cert', 'key'],
          properties: { cert: filePath, key: filePath },
        },
        // The API server sends at most 3 MiB of object; leave room for the review around it.
        maxRequestBytes: { type: 'integer', minimum: 65536, maximum: 67108864 },
        images: {
          type: 'object',
          additionalProperties: false,
          required: ['caProxy', 'envoy'],
          properties: { caProxy: image, envoy: image },
        },
        imagePullPolicy: { enum: ['Always', 'IfNotPresent', 'Never'] },
        placement: { enum: ['central', 'sidecar'] },
        processorAddress: {
          type: 'string',
          pattern: '^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?:(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})$',
          [EXPECTED_KEYWORD]: 'a DNS name and a port, e.g. ca-proxy-extproc.ca-proxy.svc:9901',
        },
        envoyClientSecret: kubernetesName,
        sidecarConfigMap: kubernetesName,
        sidecarSecret: kubernetesName,
        proxyUid: { type: 'integer', minimum: 1, maximum: 2147483647 },
        proxyPort: port,
        readyPort: port,
        processorAdminPort: port,
        ipv6: { type: 'boolean' },
        ports: { type: 'string', pattern: '^(?:\\*|\\d{1,5}(?:,\\d{1,5})*)$', [EXPECTED_KEYWORD]: 'comma-separated ports, e.g. 443,8443, or * for every port' },
        excludePorts: { type: 'string', pattern: '^(?:\\d{1,5}(?:,\\d{1,5})*)?$', [EXPECTED_KEYWORD]: 'comma-separated ports, e.g. 25,587, or empty' },
        excludeCidrs: { type: 'string', maxLength: 4096, pattern: '^[0-9A-Fa-f.:/,]*$', [EXPECTED_KEYWORD]: 'comma-separated CIDRs, e.g. 10.0.0.0/8,fd00::/8, or empty' },
        caBundleConfigMap: kubernetesName,
        caBundleKey: { type: 'string', minLength: 1, maxLength: 253, pattern: '^[-._a-zA-Z0-9]+$', [EXPECTED_KEYWORD]: 'a ConfigMap key (letters, digits, "-", "_", ".")' },
        // Envoy's default is 200 ms; above a few seconds a stalled processor holds connections too long.
        messageTimeoutMs: { type: 'integer', minimum: 10, maximum: 60_000 },
        envoyLogLevel: { enum: ['trace', 'debug', 'info', 'warning', 'error', 'critical', 'off'] },
        envoyBootstrapTemplate: { ...filePath, type: ['string', 'null'] },
        resources: {
          type: 'object',
          additionalProperties: false,
          required: ['redirect', 'envoy', 'processor'],
          properties: { redirect: containerResources, envoy: containerResources, processor: containerResources },
        },
      },
    },
    extproc: {
      type: 'object',
      additionalProperties: false,
      required: ['listen', 'tls', 'closeMode', 'shutdownDeadlineMs', 'defaultPort', 'closeStream'],
      properties: {
        listen: {
          type: 'string',
          pattern: `^(?:unix:.+|${HOST_PORT_PATTERN.slice(1, -1)})$`,
          [EXPECTED_KEYWORD]: 'unix:/path/to.sock or host:port, e.g. 127.0.0.1:9901',
        },
        tls: {
          type: ['object', 'null'],
          additionalProperties: false,
          required: ['cert', 'key', 'clientCA'],
          properties: { cert: filePath, key: filePath, clientCA: filePath },
        },
        closeMode: { enum: ['CLOSE', 'CLOSE_RST'] },
        shutdownDeadlineMs: { type: 'integer', minimum: 0, maximum: 600_000 },
        defaultPort: port,
        closeStream: { enum: ['never', 'auto', 'always'] },
      },
    },
  },
} as const;
