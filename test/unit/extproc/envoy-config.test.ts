/**
 * deploy/envoy/sidecar-bootstrap.yaml checked against Envoy's API protos (test/support/envoy-api.ts:
 * the v3 Bootstrap and extension protos shipped in `@grpc/grpc-js-xds/deps`, plus our proto/ for the
 * network ext_proc filter's config), strictly: an unknown field, a wrong type, an unknown enum name
 * or an unresolvable `@type` is an error (Envoy rejects those at startup too). The file is a
 * rendering of deploy/envoy/sidecar-bootstrap.template.yaml and must be up to date with it. Then
 * the pieces the design asks for are checked by value. (Every bootstrap the injector generates is
 * validated the same way in test/unit/k8s/injector-bootstrap.test.ts.)
 */
import { test } from '@jest/globals';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';
import YAML from 'yaml';
import { repoRoot } from '../../support/root';
import { envoyProtos, resolveProtoPath, validateBootstrap } from '../../support/envoy-api';
import { renderExample } from '../../../scripts/render-envoy-bootstrap';

const BOOTSTRAP = path.join(repoRoot(), 'deploy/envoy/sidecar-bootstrap.yaml');

function bootstrap(): Record<string, unknown> {
  return YAML.parse(fs.readFileSync(BOOTSTRAP, 'utf8')) as Record<string, unknown>;
}

test('deploy/envoy/sidecar-bootstrap.yaml is the current rendering of the template (run `node dist/scripts/render-envoy-bootstrap.js` after changing it)', () => {
  assert.equal(fs.readFileSync(BOOTSTRAP, 'utf8'), renderExample());
});

test('the sidecar bootstrap is a valid envoy.config.bootstrap.v3.Bootstrap (strict: no unknown fields, right types, resolvable @type)', () => {
  assert.deepEqual(validateBootstrap(bootstrap()), []);
});

test('the validator catches an unknown field, a wrong type, a bad enum name and an unknown @type', () => {
  const doc = bootstrap() as any;
  const listener = doc.static_resources.listeners[0];
  listener.filter_chains[0].filters[0].typed_config.message_timout = '0.2s';
  listener.address.socket_address.port_value = 'fifteen';
  doc.static_resources.clusters[0].lb_policy = 'ROUND_ROBINISH';
  listener.listener_filters[0].typed_config['@type'] = 'type.googleapis.com/envoy.extensions.filters.listener.nope.v3.Nope';
  listener.filter_chains[0].filters[0].typed_config.failure_mode_allow = 'no';
  const errors = validateBootstrap(doc).join('\n');
  assert.match(errors, /message_timout: unknown field of envoy\.extensions\.filters\.network\.ext_proc\.v3\.NetworkExternalProcessor/);
  assert.match(errors, /port_value: expected uint32, got "fifteen"/);
  assert.match(errors, /lb_policy: "ROUND_ROBINISH" is not a value/);
  assert.match(errors, /unknown type type\.googleapis\.com\/envoy\.extensions\.filters\.listener\.nope/);
  assert.match(errors, /failure_mode_allow: expected bool/);
});

test('the bootstrap has what the sidecar needs: 15001 with original_dst + tls_inspector, ext_proc to ca-proxy, tcp_proxy to ORIGINAL_DST, ca_proxy metadata in the access log', () => {
  const doc = bootstrap() as any;
  const l = doc.static_resources.listeners[0];
  assert.equal(l.address.socket_address.port_value, 15001);
  assert.deepEqual(l.listener_filters.map((f: { name: string }) => f.name), ['envoy.filters.listener.original_dst', 'envoy.filters.listener.tls_inspector']);
  const [extProc, tcp] = l.filter_chains[0].filters;
  assert.equal(extProc.typed_config['@type'], 'type.googleapis.com/envoy.extensions.filters.network.ext_proc.v3.NetworkExternalProcessor');
  assert.equal(extProc.typed_config.failure_mode_allow, false, 'fail closed');
  assert.equal(extProc.typed_config.message_timeout, '1s');
  assert.ok(extProc.typed_config.stat_prefix.length > 0, 'stat_prefix is required (min_len 1)');
  const grpcCluster = doc.static_resources.clusters.find((c: { name: string }) => c.name === extProc.typed_config.grpc_service.envoy_grpc.cluster_name);
  assert.ok(grpcCluster.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'].explicit_http_config.http2_protocol_options, 'gRPC needs HTTP/2');
  assert.equal(tcp.name, 'envoy.filters.network.tcp_proxy');
  const dst = doc.static_resources.clusters.find((c: { name: string }) => c.name === tcp.typed_config.cluster);
  assert.equal(dst.type, 'ORIGINAL_DST');
  assert.equal(dst.lb_policy, 'CLUSTER_PROVIDED');
  const fmt = JSON.stringify(tcp.typed_config.access_log[0].typed_config.log_format);
  assert.match(fmt, /%DYNAMIC_METADATA\(ca_proxy:outcome\)%/);
  assert.match(fmt, /%DYNAMIC_METADATA\(ca_proxy:reason\)%/);
});

test('the bootstrap has the Envoy 1.40 pieces: connection_attributes, receiving_namespaces ca_proxy, the delayed-close runtime guard, pod identity and port headers, admin off the network', () => {
  const doc = bootstrap() as any;
  const l = doc.static_resources.listeners.find((x: { name: string }) => x.name === 'ca_proxy_egress');
  assert.equal(l.filter_chains.length, 1);
  assert.deepEqual(l.filter_chains[0].filter_chain_match, { destination_port: 443 });
  const cfg = l.filter_chains[0].filters[0].typed_config;
  assert.deepEqual(cfg.connection_attributes, ['source.address', 'destination.address', 'destination.port', 'connection.requested_server_name']);
  assert.deepEqual(cfg.metadata_options, { receiving_namespaces: { untyped: ['ca_proxy'] } });
  assert.deepEqual(
    Object.fromEntries(cfg.grpc_service.initial_metadata.map((h: { key: string; value: string }) => [h.key, h.value])),
    {
      'x-ca-proxy-pod-name': '$(CA_PROXY_POD_NAME)',
      'x-ca-proxy-pod-namespace': '$(CA_PROXY_POD_NAMESPACE)',
      'x-ca-proxy-pod-service-account': '$(CA_PROXY_POD_SERVICE_ACCOUNT)',
      'x-ca-proxy-destination-port': '443',
    },
  );
  const guard = doc.layered_runtime.layers.find((x: { static_layer?: object }) => x.static_layer).static_layer;
  assert.equal(guard['envoy.reloadable_features.connection_close_through_filter_manager'], true);
  assert.ok(doc.admin.address.pipe, 'the admin API listens on a Unix socket, not on the network the workload shares');
  assert.equal(doc.admin.address.pipe.mode, 0o600);
  const ready = doc.static_resources.listeners.find((x: { name: string }) => x.name === 'ca_proxy_ready');
  const routes = ready.filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes;
  assert.deepEqual(routes.map((r: { match: object }) => r.match), [{ path: '/ready', headers: [{ name: ':method', string_match: { exact: 'GET' } }] }, { prefix: '/' }]);
  assert.deepEqual(routes[1].direct_response, { status: 404 }, 'nothing but GET /ready reaches the admin API');
});

test('our network ext_proc protos match the field numbers and types of Envoy 1.40', () => {
  const root = envoyProtos();
  const cfg = root.lookupType('envoy.extensions.filters.network.ext_proc.v3.NetworkExternalProcessor');
  assert.deepEqual(
    cfg.fieldsArray.map((f) => [f.name, f.id, f.type]),
    [
      ['grpc_service', 1, 'envoy.config.core.v3.GrpcService'],
      ['failure_mode_allow', 2, 'bool'],
      ['processing_mode', 3, 'ProcessingMode'],
      ['message_timeout', 4, 'google.protobuf.Duration'],
      ['stat_prefix', 5, 'string'],
      ['metadata_options', 6, 'MetadataOptions'],
      ['connection_attributes', 7, 'string'],
    ],
  );
  assert.ok(cfg.fields.connection_attributes!.repeated, 'connection_attributes is repeated string');
  const mo = root.lookupType('envoy.extensions.filters.network.ext_proc.v3.MetadataOptions');
  assert.deepEqual(mo.fieldsArray.map((f) => [f.name, f.id, f.type]), [['forwarding_namespaces', 1, 'MetadataNamespaces'], ['receiving_namespaces', 2, 'MetadataNamespaces']]);
  const svc = new protobuf.Root();
  svc.resolvePath = resolveProtoPath;
  svc.loadSync('envoy/service/network_ext_proc/v3/network_external_processor.proto', { keepCase: true });
  const res = svc.lookupType('envoy.service.network_ext_proc.v3.ProcessingResponse');
  assert.deepEqual(res.fieldsArray.map((f) => [f.name, f.id]), [['read_data', 1], ['write_data', 2], ['data_processing_status', 3], ['connection_status', 4], ['dynamic_metadata', 5], ['close_stream_to_ext_proc_server', 6]]);
  assert.deepEqual({ ...svc.lookupEnum('envoy.service.network_ext_proc.v3.ProcessingResponse.DataProcessedStatus').values }, { UNKNOWN: 0, UNMODIFIED: 1, MODIFIED: 2 });
  assert.deepEqual({ ...svc.lookupEnum('envoy.service.network_ext_proc.v3.ProcessingResponse.ConnectionStatus').values }, { CONTINUE: 0, CLOSE: 1, CLOSE_RST: 2 });
  const req = svc.lookupType('envoy.service.network_ext_proc.v3.ProcessingRequest');
  assert.deepEqual(req.fieldsArray.map((f) => [f.name, f.id]), [['read_data', 1], ['write_data', 2], ['metadata', 3], ['attributes', 4]]);
  const attrs = req.fields.attributes as unknown as protobuf.MapField;
  assert.equal(attrs.keyType, 'string');
  assert.equal(attrs.type, 'google.protobuf.Struct');
});
