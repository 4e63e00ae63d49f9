import { describe, test } from '@jest/globals';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { matchRule, sniGlobMatches } from '../../../internal/engine/policy';
import { parseConfig } from '../../../internal/config/load';
import type { Config, RuleSettings } from '../../../internal/config/types';

describe('sniGlobMatches', () => {
  const cases: [glob: string, name: string, expected: boolean][] = [
    // literal
    ['api.example.com', 'api.example.com', true],
    ['api.example.com', 'API.Example.COM', true],
    ['API.EXAMPLE.COM', 'api.example.com', true],
    ['api.example.com', 'api.example.com.', true],
    ['api.example.com.', 'api.example.com', true],
    ['api.example.com', 'api.example.co', false],
    ['api.example.com', 'xapi.example.com', false],
    ['api.example.com', 'a.api.example.com', false],
    ['example.com', 'example.com.evil.net', false],
    // `*`: exactly one label
    ['*.example.com', 'api.example.com', true],
    ['*.example.com', 'API.EXAMPLE.com.', true],
    ['*.example.com', 'example.com', false],
    ['*.example.com', 'a.b.example.com', false],
    ['*.example.com', '.example.com', false],
    ['*', 'localhost', true],
    ['*', 'a.b', false],
    ['api.*.com', 'api.example.com', true],
    ['api.*.com', 'api.com', false],
    ['*.*', 'a.b', true],
    ['*.*', 'a', false],
    // `**`: one or more labels
    ['**.example.com', 'api.example.com', true],
    ['**.example.com', 'a.b.c.example.com', true],
    ['**.example.com', 'example.com', false],
    ['**.example.com', 'example.org', false],
    ['**', 'a', true],
    ['**', 'a.b.c', true],
    ['api.**', 'api.x.y', true],
    ['api.**', 'api', false],
    ['a.**.z', 'a.b.z', true],
    ['a.**.z', 'a.b.c.d.z', true],
    ['a.**.z', 'a.z', false],
    ['**.**', 'a', false],
    ['**.**', 'a.b', true],
    ['**.b.**', 'a.b.c', true],
    ['**.b.**', 'b.c', false],
    ['*.**.com', 'a.b.com', true],
    ['*.**.com', 'a.com', false],
    // malformed names never match
    ['**', '', false],
    ['*', '', false],
    ['**', 'a..b', false],
    ['a..b', 'a..b', false],
    ['*.example.com', 'api.example.com..', false],
    // ASCII-only case folding: U+0130 (İ) lower-cases to "i̇", not "i"
    ['*.example.com', '\u0130.example.com', true],
    ['i.example.com', '\u0130.example.com', false],
  ];
  for (const [glob, name, expected] of cases) {
    test(`${JSON.stringify(glob)} ${expected ? 'matches' : 'does not match'} ${JSON.stringify(name)}`, () => {
      assert.equal(sniGlobMatches(glob, name), expected);
    });
  }

  test('many `**` against a long name stays polynomial (memoised)', () => {
    const glob = Array(30).fill('**').join('.') + '.z';
    const name = Array(120).fill('a').join('.');
    assert.equal(sniGlobMatches(glob, name), false);
    assert.equal(sniGlobMatches(glob, `${name}.z`), true);
  });

  // An independent implementation: the glob compiled to a regular expression.
  function oracle(glob: string, name: string): boolean {
    const strip = (s: string): string => (s.endsWith('.') ? s.slice(0, -1) : s);
    const source = strip(glob)
      .split('.')
      .map((l) => (l === '**' ? '[^.]+(?:\\.[^.]+)*' : l === '*' ? '[^.]+' : l.replace(/[-]/g, '\\-')))
      .join('\\.');
    return new RegExp(`^${source}$`, 'i').test(strip(name));
  }

  const label = fc.constantFrom('a', 'b', 'ab', 'x-1', 'A', 'B', '_s');
  const globLabel = fc.oneof({ arbitrary: label, weight: 3 }, fc.constant('*'), fc.constant('**'));
  const dot = fc.constantFrom('', '.');

  test('agrees with a regular-expression implementation on random globs and names', () => {
    fc.assert(
      fc.property(
        fc.array(globLabel, { minLength: 1, maxLength: 5 }),
        fc.array(label, { minLength: 1, maxLength: 7 }),
        dot,
        dot,
        (g, n, gd, nd) => {
          const glob = g.join('.') + gd;
          const name = n.join('.') + nd;
          assert.equal(sniGlobMatches(glob, name), oracle(glob, name), `${glob} vs ${name}`);
        },
      ),
      { numRuns: 3000 },
    );
  });

  test('a glob made from a name by replacing labels with * always matches it', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(label, fc.boolean()), { minLength: 1, maxLength: 6 }), (parts) => {
        const name = parts.map(([l]) => l).join('.');
        const glob = parts.map(([l, wild]) => (wild ? '*' : l.toUpperCase())).join('.');
        assert.ok(sniGlobMatches(glob, name));
        assert.ok(!sniGlobMatches(glob, `extra.${name}`));
      }),
    );
  });
});

describe('matchRule', () => {
  const config: Config = parseConfig(
    `
interceptionCA: {cert: ca.crt, key: ca.key}
identities: [{name: corp, cert: c.crt, key: c.key}, {name: bank, pfx: b.p12}]
workloadCA: [w.pem]
defaults: {identity: corp}
rules:
  - name: smtp-blocked
    match: {port: 25}
    action: deny
  - name: bank-8443
    match: {sni: "**.bank.example", port: 8443}
    identity: bank
    clientAuth: require
  - name: bank-any
    match: {sni: "**.bank.example"}
    identity: null
    revocation: softFail
  - match: {sni: "*.cdn.example"}
    action: passthrough
    leafOnly: true
`,
    '/etc',
    'policy.yaml',
  );
  const defaults: RuleSettings = { action: 'intercept', identity: 'corp', revocation: 'hardFail', clientAuth: 'none', leafOnly: false, tls13: 'deny', minVersion: 'TLSv1.2' };

  test('unmatched connections get the defaults under the name "default"', () => {
    assert.deepEqual(matchRule(config, { sni: 'example.org', port: 443 }), { name: 'default', settings: defaults });
  });

  test('a port rule matches with or without SNI', () => {
    assert.equal(matchRule(config, { sni: 'mail.example', port: 25 }).name, 'smtp-blocked');
    assert.equal(matchRule(config, { sni: null, port: 25 }).settings.action, 'deny');
  });

  test('a rule with sni and port needs both; first match wins', () => {
    const both = matchRule(config, { sni: 'www.Bank.Example.', port: 8443 });
    assert.deepEqual(both, {
      name: 'bank-8443',
      settings: { ...defaults, identity: 'bank', clientAuth: 'require' },
    });
    const sniOnly = matchRule(config, { sni: 'www.bank.example', port: 443 });
    assert.equal(sniOnly.name, 'bank-any');
  });

  test('identity: null in a rule overrides the default identity', () => {
    assert.deepEqual(matchRule(config, { sni: 'a.bank.example', port: 443 }).settings, {
      ...defaults,
      identity: null,
      revocation: 'softFail',
    });
  });

  test('unnamed rules are reported by their index', () => {
    const m = matchRule(config, { sni: 'img.cdn.example', port: 443 });
    assert.deepEqual(m, { name: 'rules[3]', settings: { ...defaults, action: 'passthrough', leafOnly: true } });
  });

  test('no SNI never matches an sni rule; a missing port never matches a port rule', () => {
    assert.equal(matchRule(config, { sni: null, port: 8443 }).name, 'default');
    assert.equal(matchRule(config, { sni: undefined, port: 443 }).name, 'default');
    assert.equal(matchRule(config, { sni: 'x.bank.example' }).name, 'bank-any');
    assert.equal(matchRule(config, { sni: 'mail.example' }).name, 'default');
  });

  test('the returned settings are a copy: callers cannot change the configuration', () => {
    const m = matchRule(config, { sni: 'example.org', port: 443 });
    m.settings.action = 'deny';
    assert.equal(config.defaults.action, 'intercept');
  });
});
