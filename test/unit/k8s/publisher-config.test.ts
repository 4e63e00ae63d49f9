/**
 * publish-crl's configuration (cmd/ca-proxy/publish-crl.ts `loadPublisherConfig`) and source
 * discovery from CA certificates (internal/k8s/publisher.ts `distributionPointUrls`).
 */
import { test, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadPublisherConfig } from '../../../cmd/ca-proxy/publish-crl';
import { ConfigError } from '../../../internal/config/load';
import { distributionPointUrls } from '../../../internal/k8s/publisher';
import { CN, cert, crlDp, ext, keyPair, name, seq, ctx, uriName, dirName } from '../../support/der-writer';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-pubcfg-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function load(yaml: string) {
  const f = path.join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  fs.writeFileSync(f, yaml);
  return loadPublisherConfig(f);
}

test('interceptionCA is not needed; defaults fill the section; paths resolve against the file', () => {
  const { publisher } = load('publisher:\n  sources: {urls: ["http://ca.test/a.crl"], caFiles: [cas/root.pem]}\n  kubeconfig: kube/config\n');
  assert.deepEqual(publisher.sources, { urls: ['http://ca.test/a.crl'], caFiles: [path.join(dir, 'cas/root.pem')] });
  assert.equal(publisher.kubeconfig, path.join(dir, 'kube/config'));
  assert.equal(publisher.configMapName, 'ca-proxy-crl');
  assert.equal(publisher.intervalSeconds, 300);
  assert.equal(publisher.nextUpdateMarginSeconds, 3600);
  assert.deepEqual(publisher.fetch, { timeoutMs: 10000, maxBytes: 134217728, retries: 3 });
  assert.deepEqual(publisher.lease, { name: 'ca-proxy-publisher', durationSeconds: 15, renewSeconds: 5 });
  assert.equal(publisher.namespace, null);
});

test('bad values are reported with their path, like every config error', () => {
  const problems = (yaml: string): string[] => {
    try {
      load(yaml);
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      return e.problems.map((p) => `${p.path}: ${p.message}`);
    }
    assert.fail('no ConfigError');
  };
  assert.deepEqual(problems('trust: {caFiles: [ca.pem]}\npublisher:\n  sources: {urls: [], caFiles: []}\n'), ['publisher.sources: needs at least one of urls, caFiles']);
  assert.deepEqual(problems('publisher:\n  sources: {urls: ["http://ca.test/a.crl"]}\n'), [
    'trust.caFiles: no CRL signer: set trust.caFiles, revocation.crlSigners or publisher.sources.caFiles, or no fetched CRL could ever be verified',
  ]);
  assert.match(problems('publisher:\n  sources: {urls: ["ftp://x/y.crl"]}\n').join('\n'), /publisher\.sources\.urls\[0\]: must be an http:\/\/ or https:\/\/ URL/);
  assert.match(problems('publisher:\n  sources: {urls: ["http://x/"]}\n  configMapName: Bad_Name\n').join('\n'), /publisher\.configMapName: must be a DNS label/);
  assert.match(problems('publisher:\n  sources: {urls: ["http://x/"]}\n  lease: {durationSeconds: 5, renewSeconds: 5}\n').join('\n'), /publisher\.lease\.renewSeconds: must be below durationSeconds/);
  assert.match(problems('publisher:\n  sources: {urls: ["http://x/"]}\n  fetch: {retries: -1}\n').join('\n'), /publisher\.fetch\.retries: must be at least 0/);
  assert.match(problems('publisher:\n  sorces: {}\n').join('\n'), /publisher\.sorces: unknown field \(did you mean "sources"\?/);
});

test('distributionPointUrls: http(s) URIs of every cRLDistributionPoints, deduplicated, others skipped', () => {
  const k = keyPair();
  const n = name([CN, 'dp CA']);
  const withDp = (...gns: Buffer[]) => new X509Certificate(cert({ issuer: n, subject: n, key: k, signer: k, ca: true, extensions: [crlDp(...gns)] }));
  const a = withDp(uriName('http://ca.test/a.crl'), uriName('ldap://ca.test/cn=a'), dirName(n));
  const b = withDp(uriName('https://ca.test/b.crl'), uriName('http://ca.test/a.crl'));
  const none = new X509Certificate(cert({ issuer: n, subject: n, key: k, signer: k, ca: true }));
  // Two DistributionPoints in one extension.
  const two = new X509Certificate(
    cert({
      issuer: n,
      subject: n,
      key: k,
      signer: k,
      ca: true,
      extensions: [ext('2.5.29.31', false, seq(seq(ctx(0, true, ctx(0, true, uriName('http://ca.test/c.crl')))), seq(ctx(0, true, ctx(0, true, uriName('HTTP://ca.test/d.crl'))))))],
    }),
  );
  const broken = new X509Certificate(cert({ issuer: n, subject: n, key: k, signer: k, ca: true, extensions: [ext('2.5.29.31', false, Buffer.from([0x30, 0x03, 0x02, 0x01, 0x00]))] }));
  const errors: string[] = [];
  assert.deepEqual(distributionPointUrls([a, b, none, two, broken], (_c, e) => errors.push(e.message)), [
    'http://ca.test/a.crl',
    'https://ca.test/b.crl',
    'http://ca.test/c.crl',
    'HTTP://ca.test/d.crl',
  ]);
  assert.equal(errors.length, 1);
});
