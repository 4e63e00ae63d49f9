/**
 * Intercept mode end to end with independent peers: `openssl s_server -Verify 1
 * -verify_return_error` (TLS 1.2 and TLS 1.3) as the external server, curl and
 * `openssl s_client` as the workload, ca-proxy's HTTP CONNECT listener in between.
 * Acceptance cases a–e of the core issue.
 */
import { describe, test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import { makeWorld, worldConfig, startProxy, curlVia, runCmd, type World, type RunningProxy } from '../support/world';
import { startSServer, type SServer } from '../support/s-server';

const VERSIONS = ['tls1_2', 'tls1_3'] as const;

let w: World;
beforeAll(() => {
  w = makeWorld();
});
afterAll(() => w.cleanup());

async function server(version: (typeof VERSIONS)[number], leaf = w.good, chain = w.chainPath, extra: Partial<Parameters<typeof startSServer>[0]> = {}): Promise<SServer> {
  return startSServer({ cert: leaf.certPath, key: leaf.keyPath, chain, clientCA: w.pki.cas.get('client-ca')!.certPath, version, ...extra });
}

async function metric(p: RunningProxy, name: string): Promise<string> {
  const res = await fetch(`${p.adminUrl}/metrics`);
  return (await res.text())
    .split('\n')
    .filter((l) => l.startsWith(name))
    .join('\n');
}

for (const version of VERSIONS) {
  describe(`intercept over ${version}`, () => {
    let p: RunningProxy;
    beforeAll(async () => {
      p = await startProxy(worldConfig(w));
    });
    afterAll(() => p.stop());

    test('a/c. good server: request succeeds, server sees the proxy identity (workload has no certificate)', async () => {
      const s = await server(version);
      try {
        const res = await curlVia(p, w, s.port);
        assert.equal(res.code, 0, `curl failed: ${res.stderr}`);
        assert.match(res.stdout, /s_server/, 'the s_server -www page reached the workload');
        const out = await s.waitFor(/depth=0/);
        assert.match(out, /depth=0 O = ca-proxy test, CN = proxy-identity/, 'server verified the proxy identity');
        const d = await p.nextDecision();
        assert.equal(d.outcome, 'allow');
        assert.equal(d.reason, 'ok');
        assert.equal(d.action, 'intercept');
        assert.equal(d.tls?.version, version === 'tls1_2' ? 'TLSv1.2' : 'TLSv1.3');
        assert.deepEqual(d.substitution, { requested: true, identity: 'upstream', workloadCertificate: false });
        assert.equal(d.revocation?.status, 'good');
        assert.equal(d.serverCertificate?.sha256, w.good.x509.fingerprint256.replace(/:/g, '').toLowerCase());
      } finally {
        await s.stop();
      }
    });

    test('d. revoked server leaf: certificate_revoked alert, nothing reaches the server, no client certificate sent', async () => {
      const s = await server(version, w.revoked);
      try {
        const res = await curlVia(p, w, s.port);
        assert.notEqual(res.code, 0);
        assert.match(res.stderr, /certificate revoked|alert number 44/i, res.stderr);
        const d = await p.nextDecision();
        assert.equal(d.outcome, 'deny');
        assert.equal(d.reason, 'certificate_revoked');
        assert.equal(d.revocation?.status, 'revoked');
        assert.equal(d.revocation?.reason, 'keyCompromise');
        assert.equal(d.substitution?.identity, null, 'no identity reported as presented to a revoked server');
        assert.equal(d.revocation?.serial, w.revoked.serialHex.toLowerCase().replace(/^0+/, ''));
        const out = await s.waitFor(/certificate_revoked|certificate revoked/i);
        assert.doesNotMatch(out, /GET \//, 'no application byte reached the server');
        assert.doesNotMatch(out, /proxy-identity/, 'the proxy identity was never sent to a revoked server');
        assert.doesNotMatch(out, /depth=0/, 'the server received no client certificate');
        assert.match(await metric(p, 'ca_proxy_connections_total'), /action="intercept",outcome="deny",reason="certificate_revoked"} [1-9]/);
        assert.match(await metric(p, 'ca_proxy_revocation_checks_total'), /result="revoked"} [1-9]/);
      } finally {
        await s.stop();
      }
    });

    test('d. revoked intermediate: certificate_revoked with the root CRL\'s reason', async () => {
      const s = await server(version, w.underRevokedCa, w.chainBPath);
      try {
        const res = await curlVia(p, w, s.port);
        assert.notEqual(res.code, 0);
        assert.match(res.stderr, /certificate revoked|alert number 44/i, res.stderr);
        const d = await p.nextDecision();
        assert.equal(d.reason, 'certificate_revoked');
        assert.equal(d.revocation?.reason, 'cACompromise');
        const out = await s.waitFor(/certificate_revoked|certificate revoked/i);
        assert.doesNotMatch(out, /depth=0|GET \//);
      } finally {
        await s.stop();
      }
    });

    test('openssl s_client as the workload sees the certificate_revoked alert', async () => {
      const s = await server(version, w.revoked);
      try {
        const res = await runCmd('openssl', ['s_client', '-proxy', p.proxyUrl.replace('http://', ''), '-connect', `localhost:${s.port}`, '-servername', 'localhost', '-CAfile', w.interceptionCA.certPath], { input: '' });
        assert.match(res.stdout + res.stderr, /alert certificate revoked|alert number 44/i);
        assert.equal((await p.nextDecision()).reason, 'certificate_revoked');
      } finally {
        await s.stop();
      }
    });
  });
}

describe('workload authentication and identities', () => {
  test('b. workload certificate under clientAuth require: authenticated, never forwarded', async () => {
    const p = await startProxy(worldConfig(w, { defaults: { clientAuth: 'require' } }));
    const s = await server('tls1_3');
    try {
      const res = await curlVia(p, w, s.port, ['--cert', w.workload.certPath, '--key', w.workload.keyPath]);
      assert.equal(res.code, 0, res.stderr);
      const d = await p.nextDecision();
      assert.equal(d.outcome, 'allow');
      assert.equal(d.workload?.authenticated, true);
      assert.equal(d.workload?.certificateSha256, w.workload.x509.fingerprint256.replace(/:/g, '').toLowerCase());
      assert.equal(d.substitution?.workloadCertificate, true);
      assert.equal(d.substitution?.identity, 'upstream');
      const out = s.output();
      assert.match(out, /CN = proxy-identity/);
      assert.doesNotMatch(out, /workload|secret-workload/i, 'the workload identity never reaches the server');
      assert.doesNotMatch(p.logs.join('\n'), /secret-workload|CN=workload|CN = workload/, 'the workload subject appears nowhere in the proxy output');
      assert.doesNotMatch(JSON.stringify(d), /secret-workload|CN=workload/);

      const noCert = await curlVia(p, w, s.port);
      assert.notEqual(noCert.code, 0, 'a workload without a certificate is refused under require');
      const d2 = await p.nextDecision();
      assert.equal(d2.outcome, 'deny');
      assert.equal(d2.reason, 'workload_certificate_missing');
    } finally {
      await s.stop();
      await p.stop();
    }
  });

  for (const version of VERSIONS) {
    test(`e. no identity towards a server that requires one (${version}): denied, reason says so`, async () => {
      const p = await startProxy(worldConfig(w, { rules: [{ name: 'no-id', match: { sni: 'localhost' }, identity: null }] }));
      const s = await server(version);
      try {
        const res = await curlVia(p, w, s.port);
        assert.notEqual(res.code, 0);
        const d = await p.nextDecision();
        assert.equal(d.outcome, 'deny');
        assert.equal(d.reason, 'client_certificate_required');
        assert.equal(d.rule, 'no-id');
        assert.match(d.detail ?? '', /names no proxy identity/);
        assert.doesNotMatch(s.output(), /GET \//);
      } finally {
        await s.stop();
        await p.stop();
      }
    });
  }

  test('a server that asks for no client certificate gets none; substitution.requested is false', async () => {
    const p = await startProxy(worldConfig(w));
    const s = await server('tls1_3', w.good, w.chainPath, { requireClientCert: false });
    try {
      const res = await curlVia(p, w, s.port);
      assert.equal(res.code, 0, res.stderr);
      const d = await p.nextDecision();
      assert.equal(d.outcome, 'allow');
      assert.deepEqual(d.substitution, { requested: false, identity: null, workloadCertificate: false });
    } finally {
      await s.stop();
      await p.stop();
    }
  });
});
