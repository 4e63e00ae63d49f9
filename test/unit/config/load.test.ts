import { describe, test } from '@jest/globals';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig, parseConfig, parseHostPort, validateConfig } from '../../../internal/config/load';
import { defaultConfig, devConfig, DEV_PKI_FILES } from '../../../internal/config/defaults';
import { repoRoot } from '../../support/root';

const BASE = '/etc/ca-proxy';
const MINIMAL = 'interceptionCA: {cert: ca.crt, key: ca.key}\n';

/** Parses and expects a ConfigError; returns its message lines. */
function problemsOf(text: string): string[] {
  try {
    parseConfig(text, BASE, 'config.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.source, 'config.yaml');
    assert.equal(err.problems.length, err.message.split('\n').length);
    return err.message.split('\n');
  }
  assert.fail('expected the configuration to be rejected');
}

function assertProblem(lines: string[], pattern: RegExp): void {
  assert.ok(lines.some((l) => pattern.test(l)), `no problem matching ${pattern} in:\n${lines.join('\n')}`);
}

describe('parseConfig: valid configurations', () => {
  test('a minimal file gets every default, paths resolved against the base folder', () => {
    const c = parseConfig(MINIMAL, BASE, 'config.yaml');
    const d = defaultConfig();
    assert.deepEqual(c, { ...d, interceptionCA: { cert: '/etc/ca-proxy/ca.crt', key: '/etc/ca-proxy/ca.key' } });
    assert.equal(c.listen.connect, '127.0.0.1:3128');
    assert.equal(c.listen.sni, null);
    assert.equal(c.listen.sniUpstreamPort, 443);
    assert.equal(c.admin, '127.0.0.1:9090');
    assert.deepEqual(c.leaf, { validityHours: 24, cacheSize: 1000 });
    assert.deepEqual(c.revocation, { crlPaths: [], crlSigners: [], clockSkewSeconds: 300, watch: true });
    assert.deepEqual(c.limits, { maxHandshakeMessageBytes: 262144, handshakeTimeoutMs: 10000, connectTimeoutMs: 5000, maxBufferedBytes: 524288, maxConnections: 10000, maxConnectionsPerSource: 512, requestTimeoutMs: 5000, shutdownGraceMs: 10000 });
    assert.deepEqual(c.destinations, { allow: [], deny: [] });
    assert.deepEqual(c.defaults, { action: 'intercept', identity: null, revocation: 'hardFail', clientAuth: 'none', leafOnly: false, tls13: 'deny', minVersion: 'TLSv1.2' });
    assert.deepEqual(c.rules, []);
    assert.equal(c.log.level, 'info');
    assert.equal(c.trust.systemRoots, false);
  });

  test('a full file: nested objects merge field by field, lists replace, every path is resolved', () => {
    const text = `
listen: {sni: "0.0.0.0:8443"}
admin: null
interceptionCA: {cert: pki/ca.crt, key: /abs/ca.key}
trust: {caFiles: [roots.pem, ../shared/more.pem]}
revocation: {crlPaths: [crls/], crlSigners: [int.pem], watch: false}
identities:
  - {name: default, cert: id.crt, key: id.key}
  - {name: p12, pfx: id.p12, passphraseEnv: ID_PASS}
workloadCA: [workload.pem]
defaults: {identity: default, clientAuth: optional}
rules:
  - name: bank
    match: {sni: "**.bank.example"}
    identity: p12
    revocation: softFail
  - match: {port: 25}
    action: deny
log: {level: debug}
`;
    const c = parseConfig(text, BASE, 'config.yaml');
    assert.deepEqual(c.listen, { connect: '127.0.0.1:3128', sni: '0.0.0.0:8443', sniUpstreamPort: 443 });
    assert.equal(c.admin, null);
    assert.deepEqual(c.interceptionCA, { cert: '/etc/ca-proxy/pki/ca.crt', key: '/abs/ca.key' });
    assert.deepEqual(c.trust, { caFiles: ['/etc/ca-proxy/roots.pem', '/etc/shared/more.pem'], systemRoots: false });
    assert.deepEqual(c.revocation, {
      crlPaths: ['/etc/ca-proxy/crls'],
      crlSigners: ['/etc/ca-proxy/int.pem'],
      clockSkewSeconds: 300,
      watch: false,
    });
    assert.deepEqual(c.identities, [
      { name: 'default', cert: '/etc/ca-proxy/id.crt', key: '/etc/ca-proxy/id.key' },
      { name: 'p12', pfx: '/etc/ca-proxy/id.p12', passphraseEnv: 'ID_PASS' },
    ]);
    assert.deepEqual(c.workloadCA, ['/etc/ca-proxy/workload.pem']);
    assert.deepEqual(c.defaults, { action: 'intercept', identity: 'default', revocation: 'hardFail', clientAuth: 'optional', leafOnly: false, tls13: 'deny', minVersion: 'TLSv1.2' });
    // Rules keep only what they set: the policy merges them over defaults at match time.
    assert.deepEqual(c.rules[0], { name: 'bank', match: { sni: '**.bank.example' }, identity: 'p12', revocation: 'softFail' });
    assert.deepEqual(c.rules[1], { match: { port: 25 }, action: 'deny' });
    assert.equal(c.log.level, 'debug');
  });

  test('JSON is accepted (YAML 1.2 is a superset), and a byte-order mark is ignored', () => {
    const c = parseConfig('\uFEFF{"interceptionCA": {"cert": "a", "key": "b"}, "admin": "[::1]:0"}', BASE, 'c.json');
    assert.equal(c.admin, '[::1]:0');
  });

  test('loadConfig resolves relative paths against the file folder, not the working directory', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-config-'));
    try {
      fs.mkdirSync(path.join(dir, 'etc'));
      const file = path.join(dir, 'etc', 'config.yaml');
      fs.writeFileSync(file, `${MINIMAL}trust: {caFiles: [../pki/roots.pem]}\n`);
      const c = loadConfig(file);
      assert.equal(c.interceptionCA.cert, path.join(dir, 'etc', 'ca.crt'));
      assert.deepEqual(c.trust.caFiles, [path.join(dir, 'pki', 'roots.pem')]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('host:port forms: names, IPv4, bracketed IPv6, port 0', () => {
    for (const addr of ['localhost:1', '127.0.0.1:65535', '[::1]:9090', '[fe80::1%eth0]:80', 'proxy.local:0']) {
      const c = parseConfig(`${MINIMAL}admin: "${addr}"\n`, BASE, 'config.yaml');
      assert.equal(c.admin, addr);
    }
  });

  test('the example in docs/configuration.md is a valid configuration', () => {
    const doc = fs.readFileSync(path.join(repoRoot(), 'docs', 'configuration.md'), 'utf8');
    const blocks = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]);
    assert.ok(blocks.length > 0, 'docs/configuration.md has no yaml block');
    const complete = blocks.find((b) => b.includes('interceptionCA:'));
    assert.ok(complete !== undefined, 'no complete example (with interceptionCA) in docs/configuration.md');
    const c = parseConfig(complete, BASE, 'docs/configuration.md');
    assert.ok(c.rules.length > 0);
  });
});

describe('parseConfig: every problem, with its field path', () => {
  test('bad enum: names the path, the allowed values and the line', () => {
    const lines = problemsOf(`${MINIMAL}rules:
  - match: {sni: a.example}
  - match: {sni: b.example}
  - match: {port: 8443}
    action: allow
`);
    assert.deepEqual(lines, ['config.yaml:6:13: rules[2].action: must be one of intercept, inspect, passthrough, deny (got "allow")']);
  });

  test('unknown field: reported at the key, with a suggestion', () => {
    const lines = problemsOf(`${MINIMAL}limits:\n  handshakeTimoutMs: 5\n`);
    assert.equal(lines.length, 1);
    assert.match(lines[0], /^config\.yaml:3:3: limits\.handshakeTimoutMs: unknown field \(did you mean "handshakeTimeoutMs"\?/);
  });

  test('unknown top-level field, including __proto__, without touching Object.prototype', () => {
    const lines = problemsOf(`${MINIMAL}__proto__: {polluted: true}\nlisten_port: 1\n`);
    assertProblem(lines, /^config\.yaml:2:1: __proto__: unknown field/);
    assertProblem(lines, /^config\.yaml:3:1: listen_port: unknown field/);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  test('wrong type: says what was expected and what was found', () => {
    const lines = problemsOf(`${MINIMAL}leaf: {validityHours: "24"}\nrevocation: {watch: yes}\ntrust: {caFiles: roots.pem}\nlisten: 3128\n`);
    assertProblem(lines, /^config\.yaml:2:23: leaf\.validityHours: must be an integer \(got "24"\)$/);
    // YAML 1.2: `yes` is a string, not a boolean.
    assertProblem(lines, /^config\.yaml:3:21: revocation\.watch: must be true or false \(got "yes"\)$/);
    assertProblem(lines, /^config\.yaml:4:18: trust\.caFiles: must be a list \(got "roots\.pem"\)$/);
    assertProblem(lines, /^config\.yaml:5:9: listen: must be a mapping \(got 3128\)$/);
    assert.equal(lines.length, 4);
  });

  test('numbers out of range', () => {
    const lines = problemsOf(`${MINIMAL}limits: {maxHandshakeMessageBytes: 100000000, connectTimeoutMs: 0}\nleaf: {cacheSize: 1.5}\n`);
    assertProblem(lines, /limits\.maxHandshakeMessageBytes: must be at most 16777215/);
    assertProblem(lines, /limits\.connectTimeoutMs: must be at least 1/);
    assertProblem(lines, /leaf\.cacheSize: must be an integer \(got 1\.5\)/);
  });

  test('host:port strings are pattern-checked', () => {
    for (const bad of ['3128', 'localhost', 'localhost:65536', ':80', 'a b:80', 'http://x:80']) {
      const lines = problemsOf(`${MINIMAL}listen: {connect: "${bad}"}\n`);
      assertProblem(lines, /listen\.connect: must be host:port, e\.g\. 127\.0\.0\.1:3128/);
    }
  });

  test('a rule must match on sni or port, and the sni must be a label glob', () => {
    const lines = problemsOf(`${MINIMAL}rules:\n  - match: {}\n  - match: {sni: "api*.example.com"}\n  - {action: deny}\n`);
    assertProblem(lines, /^config\.yaml:3:12: rules\[0\]\.match: must set at least one of sni, port, cidr$/);
    assertProblem(lines, /^config\.yaml:4:18: rules\[1\]\.match\.sni: must be a host name glob/);
    assertProblem(lines, /^config\.yaml:5:5: rules\[2\]\.match: is required$/);
  });

  test('a rule or the defaults naming a missing identity', () => {
    const lines = problemsOf(`${MINIMAL}identities: [{name: corp, cert: c.crt, key: c.key}]
defaults: {identity: nope}
rules:
  - match: {port: 443}
    identity: corp
  - match: {port: 8443}
    identity: missing
`);
    assert.deepEqual(lines, [
      'config.yaml:3:22: defaults.identity: no identity named "nope" (identities: corp)',
      'config.yaml:8:15: rules[1].identity: no identity named "missing" (identities: corp)',
    ]);
  });

  test('identities: cert+key or pfx, not both, not half; names unique', () => {
    const lines = problemsOf(`${MINIMAL}identities:
  - {name: a, cert: a.crt}
  - {name: b, pfx: b.p12, key: b.key}
  - {name: c}
  - {name: a, cert: a2.crt, key: a2.key}
  - {name: "bad name", pfx: x.p12}
`);
    assertProblem(lines, /^config\.yaml:3:5: identities\[0\]\.key: is required with cert$/);
    assertProblem(lines, /^config\.yaml:4:5: identities\[1\]: set either cert and key, or pfx, not both$/);
    assertProblem(lines, /^config\.yaml:5:5: identities\[2\]: needs cert and key, or pfx$/);
    assertProblem(lines, /^config\.yaml:6:12: identities\[3\]\.name: duplicate identity name "a" \(first at identities\[0\]\)$/);
    assertProblem(lines, /identities\[4\]\.name: must be a name of letters/);
    assert.equal(lines.length, 5);
  });

  test('at least one listener; no two listeners on one address', () => {
    assertProblem(problemsOf(`${MINIMAL}listen: {connect: null}\n`), /listen: at least one of connect, sni must be set/);
    assertProblem(problemsOf(`${MINIMAL}listen: {sni: "127.0.0.1:3128"}\n`), /listen\.sni: same address as listen\.connect/);
  });

  test('clientAuth optional/require needs a workload CA; "default" is not a rule name', () => {
    const lines = problemsOf(`${MINIMAL}rules:\n  - {name: default, match: {port: 1}, clientAuth: require}\n`);
    assertProblem(lines, /rules\[0\]\.clientAuth: "require" needs at least one workloadCA file/);
    assertProblem(lines, /rules\[0\]\.name: "default" is reserved/);
  });

  test('all problems are listed at once, in file order, defaulted ones last', () => {
    const lines = problemsOf(`log: {level: loud}\nrules:\n  - {match: {port: 70000}, identity: ghost}\n`);
    assert.deepEqual(lines, [
      'config.yaml:1:14: log.level: must be one of trace, debug, info, warn, error, fatal, silent (got "loud")',
      'config.yaml:3:20: rules[0].match.port: must be at most 65535 (got 70000)',
      'config.yaml:3:38: rules[0].identity: no identity named "ghost" (no identities are configured)',
      'config.yaml: interceptionCA: is required',
    ]);
  });

  test('invalid YAML: reported with line and column', () => {
    const lines = problemsOf('interceptionCA:\n  cert: a\n  key: [b\nrules: []\n');
    assert.equal(lines.length, 1);
    assert.match(lines[0], /^config\.yaml:4:1: invalid YAML: /);
    assert.match(problemsOf('a: 1\na: 2\n')[0], /^config\.yaml:2:1: invalid YAML: Map keys must be unique$/);
    assert.match(problemsOf('a:\n\tb: 1\n')[0], /^config\.yaml:2:1: invalid YAML: Tabs are not allowed/);
  });

  test('unresolvable alias and alias bombs are errors, not crashes', () => {
    assert.match(problemsOf('admin: *nowhere\n')[0], /^config\.yaml: invalid YAML: /);
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 8; i++) bomb.push(`${'b'.repeat(i)}: &${'b'.repeat(i)} [${Array(10).fill(i === 1 ? '*a' : `*${'b'.repeat(i - 1)}`).join(', ')}]`);
    assert.match(problemsOf(bomb.join('\n'))[0], /invalid YAML: .*alias/i);
  });

  test('not a mapping, and the empty file', () => {
    assert.deepEqual(problemsOf('- a\n- b\n'), ['config.yaml: (root): must be a mapping (got a list)']);
    assert.deepEqual(problemsOf(''), ['config.yaml: interceptionCA: is required']);
  });

  test('loadConfig: an unreadable file is a ConfigError naming the file', () => {
    const missing = path.join(os.tmpdir(), 'ca-proxy-no-such-dir', 'config.yaml');
    assert.throws(() => loadConfig(missing), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /^.*config\.yaml: cannot read: ENOENT/);
      return true;
    });
    assert.throws(() => loadConfig(os.tmpdir()), /cannot read: not a regular file/);
  });
});

describe('devConfig and defaults', () => {
  test('devConfig is a valid configuration over the .local PKI', () => {
    const dir = path.resolve('/work/x/.local');
    const c = validateConfig(devConfig(dir), 'devConfig');
    assert.deepEqual(c.interceptionCA, {
      cert: path.join(dir, DEV_PKI_FILES.interceptionCACert),
      key: path.join(dir, DEV_PKI_FILES.interceptionCAKey),
    });
    assert.deepEqual(c.identities, [
      { name: 'default', cert: path.join(dir, 'proxy-identity.crt'), key: path.join(dir, 'proxy-identity.key') },
    ]);
    assert.deepEqual(c.trust.caFiles, [path.join(dir, 'demo-ca.crt')]);
    assert.deepEqual(c.revocation.crlPaths, [path.join(dir, 'demo-crl.pem')]);
    assert.deepEqual(c.workloadCA, [path.join(dir, 'workload-ca.crt')]);
    assert.equal(c.defaults.identity, 'default');
    assert.equal(c.listen.connect, '127.0.0.1:3128');
  });

  test('defaultConfig returns independent copies', () => {
    const a = defaultConfig();
    a.rules.push({ match: { port: 1 } });
    a.listen.connect = null;
    assert.deepEqual(defaultConfig().rules, []);
    assert.equal(defaultConfig().listen.connect, '127.0.0.1:3128');
  });

  test('validateConfig rejects a shape error in a built object', () => {
    const c = { ...devConfig('/x'), rules: [{ match: { port: 'x' } }] };
    assert.throws(() => validateConfig(c, 'built'), /^ConfigError: built: rules\[0\]\.match\.port: must be an integer/);
  });
});

describe('parseHostPort', () => {
  test('splits names, IPv4 and bracketed IPv6', () => {
    assert.deepEqual(parseHostPort('127.0.0.1:3128'), { host: '127.0.0.1', port: 3128 });
    assert.deepEqual(parseHostPort('[::1]:9090'), { host: '::1', port: 9090 });
    assert.deepEqual(parseHostPort('localhost:0'), { host: 'localhost', port: 0 });
  });
  test('rejects what is not host:port', () => {
    for (const bad of ['3128', '::1:80', 'a:65536', 'a:', ':1', '[::1]80']) {
      assert.throws(() => parseHostPort(bad), RangeError, bad);
    }
  });
});
