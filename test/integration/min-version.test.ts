/**
 * Issue 10 item 6 with real peers: `minVersion` (default TLSv1.2, per rule) for both intercept and
 * inspect, inspect's refusal of NULL and anonymous suites whatever the chain
 * (`insufficient_security`), and a server that presents no certificate (`server_certificate_missing`).
 * OpenSSL 3 still speaks TLS 1.0/1.1, NULL and anonymous suites at security level 0, so
 * `openssl s_server` and `s_client` are both ends; export and RC4 suites it no longer has are
 * covered with hand-built ServerHellos in test/unit/engine/inspect.test.ts.
 */
import { describe, test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import { makeWorld, worldConfig, startProxy, runCmd, type World, type RunningProxy } from '../support/world';
import { startSServer, type SServerOptions } from '../support/s-server';
import { afterThis } from '../support/cleanup';
import type { Action, MinTlsVersion } from '../../internal/config/types';

let w: World;
beforeAll(() => {
  w = makeWorld();
});
afterAll(() => w.cleanup());

async function server(version: SServerOptions['version'], args: string[] = [], extra: Partial<SServerOptions> = {}) {
  const s = await startSServer({
    cert: w.good.certPath,
    key: w.good.keyPath,
    chain: w.chainPath,
    clientCA: w.pki.cas.get('client-ca')!.certPath,
    version,
    requireClientCert: false,
    args,
    ...extra,
  });
  afterThis(() => s.stop());
  return s;
}

async function proxy(action: Action, minVersion?: MinTlsVersion): Promise<RunningProxy> {
  const rules = minVersion ? [{ name: 'floor', match: { sni: 'localhost' }, minVersion }] : [];
  const p = await startProxy(worldConfig(w, { defaults: { action }, rules }));
  afterThis(() => p.stop());
  return p;
}

/** `openssl s_client` through the CONNECT listener, trusting what the action shows the workload. */
function sClient(p: RunningProxy, action: Action, port: number, args: string[]) {
  const ca = action === 'inspect' ? w.pki.root.certPath : w.interceptionCA.certPath;
  return runCmd('openssl', ['s_client', '-proxy', new URL(p.proxyUrl).host, '-connect', `localhost:${port}`, '-servername', 'localhost', '-CAfile', ca, ...args], { input: '' });
}

const OLD = ['-cipher', 'DEFAULT@SECLEVEL=0'];

describe('minVersion (default TLSv1.2)', () => {
  for (const action of ['intercept', 'inspect'] as const) {
    for (const version of ['tls1', 'tls1_1'] as const) {
      test(`${action}: a ${version} server under the default floor is denied protocol_version`, async () => {
        const s = await server(version, OLD);
        const p = await proxy(action);
        // The workload offers the old version too: for inspect it is the workload's ClientHello the server answers.
        const res = await sClient(p, action, s.port, [`-${version}`, ...OLD]);
        assert.match(res.stdout + res.stderr, /alert protocol version/, res.stdout + res.stderr);
        const d = await p.nextDecision();
        assert.equal(d.action, action);
        assert.equal(d.outcome, 'deny');
        assert.equal(d.reason, 'protocol_version');
        assert.match(d.detail ?? '', /TLSv1\.2/, 'the detail names the floor');
        assert.doesNotMatch(s.output(), /GET \//);
      });
    }

    test(`${action}: a rule with minVersion TLSv1.3 denies a TLS 1.2-only server`, async () => {
      const s = await server('tls1_2');
      const p = await proxy(action, 'TLSv1.3');
      const ca = action === 'inspect' ? w.pki.root.certPath : w.interceptionCA.certPath;
      const res = await runCmd('curl', ['-sS', '--max-time', '10', '--proxy', p.proxyUrl, '--cacert', ca, `https://localhost:${s.port}/`]);
      assert.notEqual(res.code, 0);
      assert.match(res.stderr, /alert protocol version/, res.stderr);
      const d = await p.nextDecision();
      assert.equal(d.reason, 'protocol_version');
      assert.equal(d.rule, 'floor');
      assert.match(d.detail ?? '', /TLSv1\.3/);
    });

    test(`${action}: the same server passes under the default floor (the test's peers work)`, async () => {
      const s = await server('tls1_2');
      const p = await proxy(action);
      const res = await sClient(p, action, s.port, []);
      assert.match(res.stdout, /Verify return code: 0/, res.stdout + res.stderr);
      assert.equal((await p.nextDecision()).outcome, 'allow');
    });
  }
});

describe('inspect refuses suites that do not protect the connection, whatever the chain', () => {
  test('a NULL (unencrypted) suite over TLS 1.2: insufficient_security to both peers', async () => {
    const s = await server('tls1_2', ['-cipher', 'eNULL:@SECLEVEL=0']);
    const p = await proxy('inspect');
    const res = await sClient(p, 'inspect', s.port, ['-tls1_2', '-cipher', 'eNULL:@SECLEVEL=0']);
    assert.match(res.stdout + res.stderr, /alert insufficient security/, res.stdout + res.stderr);
    const d = await p.nextDecision();
    assert.equal(d.reason, 'insufficient_security');
    assert.match(d.detail ?? '', /NULL/);
    assert.equal(d.serverCertificate, undefined, 'refused at the ServerHello, before the chain');
    await s.waitFor(/insufficient security/i);
  });

  test('an anonymous suite (no Certificate) over TLS 1.2: insufficient_security at its ServerHello', async () => {
    const s = await server('tls1_2', ['-cipher', 'aNULL:@SECLEVEL=0'], { noCert: true });
    const p = await proxy('inspect');
    const res = await sClient(p, 'inspect', s.port, ['-tls1_2', '-cipher', 'aNULL:@SECLEVEL=0']);
    assert.match(res.stdout + res.stderr, /alert insufficient security/, res.stdout + res.stderr);
    const d = await p.nextDecision();
    assert.equal(d.reason, 'insufficient_security');
    assert.match(d.detail ?? '', /anonymous/);
  });
});

describe('a server that presents no certificate', () => {
  // A PSK suite (RFC 4279) authenticates with a shared key, not a certificate, and is not on the refused list.
  const PSK = ['-psk', '0102030405060708090a0b0c0d0e0f10', '-cipher', 'PSK-AES128-GCM-SHA256:@SECLEVEL=0'];

  test('inspect: a TLS 1.2 PSK server ends its flight without a Certificate: server_certificate_missing', async () => {
    const s = await server('tls1_2', PSK, { noCert: true });
    const p = await proxy('inspect');
    const res = await sClient(p, 'inspect', s.port, ['-tls1_2', ...PSK]);
    assert.match(res.stdout + res.stderr, /alert handshake failure/, res.stdout + res.stderr);
    const d = await p.nextDecision();
    assert.equal(d.outcome, 'deny');
    assert.equal(d.reason, 'server_certificate_missing');
    assert.match(d.detail ?? '', /without a Certificate/);
  });

  test('intercept: a server with only anonymous suites cannot be reached, and the decision says why', async () => {
    const s = await server('tls1_2', ['-cipher', 'aNULL:@SECLEVEL=0'], { noCert: true });
    const p = await proxy('intercept');
    const res = await sClient(p, 'intercept', s.port, []);
    assert.match(res.stdout + res.stderr, /alert/, res.stdout + res.stderr);
    const d = await p.nextDecision();
    assert.equal(d.outcome, 'deny');
    assert.equal(d.reason, 'upstream_handshake_failed');
    // The proxy's own ClientHello never offers an anonymous suite: the server refuses it.
    assert.match(d.detail ?? '', /handshake failure/);
  });
});
