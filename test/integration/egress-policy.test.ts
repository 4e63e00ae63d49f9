/**
 * Issue 10, items 1 and 7 (DESIGN.md "Egress policy: a rule reaches only what it names"): a rule
 * binds to the destination that is dialled, the SNI must name a CONNECT host, the destination
 * address policy is checked against the one address that is resolved and dialled, the proxy's own
 * listeners are a forwarding loop; and server_name hygiene (an IP literal is no host name and is
 * never forwarded, names over 253 octets are refused, the SNI is logged once per decision).
 *
 * The peers: a plain TCP service that answers any bytes with a banner (what a workload must never
 * read back through a TLS rule), a TCP capture of the ClientHello a server receives, `openssl
 * s_server`/`s_client`, curl; the front doors: the CONNECT listener, the SNI listener and the
 * ext_proc service behind the Envoy stand-in.
 */
import { describe, test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import net from 'node:net';
import { makeWorld, worldConfig, startProxy, runCmd, type World, type RunningProxy } from '../support/world';
import { startSServer } from '../support/s-server';
import { EnvoyStandIn, startProcessor, type Processor } from '../support/envoy';
import { afterThis } from '../support/cleanup';
import { until } from '../support/until';
import { nodeClientHello } from '../unit/engine/support';
import { parseClientHello } from '../../internal/tls/handshake';
import type { Config, Rule, RuleSettings } from '../../internal/config/types';
import type { Decision } from '../../internal/engine/decision';

const BANNER = 'INTERNAL-SERVICE ready; build 1.2.3; secrets=none\r\n';

let w: World;
beforeAll(() => {
  w = makeWorld();
});
afterAll(() => w.cleanup());

/** A plain TCP service that answers its first bytes with a banner; counts the connections it accepted. */
async function bannerService(host = '127.0.0.1'): Promise<{ port: number; accepted: () => number }> {
  let accepted = 0;
  const server = net.createServer((s) => {
    accepted++;
    s.on('error', () => undefined);
    s.once('data', () => s.end(BANNER));
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  afterThis(() => new Promise<void>((r) => server.close(() => r())));
  return { port: (server.address() as net.AddressInfo).port, accepted: () => accepted };
}

/** A TCP server that records the first TLS record each connection sends (the ClientHello a server would see), then closes. */
async function helloCapture(): Promise<{ port: number; hellos: Buffer[] }> {
  const hellos: Buffer[] = [];
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    let got = Buffer.alloc(0);
    s.on('data', (d) => {
      got = Buffer.concat([got, d]);
      if (got.length >= 5 && got.length >= 5 + got.readUInt16BE(3)) {
        hellos.push(got.subarray(0, 5 + got.readUInt16BE(3)));
        s.destroy();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  afterThis(() => new Promise<void>((r) => server.close(() => r())));
  return { port: (server.address() as net.AddressInfo).port, hellos };
}

/** The server_name of a captured ClientHello record (one record, one message). */
function sniOf(record: Buffer): string | null {
  assert.equal(record[0], 22, 'a handshake record');
  assert.equal(record[5], 1, 'a ClientHello');
  return parseClientHello(record.subarray(9, 9 + record.readUIntBE(6, 3))).sni;
}

/**
 * Connects to a front door (with a CONNECT first when `target` is given), sends `hello` and
 * collects everything that comes back until the proxy closes.
 */
function exchange(port: number, hello: Buffer, target?: string): Promise<{ head: string; body: Buffer }> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    let head = '';
    let headDone = target === undefined;
    const sock = net.connect(port, '127.0.0.1', () => {
      if (target) sock.write(`CONNECT ${target} HTTP/1.1\r\nhost: ${target}\r\n\r\n`);
      else sock.write(hello);
    });
    sock.on('data', (d) => {
      if (headDone) return void got.push(d);
      head += d.toString('latin1');
      const i = head.indexOf('\r\n\r\n');
      if (i < 0) return;
      const rest = Buffer.from(head.slice(i + 4), 'latin1');
      head = head.slice(0, i);
      headDone = true;
      if (rest.length) got.push(rest);
      if (head.startsWith('HTTP/1.1 200')) sock.write(hello);
    });
    sock.on('error', () => undefined);
    sock.on('close', () => resolve({ head, body: Buffer.concat(got) }));
    setTimeout(() => sock.destroy(), 6000).unref();
  });
}

function config(over: { defaults?: Partial<RuleSettings>; rules?: Rule[]; sni?: boolean; strict?: boolean } = {}): Config {
  const cfg = worldConfig(w, { defaults: over.defaults, rules: over.rules, sni: over.sni });
  // `strict`: the default destination policy, as without --dev (no loopback allowance).
  if (over.strict) cfg.destinations = { allow: [], deny: [] };
  return cfg;
}

async function proxy(cfg: Config): Promise<RunningProxy> {
  const p = await startProxy(cfg);
  afterThis(() => p.stop());
  return p;
}

async function processor(cfg: Config): Promise<Processor> {
  const q = await startProcessor(cfg, { closeBackstopMs: 500 });
  afterThis(() => q.stop());
  return q;
}

async function standIn(q: Processor, upstreamPort: number): Promise<EnvoyStandIn> {
  const e = await EnvoyStandIn.start({
    target: q.grpc.address,
    upstream: { host: '127.0.0.1', port: upstreamPort },
    initialMetadata: { 'x-ca-proxy-destination-address': '127.0.0.1', 'x-ca-proxy-destination-port': String(upstreamPort) },
  });
  afterThis(() => e.close());
  return e;
}

const connectPort = (p: RunningProxy) => p.rt.connect!.address.port;
const sniPort = (p: RunningProxy) => p.rt.sni!.address.port;
const hello = (servername: string) => nodeClientHello({ servername });

function denied(d: Decision, reason: string | string[], action?: string): void {
  const reasons = Array.isArray(reason) ? reason : [reason];
  assert.equal(d.outcome, 'deny', JSON.stringify(d));
  assert.ok(reasons.includes(d.reason), `reason ${d.reason}, expected ${reasons.join(' or ')}: ${JSON.stringify(d)}`);
  if (action) assert.equal(d.action, action, JSON.stringify(d));
}

/** What the workload got back must be no banner: at most a TLS alert record. */
function noBanner(body: Buffer): void {
  assert.ok(!body.toString('latin1').includes('INTERNAL-SERVICE'), `the banner reached the workload: ${JSON.stringify(body.toString('latin1'))}`);
  if (body.length) assert.equal(body[0], 21, `only an alert may come back, got ${body.subarray(0, 16).toString('hex')}`);
}

// ───────────────────────────── item 1: the reproduction ─────────────────────────────

describe('the reproduction: deny by default, passthrough for **.corp.example, CONNECT to a loopback TCP service with an SNI of a.corp.example', () => {
  const policy = { defaults: { action: 'deny' as const }, rules: [{ name: 'corp', match: { sni: '**.corp.example' }, action: 'passthrough' as const }] };

  test('default destination policy: no banner comes back, destination_not_allowed, nothing dialled', async () => {
    const svc = await bannerService();
    const p = await proxy(config({ ...policy, strict: true }));
    const out = await exchange(connectPort(p), await hello('a.corp.example'), `127.0.0.1:${svc.port}`);
    const d = await p.nextDecision();
    assert.match(out.head, /^HTTP\/1\.1 200/);
    noBanner(out.body);
    denied(d, ['destination_not_allowed', 'sni_mismatch']);
    assert.equal(d.reason, 'destination_not_allowed', JSON.stringify(d));
    assert.equal(svc.accepted(), 0, 'the service was never dialled');
  });

  test('with loopback allowed: the SNI does not resolve to the dialled address, sni_mismatch, nothing dialled', async () => {
    const svc = await bannerService();
    const p = await proxy(config(policy));
    const out = await exchange(connectPort(p), await hello('a.corp.example'), `127.0.0.1:${svc.port}`);
    const d = await p.nextDecision();
    noBanner(out.body);
    denied(d, 'sni_mismatch', 'passthrough');
    assert.equal(d.rule, 'corp');
    assert.equal(svc.accepted(), 0);
  });

  test('the SNI listener: a.corp.example is what is dialled, and it resolves nowhere', async () => {
    const svc = await bannerService();
    const cfg = config({ ...policy, sni: true });
    cfg.listen.sniUpstreamPort = svc.port;
    const p = await proxy(cfg);
    const out = await exchange(sniPort(p), await hello('a.corp.example'));
    const d = await p.nextDecision();
    noBanner(out.body);
    denied(d, 'upstream_connect_failed');
    assert.equal(svc.accepted(), 0);
  });

  test('behind Envoy (original destination 127.0.0.1:PORT): no banner passes the processor', async () => {
    const svc = await bannerService();
    const q = await processor(config({ ...policy, strict: true }));
    const e = await standIn(q, svc.port);
    const out = await exchange(e.port, await hello('a.corp.example'));
    const d = await q.nextDecision();
    noBanner(out.body);
    denied(d, 'destination_not_allowed');
    e.assertClean();
  });

  test('behind Envoy with loopback allowed: sni_mismatch, the banner the connected service sends is dropped', async () => {
    const svc = await bannerService();
    const q = await processor(config(policy));
    const e = await standIn(q, svc.port);
    const out = await exchange(e.port, await hello('a.corp.example'));
    const d = await q.nextDecision();
    noBanner(out.body);
    denied(d, 'sni_mismatch', 'passthrough');
    e.assertClean();
  });
});

// ───────────────────────────── item 1: the SNI must name the CONNECT host ─────────────────────────────

describe('the SNI must name the CONNECT host, for every action', () => {
  for (const action of ['passthrough', 'inspect', 'intercept'] as const) {
    test(`${action}: CONNECT localhost with an SNI of other.localhost is sni_mismatch, nothing dialled`, async () => {
      const svc = await bannerService();
      const p = await proxy(config({ defaults: { action } }));
      const out = await exchange(connectPort(p), await hello('other.localhost'), `localhost:${svc.port}`);
      const d = await p.nextDecision();
      noBanner(out.body);
      denied(d, 'sni_mismatch');
      assert.equal(d.action, 'none', 'refused before a rule applied');
      assert.match(d.detail ?? '', /does not name the CONNECT host "localhost"/);
      assert.equal(svc.accepted(), 0);
    });
  }

  test('the comparison is case-insensitive and ignores one trailing dot: passthrough reaches the service', async () => {
    const svc = await bannerService();
    const p = await proxy(config({ defaults: { action: 'passthrough' } }));
    const out = await exchange(connectPort(p), await hello('localhost.'), `LocalHost:${svc.port}`);
    const d = await p.nextDecision();
    assert.deepEqual([d.outcome, d.reason], ['allow', 'passthrough'], JSON.stringify(d));
    // The positive control: a passthrough rule that does name the service does relay its banner.
    assert.ok(out.body.toString('latin1').includes('INTERNAL-SERVICE'));
    assert.equal(svc.accepted(), 1);
  });
});

// ───────────────────────────── item 1: the destination address policy ─────────────────────────────

describe('the destination address policy', () => {
  test('without the dev allowance, a name that resolves to loopback is destination_not_allowed (rule applied, nothing dialled)', async () => {
    const svc = await bannerService();
    const p = await proxy(config({ defaults: { action: 'passthrough' }, strict: true }));
    const out = await exchange(connectPort(p), await hello('localhost'), `localhost:${svc.port}`);
    const d = await p.nextDecision();
    noBanner(out.body);
    denied(d, 'destination_not_allowed', 'passthrough');
    assert.equal(d.destination.address, '127.0.0.1');
    assert.match(d.detail ?? '', /not a publicly routable address/);
    assert.equal(svc.accepted(), 0);
  });

  test('curl through the CONNECT listener to a loopback s_server: refused with an access_denied alert', async () => {
    const s = await startSServer({ cert: w.good.certPath, key: w.good.keyPath, chain: w.chainPath, clientCA: w.pki.cas.get('client-ca')!.certPath, version: 'tls1_3', requireClientCert: false });
    afterThis(() => s.stop());
    const p = await proxy(config({ strict: true }));
    const res = await runCmd('curl', ['-sS', '--max-time', '10', '--proxy', p.proxyUrl, '--cacert', w.interceptionCA.certPath, `https://localhost:${s.port}/`]);
    const d = await p.nextDecision();
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /access denied|alert number 49/i, res.stderr);
    denied(d, 'destination_not_allowed', 'intercept');
    assert.doesNotMatch(s.output(), /ClientHello/, 'the server never saw a ClientHello');
  });

  const INTERNAL = ['169.254.169.254', '10.1.2.3', '172.16.0.1', '192.168.1.1', '100.64.0.1', '0.0.0.0', '224.0.0.1', '[::1]', '[fd00::1]', '[fe80::1]', '[::ffff:127.0.0.1]'];
  test(`non-public addresses are refused before any dial: ${INTERNAL.join(', ')}`, async () => {
    const cfg = config({ defaults: { action: 'passthrough' }, strict: true });
    // A dial to an unroutable address would end in upstream_connect_failed after this; the policy answers first.
    cfg.limits.connectTimeoutMs = 3000;
    const p = await proxy(cfg);
    const h = await hello('metadata.example');
    for (const a of INTERNAL) {
      await exchange(connectPort(p), h, `${a}:443`);
      const d = await p.nextDecision();
      // An SNI that names no CONNECT host (the target is an address) is checked by resolution only under passthrough after the policy.
      denied(d, 'destination_not_allowed', 'passthrough');
      assert.equal(d.destination.port, 443);
    }
  });

  test('the SNI listener: a name resolving to loopback is destination_not_allowed; allowed with destinations.allow', async () => {
    const svc = await bannerService();
    for (const strict of [true, false]) {
      const cfg = config({ defaults: { action: 'passthrough' }, sni: true, strict });
      cfg.listen.sniUpstreamPort = svc.port;
      const p = await proxy(cfg);
      const out = await exchange(sniPort(p), await hello('localhost'));
      const d = await p.nextDecision();
      if (strict) {
        noBanner(out.body);
        denied(d, 'destination_not_allowed', 'passthrough');
        assert.equal(svc.accepted(), 0);
      } else {
        assert.deepEqual([d.outcome, d.reason], ['allow', 'passthrough'], JSON.stringify(d));
        assert.ok(out.body.toString('latin1').includes('INTERNAL-SERVICE'));
        assert.equal(svc.accepted(), 1);
      }
    }
  });

  test('behind Envoy: an original destination on loopback is destination_not_allowed; allowed with destinations.allow', async () => {
    for (const strict of [true, false]) {
      const cap = await helloCapture();
      const q = await processor(config({ defaults: { action: 'passthrough' }, strict }));
      const e = await standIn(q, cap.port);
      await exchange(e.port, await hello('localhost'));
      const d = await q.nextDecision();
      if (strict) {
        denied(d, 'destination_not_allowed', 'passthrough');
        assert.equal(cap.hellos.length, 0, 'no byte reached the server');
      } else {
        assert.deepEqual([d.outcome, d.reason], ['allow', 'passthrough'], JSON.stringify(d));
        await until(() => cap.hellos.length === 1, 'the ClientHello at the server');
      }
      e.assertClean();
    }
  });

  test('destinations.deny wins over destinations.allow', async () => {
    const svc = await bannerService('0.0.0.0');
    const cfg = config({ defaults: { action: 'passthrough' } });
    cfg.destinations = { allow: ['127.0.0.0/8'], deny: ['127.0.0.1/32'] };
    const p = await proxy(cfg);
    const h = await hello('x.example');
    await exchange(connectPort(p), h, `127.0.0.1:${svc.port}`);
    const d1 = await p.nextDecision();
    denied(d1, 'destination_not_allowed');
    assert.match(d1.detail ?? '', /destinations\.deny/);
    // 127.0.0.2 is allowed; the SNI must still resolve to it under passthrough (x.example does not).
    await exchange(connectPort(p), h, `127.0.0.2:${svc.port}`);
    const d2 = await p.nextDecision();
    denied(d2, 'sni_mismatch');
    assert.equal(svc.accepted(), 0);
  });

  test('match.cidr: a rule binds to the resolved address, not to the name', async () => {
    const svc = await bannerService();
    const rules: Rule[] = [
      { name: 'private-10', match: { cidr: ['10.0.0.0/8'] }, action: 'passthrough' },
      { name: 'loopback', match: { cidr: ['127.0.0.0/8', '::1/128'] }, action: 'passthrough' },
    ];
    const p = await proxy(config({ defaults: { action: 'deny' }, rules }));
    const out = await exchange(connectPort(p), await hello('localhost'), `localhost:${svc.port}`);
    const d = await p.nextDecision();
    assert.deepEqual([d.outcome, d.reason, d.rule, d.destination.address], ['allow', 'passthrough', 'loopback', '127.0.0.1'], JSON.stringify(d));
    assert.ok(out.body.toString('latin1').includes('INTERNAL-SERVICE'));
    // Without a matching CIDR rule the default applies.
    const q = await proxy(config({ defaults: { action: 'deny' }, rules: [rules[0]!] }));
    const out2 = await exchange(connectPort(q), await hello('localhost'), `localhost:${svc.port}`);
    const d2 = await q.nextDecision();
    noBanner(out2.body);
    assert.deepEqual([d2.outcome, d2.reason, d2.rule], ['deny', 'policy_deny', 'default'], JSON.stringify(d2));
    assert.equal(svc.accepted(), 1);
  });

  for (const door of ['CONNECT', 'SNI'] as const) {
    test(`${door} listener: a name is resolved once and exactly that address is dialled (no second lookup to rebind)`, async () => {
      const svc = await bannerService();
      const cfg = config({ defaults: { action: 'passthrough' }, sni: true });
      cfg.listen.sniUpstreamPort = svc.port;
      const p = await proxy(cfg);
      const lookups: string[] = [];
      const real = p.rt.ctx.resolve;
      // First answer loopback (allowed here), every later one the metadata address (denied).
      p.rt.ctx.resolve = async (host: string) => {
        lookups.push(host);
        return lookups.length === 1 ? ['127.0.0.1'] : ['169.254.169.254'];
      };
      afterThis(() => void (p.rt.ctx.resolve = real));
      const h = await hello('rebind.test');
      const out = door === 'CONNECT' ? await exchange(connectPort(p), h, `rebind.test:${svc.port}`) : await exchange(sniPort(p), h);
      const d = await p.nextDecision();
      assert.deepEqual([d.outcome, d.reason, d.destination.address], ['allow', 'passthrough', '127.0.0.1'], JSON.stringify(d));
      assert.deepEqual(lookups, ['rebind.test'], 'one resolution');
      assert.ok(out.body.toString('latin1').includes('INTERNAL-SERVICE'), 'the address checked is the address dialled');
      assert.equal(svc.accepted(), 1);
    });
  }

  test('behind Envoy: match.cidr binds to the original destination address', async () => {
    const cap = await helloCapture();
    const rules: Rule[] = [{ name: 'loopback', match: { cidr: ['127.0.0.0/8'] }, action: 'passthrough' }];
    const q = await processor(config({ defaults: { action: 'deny' }, rules }));
    const e = await standIn(q, cap.port);
    await exchange(e.port, await hello('localhost'));
    const d = await q.nextDecision();
    assert.deepEqual([d.outcome, d.reason, d.rule, d.destination.address], ['allow', 'passthrough', 'loopback', '127.0.0.1'], JSON.stringify(d));
    await until(() => cap.hellos.length === 1, 'the ClientHello at the server');
    assert.equal(sniOf(cap.hellos[0]!), 'localhost', 'passthrough forwards the ClientHello as it is');
    e.assertClean();
  });
});

// ───────────────────────────── item 1: the proxy's own listeners ─────────────────────────────

describe("the proxy's own listeners are a forwarding loop", () => {
  test('the SNI listener forwarding to its own port, and a CONNECT to the SNI listener by name', async () => {
    const cfg = config({ sni: true, strict: true });
    const free = net.createServer();
    await new Promise<void>((r) => free.listen(0, '127.0.0.1', r));
    const port = (free.address() as net.AddressInfo).port;
    await new Promise<void>((r) => free.close(() => r()));
    cfg.listen.sni = `127.0.0.1:${port}`;
    cfg.listen.sniUpstreamPort = port;
    const p = await proxy(cfg);
    const before = p.rt.sni!.connections();
    await exchange(port, await hello('localhost'));
    const d = await p.nextDecision();
    // Checked before the address policy (which would refuse loopback here too): the loop has its own reason.
    assert.deepEqual([d.outcome, d.reason, d.action, d.rule], ['deny', 'forwarding_loop', 'none', null], JSON.stringify(d));
    await exchange(connectPort(p), await hello('localhost'), `localhost:${port}`);
    const d2 = await p.nextDecision();
    assert.deepEqual([d2.reason, d2.action], ['forwarding_loop', 'none'], JSON.stringify(d2));
    assert.match(d2.detail ?? '', /this proxy's own listener/);
    await until(() => p.rt.sni!.connections() <= before, 'the SNI listener to hold no connection');
  });
});

// ───────────────────────────── item 7: SNI hygiene ─────────────────────────────

describe('server_name hygiene', () => {
  test('openssl s_client -servername 127.0.0.1 through CONNECT (intercept): the IP literal never reaches the server', async () => {
    const cap = await helloCapture();
    const p = await proxy(config());
    await runCmd('openssl', ['s_client', '-proxy', `127.0.0.1:${connectPort(p)}`, '-connect', `localhost:${cap.port}`, '-servername', '127.0.0.1', '-CAfile', w.interceptionCA.certPath], { input: '', ms: 8000 });
    const d = await p.nextDecision();
    await until(() => cap.hellos.length === 1, 'the upstream ClientHello');
    assert.equal(sniOf(cap.hellos[0]!), null, 'treated as absent: no server_name upstream');
    assert.equal(d.destination.sni, '127.0.0.1', 'the decision records what the workload sent');
    assert.equal(d.action, 'intercept');
  });

  for (const action of ['inspect', 'passthrough'] as const) {
    test(`${action} forwards the workload's ClientHello as it is: an IP literal in it is refused (invalid_sni), never forwarded`, async () => {
      const cap = await helloCapture();
      const p = await proxy(config({ defaults: { action } }));
      const out = await exchange(connectPort(p), await hello('127.0.0.1'), `127.0.0.1:${cap.port}`);
      const d = await p.nextDecision();
      denied(d, 'invalid_sni', action);
      assert.equal(out.body[0], 21, 'an alert to the workload');
      assert.equal(cap.hellos.length, 0, 'nothing reached the server');
    });
  }

  test('behind Envoy (intercept): the IP literal is not in the ClientHello the server receives', async () => {
    const cap = await helloCapture();
    const q = await processor(config());
    const e = await standIn(q, cap.port);
    await exchange(e.port, await hello('127.0.0.1'));
    await until(() => cap.hellos.length === 1, 'the upstream ClientHello');
    assert.equal(sniOf(cap.hellos[0]!), null, 'treated as absent: no server_name upstream');
    const d = await q.nextDecision();
    assert.equal(d.action, 'intercept');
  });

  test('the SNI listener: an IP literal is no destination name (missing_sni), nothing dialled', async () => {
    const svc = await bannerService();
    const cfg = config({ sni: true });
    cfg.listen.sniUpstreamPort = svc.port;
    const p = await proxy(cfg);
    const out = await exchange(sniPort(p), await hello('127.0.0.1'));
    const d = await p.nextDecision();
    noBanner(out.body);
    denied(d, 'missing_sni', 'none');
    assert.equal(svc.accepted(), 0);
  });

  test('a server_name over 253 octets is refused (invalid_sni) through both standalone doors and behind Envoy', async () => {
    const long = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(62)}`; // 254 octets
    assert.equal(long.length, 254);
    const h = await hello(long);
    assert.equal(sniOf(h), long, 'the ClientHello carries the long name');
    const svc = await bannerService();
    const cfg = config({ sni: true });
    cfg.listen.sniUpstreamPort = svc.port;
    const p = await proxy(cfg);
    await exchange(connectPort(p), h, `127.0.0.1:${svc.port}`);
    denied(await p.nextDecision(), 'invalid_sni', 'none');
    const out = await exchange(sniPort(p), h);
    denied(await p.nextDecision(), 'invalid_sni', 'none');
    assert.equal(out.body[0], 21, 'an alert to the workload');
    const q = await processor(config());
    const e = await standIn(q, svc.port);
    await exchange(e.port, h);
    denied(await q.nextDecision(), 'invalid_sni', 'none');
    assert.equal(svc.accepted(), 1, 'only the stand-in (tcp_proxy) connected; no byte was forwarded');
  });

  test('the SNI is logged once per decision', async () => {
    const s = await startSServer({ cert: w.good.certPath, key: w.good.keyPath, chain: w.chainPath, clientCA: w.pki.cas.get('client-ca')!.certPath, version: 'tls1_3', requireClientCert: false });
    afterThis(() => s.stop());
    const p = await proxy(config());
    const name = 'log-once.localhost';
    await exchange(connectPort(p), await hello(name), `127.0.0.1:${s.port}`);
    const d = await p.nextDecision();
    await until(() => d.ends !== undefined, 'the connection to close');
    await until(() => p.logs.some((l) => l.includes(d.connectionId)), 'the decision log line');
    const lines = p.logs.filter((l) => l.includes(name));
    assert.equal(lines.length, 1, lines.join('\n'));
    const logged = JSON.parse(lines[0]!) as { msg: string; decision: Decision };
    assert.equal(logged.msg, 'decision');
    assert.equal(logged.decision.destination.sni, name);
    assert.equal(lines[0]!.split('"sni"').length - 1, 1, 'one sni field');
  });
});
