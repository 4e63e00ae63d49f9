/**
 * What a Process stream says about its connection (internal/extproc/connection-info.ts): the pod
 * from the initial metadata, the Envoy 1.40 connection attributes of the first request, and the
 * names the injected bootstrap uses for them.
 */
import { describe, test } from '@jest/globals';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import YAML from 'yaml';
import * as grpc from '@grpc/grpc-js';
import { toStruct } from '../../../internal/extproc/protos';
import {
  ATTRIBUTES_FILTER_NAME, CONNECTION_ATTRIBUTES, POD_HEADERS, DESTINATION_PORT_HEADER, DESTINATION_ADDRESS_HEADER,
  connectionAttributes, hasAttributes, headerDestination, parseEndpoint, podIdentity,
} from '../../../internal/extproc/connection-info';
import { DEFAULT_TEMPLATE } from '../../../internal/k8s/injector/bootstrap';

function md(h: Record<string, string>): grpc.Metadata {
  const m = new grpc.Metadata();
  for (const [k, v] of Object.entries(h)) m.set(k, v);
  return m;
}

describe('pod identity from the initial metadata', () => {
  test('valid names are read; unexpanded kubelet references and non-names are left out', () => {
    assert.deepEqual(podIdentity(md({ [POD_HEADERS.name]: 'web-7d9f-abcde', [POD_HEADERS.namespace]: 'shop', [POD_HEADERS.serviceAccount]: 'web' })), { pod: 'web-7d9f-abcde', namespace: 'shop', serviceAccount: 'web' });
    assert.deepEqual(podIdentity(md({ [POD_HEADERS.name]: '$(CA_PROXY_POD_NAME)', [POD_HEADERS.namespace]: 'Not_A.Label', [POD_HEADERS.serviceAccount]: 'x'.repeat(254) })), {});
    assert.deepEqual(podIdentity(md({})), {});
  });
});

describe('connection attributes (Envoy 1.40 ProcessingRequest.attributes)', () => {
  const entry = (v: Record<string, unknown>) => ({ [ATTRIBUTES_FILTER_NAME]: toStruct(v) });

  test('IPv4 and IPv6 endpoints, the port, the SNI', () => {
    assert.deepEqual(
      connectionAttributes(entry({ 'source.address': '10.1.2.3:40000', 'destination.address': '[2001:db8::1]:8443', 'destination.port': 8443, 'connection.requested_server_name': 'API.Example.com' })),
      { source: { address: '10.1.2.3', port: 40000 }, destination: { address: '2001:db8::1', port: 8443, sni: 'api.example.com' } },
    );
  });

  test('destination.port wins over the port in destination.address; a bare address has none', () => {
    assert.deepEqual(connectionAttributes(entry({ 'destination.address': '192.0.2.1:443', 'destination.port': 8443 }))!.destination, { address: '192.0.2.1', port: 8443 });
    assert.deepEqual(connectionAttributes(entry({ 'destination.address': '192.0.2.1' }))!.destination, { address: '192.0.2.1' });
  });

  test('malformed values are dropped one by one, never thrown', () => {
    const bad = connectionAttributes(entry({
      'source.address': 12,
      'destination.address': 'example.com:443',
      'destination.port': 70000,
      'connection.requested_server_name': '../etc/passwd',
    }));
    assert.deepEqual(bad, { source: {}, destination: {} });
    for (const port of ['443x', -1, 0, 1.5, '', { a: 1 }, [443], true]) {
      assert.equal(connectionAttributes(entry({ 'destination.port': port }))!.destination.port, undefined, `port ${JSON.stringify(port)}`);
    }
    assert.equal(parseEndpoint('[1.2.3.4]:80'), undefined, 'IPv4 in brackets');
    assert.equal(parseEndpoint('::1:80')?.address, '::1:80', 'an IPv6 address without brackets is the address itself');
    assert.equal(parseEndpoint('x'.repeat(100)), undefined);
    // Not a Struct at all, or the wrong shape inside.
    assert.deepEqual(connectionAttributes({ [ATTRIBUTES_FILTER_NAME]: null as never }), { source: {}, destination: {} });
    assert.deepEqual(connectionAttributes({ [ATTRIBUTES_FILTER_NAME]: { fields: { 'destination.port': { structValue: null } } } as never }), { source: {}, destination: {} });
  });

  test('absent or empty map: null (the headers apply); one entry under another filter name is read', () => {
    assert.equal(connectionAttributes(undefined), null);
    assert.equal(connectionAttributes({}), null);
    assert.equal(hasAttributes({}), false);
    assert.deepEqual(connectionAttributes({ my_ext_proc: toStruct({ 'destination.port': 993 }) })!.destination, { port: 993 });
    // Two entries, neither ours: nothing is guessed.
    assert.deepEqual(connectionAttributes({ a: toStruct({ 'destination.port': 1 }), b: toStruct({ 'destination.port': 2 }) }), { source: {}, destination: {} });
  });

  test('headers of Envoy before 1.40: port and address, each checked', () => {
    assert.deepEqual(headerDestination(md({ [DESTINATION_PORT_HEADER]: '8443', [DESTINATION_ADDRESS_HEADER]: '192.0.2.7' })), { port: 8443, address: '192.0.2.7' });
    assert.deepEqual(headerDestination(md({ [DESTINATION_PORT_HEADER]: '0', [DESTINATION_ADDRESS_HEADER]: 'evil' })), {});
  });
});

describe('one set of names for the injector and serve-extproc', () => {
  test('the bootstrap template asks for exactly CONNECTION_ATTRIBUTES and sends POD_HEADERS and the port header', () => {
    const t = YAML.parse(fs.readFileSync(DEFAULT_TEMPLATE, 'utf8'));
    const filter = t.egressFilterChain.filters.find((f: { name: string }) => f.name === ATTRIBUTES_FILTER_NAME);
    assert.ok(filter, `the template's egress chain has a filter named ${ATTRIBUTES_FILTER_NAME} (the attributes map key)`);
    assert.deepEqual(filter.typed_config.connection_attributes, [...CONNECTION_ATTRIBUTES]);
    const keys = filter.typed_config.grpc_service.initial_metadata.map((h: { key: string }) => h.key);
    assert.deepEqual(keys.sort(), [...Object.values(POD_HEADERS), DESTINATION_PORT_HEADER].sort());
  });
});
