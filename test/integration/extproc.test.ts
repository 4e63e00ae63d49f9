/**
 * ca-proxy behind Envoy's network ext_proc filter, end to end: curl and `openssl s_client` as the
 * workload → the Envoy stand-in (test/support/envoy.ts) → ca-proxy's gRPC service → the stand-in's
 * upstream connection → `openssl s_server -Verify 1` as the external server.
 * Acceptance cases a, c, d, e of the core issue through the gRPC path, with the decision in the
 * `ca_proxy` dynamic metadata, and the stand-in checking Envoy's lockstep rules on every response.
 */
import { describe, test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import { makeWorld, worldConfig, runCmd, type World } from '../support/world';
import { startSServer, type SServer } from '../support/s-server';
import { EnvoyStandIn, startProcessor, type StandInOptions, type Processor } from '../support/envoy';

let w: World;
beforeAll(() => {
  w = makeWorld();
});
afterAll(() => w.cleanup());

async function server(version: 'tls1_2' | 'tls1_3', leaf = w.good, chain = w.chainPath, extra: Partial<Parameters<typeof startSServer>[0]> = {}): Promise<SServer> {
  return startSServer({ cert: leaf.certPath, key: leaf.keyPath, chain, clientCA: w.pki.cas.get('client-ca')!.certPath, version, ...extra });
}

async function standIn(p: Processor, s: SServer, extra: Partial<StandInOptions> = {}): Promise<EnvoyStandIn> {
  return EnvoyStandIn.start({ target: p.grpc.address, upstream: { host: '127.0.0.1', port: s.port }, ...extra });
}

function curl(e: EnvoyStandIn, extra: string[] = []) {
  // The workload dials "localhost:443"; --connect-to stands in for the iptables redirect to the sidecar.
  return runCmd('curl', ['-sS', '--max-time', '10', '--connect-to', `localhost:443:127.0.0.1:${e.port}`, '--cacert', w.interceptionCA.certPath, ...extra, 'https://localhost/']);
}

for (const version of ['tls1_3', 'tls1_2'] as const) {
  describe(`intercept through the ext_proc gRPC path over ${version}`, () => {
    let p: Processor;
    beforeAll(async () => {
      const config = worldConfig(w);
      p = await startProcessor(config, { closeBackstopMs: 500 });
    });
    afterAll(() => p.stop());

    test('a/c. good server: the request succeeds, the server sees the proxy identity, metadata carries the decision', async () => {
      const s = await server(version);
      const e = await standIn(p, s);
      try {
        const res = await curl(e);
        const d = await p.nextDecision();
        assert.equal(res.code, 0, `curl failed: ${res.stderr}`);
        assert.match(res.stdout, /s_server/);
        assert.match(await s.waitFor(/depth=0/), /CN = proxy-identity/);
        assert.equal(d.outcome, 'allow');
        assert.equal(d.action, 'intercept');
        assert.deepEqual(d.substitution, { requested: true, identity: 'upstream', workloadCertificate: false });
        await e.connections[0]!.done;
        const md = e.connections[0]!.metadata.ca_proxy!;
        assert.equal(md.outcome, 'allow');
        assert.equal(md.reason, 'ok');
        assert.equal(md.connection_id, d.connectionId);
        assert.equal(md.tls_version, version === 'tls1_2' ? 'TLSv1.2' : 'TLSv1.3');
        assert.equal(md.identity, 'upstream');
        assert.equal(e.connections[0]!.failure, null);
        e.assertClean();
      } finally {
        await e.close();
        await s.stop();
      }
    });

    test('d. revoked server: certificate_revoked alert reaches curl, nothing reaches the server, CLOSE follows', async () => {
      const s = await server(version, w.revoked);
      const e = await standIn(p, s);
      try {
        const res = await curl(e);
        assert.notEqual(res.code, 0);
        assert.match(res.stderr, /certificate revoked|alert number 44/i, res.stderr);
        const d = await p.nextDecision();
        assert.equal(d.reason, 'certificate_revoked');
        const out = await s.waitFor(/certificate_revoked|certificate revoked/i);
        assert.doesNotMatch(out, /depth=0|GET \//, 'no client certificate and no request reached the revoked server');
        await e.connections[0]!.done;
        assert.equal(e.connections[0]!.metadata.ca_proxy?.reason, 'certificate_revoked');
        assert.equal(e.connections[0]!.metadata.ca_proxy?.revocation, 'revoked');
        assert.notEqual(e.connections[0]!.closedBy, 'failure', `closed by ${e.connections[0]!.closedBy}: ${e.connections[0]!.failure}`);
        e.assertClean();
      } finally {
        await e.close();
        await s.stop();
      }
    });

    test('d. openssl s_client as the workload sees the certificate_revoked alert', async () => {
      const s = await server(version, w.revoked);
      const e = await standIn(p, s);
      try {
        const res = await runCmd('openssl', ['s_client', '-connect', `127.0.0.1:${e.port}`, '-servername', 'localhost', '-CAfile', w.interceptionCA.certPath], { input: '' });
        assert.match(res.stdout + res.stderr, /alert certificate revoked|alert number 44/i);
        assert.equal((await p.nextDecision()).reason, 'certificate_revoked');
        e.assertClean();
      } finally {
        await e.close();
        await s.stop();
      }
    });
  });
}

describe('ext_proc: no proxy identity towards a server that requires one', () => {
  for (const version of ['tls1_3', 'tls1_2'] as const) {
    test(`e. ${version}: denied with client_certificate_required, in the metadata too`, async () => {
      const p = await startProcessor(worldConfig(w, { rules: [{ name: 'no-id', match: { sni: 'localhost' }, identity: null }] }));
      const s = await server(version);
      const e = await standIn(p, s);
      try {
        const res = await curl(e);
        assert.notEqual(res.code, 0);
        const d = await p.nextDecision();
        assert.equal(d.reason, 'client_certificate_required');
        assert.equal(d.rule, 'no-id');
        await e.connections[0]!.done;
        assert.equal(e.connections[0]!.metadata.ca_proxy?.reason, 'client_certificate_required');
        assert.doesNotMatch(s.output(), /GET \//);
        e.assertClean();
      } finally {
        await e.close();
        await s.stop();
        await p.stop();
      }
    });
  }
});

describe('inspect through the ext_proc gRPC path', () => {
  let p: Processor;
  beforeAll(async () => {
    p = await startProcessor(worldConfig(w, { defaults: { action: 'inspect', tls13: 'deny' } }));
  });
  afterAll(() => p.stop());

  const curlDirect = (e: EnvoyStandIn) =>
    runCmd('curl', ['-sS', '--max-time', '10', '--tlsv1.2', '--tls-max', '1.2', '--connect-to', `localhost:443:127.0.0.1:${e.port}`, '--cacert', w.pki.root.certPath, 'https://localhost/']);

  test('TLS 1.2 good server: bytes pass unchanged (the workload sees the server\'s own chain), allow in the metadata', async () => {
    const s = await server('tls1_2', w.good, w.chainPath, { requireClientCert: false });
    const e = await standIn(p, s);
    try {
      const res = await curlDirect(e);
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, /s_server/);
      const d = await p.nextDecision();
      assert.equal(d.outcome, 'allow');
      assert.equal(d.action, 'inspect');
      await e.connections[0]!.done;
      assert.equal(e.connections[0]!.metadata.ca_proxy?.action, 'inspect');
      assert.equal(e.connections[0]!.metadata.ca_proxy?.revocation, 'good');
      e.assertClean();
    } finally {
      await e.close();
      await s.stop();
    }
  });

  test('TLS 1.2 revoked server: certificate_revoked alert to the workload, denied in the metadata', async () => {
    const s = await server('tls1_2', w.revoked, w.chainPath, { requireClientCert: false });
    const e = await standIn(p, s);
    try {
      const res = await curlDirect(e);
      assert.notEqual(res.code, 0);
      assert.match(res.stderr, /certificate revoked|alert number 44/i, res.stderr);
      const d = await p.nextDecision();
      assert.equal(d.reason, 'certificate_revoked');
      await e.connections[0]!.done;
      assert.equal(e.connections[0]!.metadata.ca_proxy?.reason, 'certificate_revoked');
      e.assertClean();
    } finally {
      await e.close();
      await s.stop();
    }
  });

  test('TLS 1.3 under tls13: deny: tls13_not_inspectable', async () => {
    const s = await server('tls1_3', w.good, w.chainPath, { requireClientCert: false });
    const e = await standIn(p, s);
    try {
      const res = await runCmd('curl', ['-sS', '--max-time', '10', '--connect-to', `localhost:443:127.0.0.1:${e.port}`, '--cacert', w.pki.root.certPath, 'https://localhost/']);
      assert.notEqual(res.code, 0);
      const d = await p.nextDecision();
      assert.equal(d.reason, 'tls13_not_inspectable');
      await e.connections[0]!.done;
      assert.equal(e.connections[0]!.metadata.ca_proxy?.reason, 'tls13_not_inspectable');
      e.assertClean();
    } finally {
      await e.close();
      await s.stop();
    }
  });
});
