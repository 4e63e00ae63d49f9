/**
 * `ca-proxy redirect` without root: flag validation (redirect-options.ts), rule planning and the
 * restore scripts (redirect-plan.ts), the auto backend choice (redirect-iptables.ts), probe
 * targets (redirect-probe.ts), and the orchestration (redirect.ts) against an in-memory iptables
 * that applies restore scripts the way `iptables-restore --noflush` does for the commands we use.
 * The real thing runs in test/integration/redirect.test.ts.
 */
import { afterAll, describe, test } from '@jest/globals';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseRedirectFlags, RedirectUsageError, type RedirectOptions } from '../../../internal/k8s/redirect-options';
import { compareToPlan, foreignRules, JUMP, parseNatSave, planNat, renderApply, renderCleanup, renderRollback } from '../../../internal/k8s/redirect-plan';
import { chooseBackend, type BackendSurvey, type RunResult, type Runner } from '../../../internal/k8s/redirect-iptables';
import { ipv6InUse, probeTarget, type ProbeResult } from '../../../internal/k8s/redirect-probe';
import { runRedirect, type RedirectDeps } from '../../../internal/k8s/redirect';
import { repoRoot } from '../../support/root';

const opts = (f: Parameters<typeof parseRedirectFlags>[0] = {}): RedirectOptions => parseRedirectFlags(f);

function usageError(f: Parameters<typeof parseRedirectFlags>[0], message: RegExp): void {
  assert.throws(() => parseRedirectFlags(f), (e: unknown) => e instanceof RedirectUsageError && message.test(e.message));
}

describe('flags', () => {
  test('defaults: 443 → 15001, uid 1337, auto everything', () => {
    assert.deepEqual(opts(), {
      proxyPort: 15001,
      proxyUid: 1337,
      ports: [{ from: 443, to: 443 }],
      excludePorts: [],
      excludeCidrs: [],
      ipv6: 'auto',
      iptablesMode: 'auto',
      dryRun: false,
      cleanup: false,
    });
  });

  test('lists: ranges in either spelling, merged and sorted; CIDRs canonical, host bits cleared; bare addresses are hosts', () => {
    const o = opts({ ports: '8443, 443,8000-8100,8100:8200,444', excludeCidrs: '10.1.2.3/8,192.168.0.7,2001:DB8:0:0:1::/32,::ffff:10.0.0.1/128,fd00::1/64' });
    assert.deepEqual(o.ports, [
      { from: 443, to: 444 },
      { from: 8000, to: 8200 },
      { from: 8443, to: 8443 },
    ]);
    assert.deepEqual(
      o.excludeCidrs.map((c) => `${c.address}/${c.prefix}`),
      ['10.0.0.0/8', '192.168.0.7/32', '2001:db8::/32', '::ffff:a00:1/128', 'fd00::/64'],
    );
    assert.equal(opts({ ports: '*' }).ports, '*');
  });

  test('bad values name the flag and what is valid', () => {
    usageError({ excludeCidrs: '10.0.0.0/33' }, /^--exclude-cidrs: "10.0.0.0\/33" has a bad prefix length \(0-32 for IPv4\)$/);
    usageError({ excludeCidrs: 'fd00::/129' }, /0-128 for IPv6/);
    usageError({ excludeCidrs: '10.0.0.300/8' }, /is not an IPv4 or IPv6 address or CIDR/);
    usageError({ excludeCidrs: 'example.com' }, /is not an IPv4 or IPv6 address/);
    usageError({ excludeCidrs: '10.0.0.0/8,' }, /empty item/);
    usageError({ proxyPort: '0' }, /^--proxy-port: port 0 is out of range \(1-65535\)$/);
    usageError({ proxyPort: '65536' }, /out of range/);
    usageError({ proxyPort: '15001x' }, /is not a port number/);
    usageError({ ports: '443,70000' }, /^--ports: port 70000 is out of range/);
    usageError({ ports: '9000-8000' }, /ends before it starts/);
    usageError({ ports: '' }, /--ports: the list is empty/);
    usageError({ excludePorts: '-1' }, /--exclude-ports/);
    usageError({ proxyUid: 'envoy' }, /^--proxy-uid: "envoy" is not a numeric uid/);
    usageError({ proxyUid: '-1' }, /not a numeric uid/);
    usageError({ proxyUid: '4294967295' }, /out of range/);
    usageError({ ipv6: 'yes' }, /--ipv6: "yes" must be one of auto, on, off/);
    usageError({ iptablesMode: 'xtables' }, /--iptables-mode: "xtables" must be one of auto, nft, legacy/);
  });

  test('a selection that redirects nothing is refused, not installed as a silent no-op', () => {
    usageError({ ports: '443,8443', excludePorts: '400-500,8443' }, /excludes every port of --ports \(443,8443\): nothing would be redirected/);
    assert.doesNotThrow(() => opts({ ports: '443,8443', excludePorts: '443' }));
    assert.doesNotThrow(() => opts({ ports: '443', excludePorts: '443', cleanup: true }));
  });
});

describe('rule planning', () => {
  test('the default rules, exactly, in the order that makes every exclusion win', () => {
    assert.deepEqual(planNat(opts({ excludeCidrs: '10.96.0.0/12,fd00::/8', excludePorts: '22' }), 4).chains, {
      CA_PROXY_OUTPUT: [
        '-m owner --uid-owner 1337 -j RETURN',
        '-o lo -j RETURN',
        '-d 10.96.0.0/12 -j RETURN',
        '-p tcp -m multiport --dports 22 -j RETURN',
        '-p tcp -m multiport --dports 443 -j CA_PROXY_REDIRECT',
      ],
      CA_PROXY_REDIRECT: ['-p tcp -j REDIRECT --to-ports 15001'],
    });
    // IPv6 gets only the IPv6 networks.
    assert.deepEqual(planNat(opts({ excludeCidrs: '10.96.0.0/12,fd00::/8' }), 6).chains.CA_PROXY_OUTPUT.filter((r) => r.startsWith('-d')), ['-d fd00::/8 -j RETURN']);
  });

  test('* redirects every port; long lists are split at multiport\'s 15 (a range counts 2)', () => {
    assert.equal(planNat(opts({ ports: '*', proxyPort: '15006', proxyUid: '0' }), 4).chains.CA_PROXY_OUTPUT.at(-1), '-j CA_PROXY_REDIRECT');
    const many = Array.from({ length: 14 }, (_, i) => 1000 + i * 10).join(',') + ',2000-2100,3000';
    const rules = planNat(opts({ ports: many }), 4).chains.CA_PROXY_OUTPUT.filter((r) => r.endsWith('CA_PROXY_REDIRECT'));
    assert.equal(rules.length, 2);
    assert.equal(rules[0].split('--dports ')[1].split(' ')[0].split(',').length, 14);
    assert.equal(rules[1], '-p tcp -m multiport --dports 2000:2100,3000 -j CA_PROXY_REDIRECT');
  });
});

/** An `iptables-save` text holding `output` in nat OUTPUT and the given chains. */
function saveText(output: string[], chains: Record<string, string[]> = {}, extra = ''): string {
  return [
    '# Generated by iptables-save v1.8.9',
    '*nat',
    ':PREROUTING ACCEPT [3:180]',
    ':OUTPUT ACCEPT [0:0]',
    ...Object.keys(chains).map((c) => `:${c} - [0:0]`),
    ...output.map((r) => `-A OUTPUT ${r}`),
    ...Object.entries(chains).flatMap(([c, rules]) => rules.map((r) => `-A ${c} ${r}`)),
    'COMMIT',
    extra,
  ].join('\n');
}

describe('reading back and the restore scripts', () => {
  const plan = planNat(opts(), 4);
  const foreign = '-d 198.51.100.7/32 -p udp -j RETURN';

  test('the planned rules read back compare equal; any difference is named', () => {
    assert.deepEqual(compareToPlan(plan, parseNatSave(saveText([JUMP, foreign], plan.chains))), []);
    assert.match(compareToPlan(plan, parseNatSave(saveText([foreign, JUMP], plan.chains))).join(), /our jump is rule 2 of nat OUTPUT, expected rule 1/);
    assert.match(compareToPlan(plan, parseNatSave(saveText([JUMP, JUMP], plan.chains))).join(), /jumps into our chains 2 times/);
    assert.match(compareToPlan(plan, parseNatSave(saveText([foreign]))).join(), /chain CA_PROXY_OUTPUT is missing.*chain CA_PROXY_REDIRECT is missing.*0 times/);
    const changed = { ...plan.chains, CA_PROXY_REDIRECT: ['-p tcp -j REDIRECT --to-ports 15002'] };
    assert.match(compareToPlan(plan, parseNatSave(saveText([JUMP], changed))).join(), /chain CA_PROXY_REDIRECT holds \[-p tcp -j REDIRECT --to-ports 15002\]/);
    assert.match(compareToPlan(plan, parseNatSave(saveText([JUMP], { ...plan.chains, PREROUTING: ['-j CA_PROXY_OUTPUT'] }))).join(), /other rules jump into our chains: -A PREROUTING -j CA_PROXY_OUTPUT/);
  });

  test('apply: declare (create or flush) our chains, delete our old jumps by spec, insert one first', () => {
    const current = parseNatSave(saveText([foreign, JUMP], plan.chains));
    assert.equal(
      renderApply(plan, current),
      [
        '*nat',
        ':CA_PROXY_OUTPUT - [0:0]',
        ':CA_PROXY_REDIRECT - [0:0]',
        `-D OUTPUT ${JUMP}`,
        `-I OUTPUT 1 ${JUMP}`,
        ...plan.chains.CA_PROXY_OUTPUT.map((r) => `-A CA_PROXY_OUTPUT ${r}`),
        '-A CA_PROXY_REDIRECT -p tcp -j REDIRECT --to-ports 15001',
        'COMMIT',
        '',
      ].join('\n'),
    );
  });

  test('cleanup removes exactly ours; nothing of ours → no script', () => {
    assert.equal(renderCleanup(parseNatSave(saveText([foreign]))), null);
    assert.equal(renderCleanup(parseNatSave('')), null);
    assert.equal(
      renderCleanup(parseNatSave(saveText([JUMP, foreign], plan.chains))),
      ['*nat', `-D OUTPUT ${JUMP}`, '-F CA_PROXY_OUTPUT', '-F CA_PROXY_REDIRECT', '-X CA_PROXY_OUTPUT', '-X CA_PROXY_REDIRECT', 'COMMIT', ''].join('\n'),
    );
    // A chain of ours left empty by hand is still ours.
    assert.match(renderCleanup(parseNatSave(saveText([], { CA_PROXY_REDIRECT: [] })))!, /-X CA_PROXY_REDIRECT/);
  });

  test('rollback restores the earlier set of ours, or none', () => {
    const now = parseNatSave(saveText([JUMP, foreign], plan.chains));
    assert.equal(renderRollback(parseNatSave(saveText([foreign])), now), renderCleanup(now));
    const older = planNat(opts({ proxyPort: '15006' }), 4);
    const script = renderRollback(parseNatSave(saveText([JUMP, foreign], older.chains)), now)!;
    assert.match(script, /-I OUTPUT 1 -p tcp -j CA_PROXY_OUTPUT/);
    assert.match(script, /-A CA_PROXY_REDIRECT -p tcp -j REDIRECT --to-ports 15006/);
  });

  test('foreign rules are counted across tables, ours are not', () => {
    const plan4 = planNat(opts(), 4);
    assert.equal(foreignRules(saveText([JUMP, foreign], plan4.chains, '*filter\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p tcp -m tcp --dport 9 -j ACCEPT\nCOMMIT')), 2);
    assert.equal(foreignRules(saveText([JUMP], plan4.chains)), 0);
  });
});

describe('choosing the backend (auto)', () => {
  const s = (mode: 'nft' | 'legacy', o: Partial<BackendSurvey> = {}): BackendSurvey => ({ mode, installed: true, ours: false, foreign: 0, ...o });
  test('ours first, then others\' rules (nft first, as istio-iptables), then the nft default', () => {
    assert.equal(chooseBackend(s('nft', { foreign: 9 }), s('legacy', { ours: true }))?.mode, 'legacy');
    assert.equal(chooseBackend(s('nft', { ours: true }), s('legacy', { ours: true }))?.why, 'ca-proxy rules found in nft (and in legacy too)');
    assert.equal(chooseBackend(s('nft', { foreign: 3 }), s('legacy', { foreign: 40 }))?.mode, 'nft');
    assert.deepEqual(chooseBackend(s('nft'), s('legacy', { foreign: 40 })), { mode: 'legacy', why: '40 existing rules in legacy, none in nft' });
    assert.deepEqual(chooseBackend(s('nft'), s('legacy')), { mode: 'nft', why: 'no rules in either backend: the default' });
    assert.equal(chooseBackend(s('nft', { installed: false }), s('legacy'))?.why, 'only legacy is installed');
    assert.equal(chooseBackend(s('nft', { unreadable: 'no nf_tables' }), s('legacy'))?.mode, 'legacy');
    assert.equal(chooseBackend(s('nft', { installed: false }), s('legacy', { installed: false })), null);
  });
});

describe('probe and IPv6 detection', () => {
  test('probe target: a documentation address not excluded, a selected port not excluded', () => {
    assert.deepEqual(probeTarget(opts(), 4), { address: '192.0.2.1', port: 443 });
    assert.deepEqual(probeTarget(opts({ excludeCidrs: '192.0.2.0/24' }), 4), { address: '198.51.100.1', port: 443 });
    assert.deepEqual(probeTarget(opts({ excludeCidrs: '0.0.0.0/0' }), 4), { skip: 'every IPv4 probe address (192.0.2.1, 198.51.100.1, 203.0.113.1) is in --exclude-cidrs' });
    assert.deepEqual(probeTarget(opts({ ports: '*', excludePorts: '1-443' }), 6), { address: '2001:db8::1', port: 444 });
    assert.deepEqual(probeTarget(opts({ ports: '8000-8100', excludePorts: '8000' }), 4), { address: '192.0.2.1', port: 8001 });
  });

  test('IPv6 is in use when an interface other than lo has an address', () => {
    const lo = '00000000000000000000000000000001 01 80 10 80       lo\n';
    const eth = 'fe800000000000000000000000000001 02 40 20 80     eth0\n';
    assert.equal(ipv6InUse(null), false);
    assert.equal(ipv6InUse(''), false);
    assert.equal(ipv6InUse(lo), false);
    assert.equal(ipv6InUse(lo + eth), true);
  });
});

/**
 * An in-memory iptables: one nat table per (mode, family), changed by restore scripts with the
 * commands renderApply/renderCleanup/renderRollback emit, all or nothing like the real one.
 */
class FakeIptables {
  tables = new Map<string, { output: string[]; chains: Map<string, string[]> }>();
  calls: string[] = [];
  /** Make a restore binary fail, or "succeed" without changing anything. */
  failRestore = new Set<string>();
  ignoreRestore = new Set<string>();
  installed = new Set(['iptables-nft', 'ip6tables-nft', 'iptables-legacy', 'ip6tables-legacy']);

  table(key: string) {
    if (!this.tables.has(key)) this.tables.set(key, { output: [], chains: new Map() });
    return this.tables.get(key)!;
  }

  save(key: string): string {
    const t = this.tables.get(key);
    if (!t) return '';
    return saveText(t.output, Object.fromEntries(t.chains));
  }

  restore(key: string, script: string): RunResult {
    if (this.failRestore.has(key)) return { code: 1, stdout: '', stderr: `${key}-restore: simulated failure\n` };
    if (this.ignoreRestore.has(key)) return { code: 0, stdout: '', stderr: '' };
    const t = structuredClone(this.table(key));
    for (const line of script.split('\n')) {
      let m: RegExpExecArray | null;
      if ((m = /^:(\S+)/.exec(line))) t.chains.set(m[1], []);
      else if ((m = /^-I OUTPUT (\d+) (.*)$/.exec(line))) t.output.splice(Number(m[1]) - 1, 0, m[2]);
      else if ((m = /^-D OUTPUT (.*)$/.exec(line))) {
        const i = t.output.indexOf(m[1]);
        if (i < 0) return { code: 1, stdout: '', stderr: 'Bad rule (does a matching rule exist in that chain?)' };
        t.output.splice(i, 1);
      } else if ((m = /^-A (\S+) (.*)$/.exec(line))) {
        if (m[1] === 'OUTPUT') t.output.push(m[2]);
        else t.chains.get(m[1])!.push(m[2]);
      } else if ((m = /^-F (\S+)$/.exec(line))) t.chains.set(m[1], []);
      else if ((m = /^-X (\S+)$/.exec(line))) t.chains.delete(m[1]);
    }
    this.tables.set(key, t);
    return { code: 0, stdout: '', stderr: '' };
  }

  runner: Runner = async (file, args, stdin) => {
    const m = /^\/fake\/(ip6?tables)-(nft|legacy)-(save|restore)$/.exec(file)!;
    const key = `${m[1]}-${m[2]}`;
    this.calls.push(`${path.basename(file)} ${args.join(' ')}`.trim());
    if (m[3] === 'save') return { code: 0, stdout: this.save(key), stderr: '' };
    return this.restore(key, stdin ?? '');
  };
}

function deps(fake: FakeIptables, probe: ProbeResult['status'] = 'redirected', ifInet6: string | null = 'x 02 40 20 80 eth0\n'): RedirectDeps & { printed: string[]; warnings: string[] } {
  const printed: string[] = [];
  const warnings: string[] = [];
  return {
    run: fake.runner,
    pathVar: '/fake',
    readIfInet6: () => ifInet6,
    probe: async (_o, family) =>
      probe === 'failed' ? { status: 'failed', reason: 'ETIMEDOUT', target: { address: '192.0.2.1', port: 443 } } : { status: 'redirected', target: { address: family === 4 ? '192.0.2.1' : '2001:db8::1', port: 443 } },
    print: (t) => printed.push(t),
    warn: (l) => warnings.push(l),
    printed,
    warnings,
  };
}

// findTools looks the binaries up on PATH: the orchestration tests give it a folder of empty
// stand-in executables, and the runner maps them to the in-memory tables.
const fakeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-redirect-unit-'));
for (const p of ['iptables', 'ip6tables']) for (const m of ['nft', 'legacy']) for (const s of ['save', 'restore']) fs.writeFileSync(path.join(fakeDir, `${p}-${m}-${s}`), '', { mode: 0o755 });
afterAll(() => fs.rmSync(fakeDir, { recursive: true, force: true }));
function withFakePath(d: RedirectDeps): RedirectDeps {
  const run = d.run;
  return { ...d, pathVar: fakeDir, run: (file, args, stdin) => run(file.replace(fakeDir, '/fake'), args, stdin) };
}

describe('orchestration (in-memory iptables)', () => {
  test('install, re-run unchanged, cleanup: one transaction per family, nothing written when in force', async () => {
    const fake = new FakeIptables();
    const d = deps(fake);
    const first = await runRedirect(opts(), withFakePath(d));
    assert.match(first, /^ca-proxy redirect: installed in nft \(no rules in either backend: the default\): TCP to ports 443 → proxy port 15001, IPv4 and IPv6, uid 1337 exempt; not redirected: loopback; probe: IPv4 redirected \(192.0.2.1:443\), IPv6 redirected \(\[2001:db8::1\]:443\)$/);
    assert.equal(fake.calls.filter((c) => c.includes('restore')).length, 2);
    fake.calls = [];
    const second = await runRedirect(opts(), withFakePath(d));
    assert.match(second, /already in force \(unchanged\) in nft \(ca-proxy rules found in nft\)/);
    assert.equal(fake.calls.filter((c) => c.includes('restore')).length, 0);
    assert.equal(await runRedirect(opts({ cleanup: true }), withFakePath(d)), "ca-proxy redirect: removed ca-proxy's chains and jump from IPv4 nft, IPv6 nft");
    assert.equal(fake.save('iptables-nft').includes('CA_PROXY'), false);
  });

  test('a restore that reports success but writes nothing fails the run: the filter is not silently absent', async () => {
    const fake = new FakeIptables();
    fake.ignoreRestore.add('iptables-nft');
    await assert.rejects(runRedirect(opts(), withFakePath(deps(fake))), /the IPv4 nft rules read back are not the rules written: chain CA_PROXY_OUTPUT is missing/);
    // IPv6 had been written: rolled back.
    assert.equal(fake.save('ip6tables-nft').includes('CA_PROXY'), false);
  });

  test('a failed probe rolls back both families and says so', async () => {
    const fake = new FakeIptables();
    await assert.rejects(runRedirect(opts(), withFakePath(deps(fake, 'failed'))), /the nft rules are in the table but the kernel does not apply them: IPv4 probe: ETIMEDOUT.*\(IPv6 nft rolled back; IPv4 nft rolled back\)/);
    assert.equal(fake.save('iptables-nft').includes('CA_PROXY'), false);
    assert.equal(fake.save('ip6tables-nft').includes('CA_PROXY'), false);
  });

  test('a failed re-run with new flags puts the previous rules back, not none (a running pod stays filtered)', async () => {
    const fake = new FakeIptables();
    await runRedirect(opts(), withFakePath(deps(fake)));
    const before = fake.save('iptables-nft');
    await assert.rejects(runRedirect(opts({ proxyPort: '15006' }), withFakePath(deps(fake, 'failed'))), /rolled back/);
    assert.equal(fake.save('iptables-nft'), before);
  });

  test('IPv6: off warns when the pod has IPv6; auto skips a pod with loopback-only IPv6', async () => {
    const fake = new FakeIptables();
    const d = deps(fake);
    assert.match(await runRedirect(opts({ ipv6: 'off' }), withFakePath(d)), /IPv4 only/);
    assert.match(d.warnings.join(), /--ipv6 off while this pod has IPv6 addresses: its IPv6 connections are NOT redirected/);
    const loOnly = deps(new FakeIptables(), 'redirected', '00000000000000000000000000000001 01 80 10 80 lo\n');
    assert.match(await runRedirect(opts(), withFakePath(loOnly)), /IPv4 only/);
  });

  test('auto follows rules already in legacy; cleanup in auto removes ours from every backend', async () => {
    const fake = new FakeIptables();
    fake.table('iptables-legacy').output.push('-d 198.51.100.7/32 -p udp -j RETURN');
    assert.match(await runRedirect(opts(), withFakePath(deps(fake))), /installed in legacy \(1 existing rules in legacy, none in nft\)/);
    assert.match(await runRedirect(opts({ iptablesMode: 'nft' }), withFakePath(deps(fake))), /removed an older copy of our rules from IPv4 legacy, IPv6 legacy/);
  });

  test('--dry-run prints the scripts and writes nothing', async () => {
    const fake = new FakeIptables();
    const d = deps(fake);
    const summary = await runRedirect(opts({ dryRun: true, ports: '443,8443' }), withFakePath(d));
    assert.match(summary, /^ca-proxy redirect: dry run, nothing installed/);
    assert.equal(fake.calls.filter((c) => c.includes('restore')).length, 0);
    assert.match(d.printed.join(''), /# IPv4 nft: iptables-nft-restore --noflush <<'EOF'\n\*nat\n:CA_PROXY_OUTPUT - \[0:0\]/);
    assert.match(d.printed.join(''), /-A CA_PROXY_OUTPUT -p tcp -m multiport --dports 443,8443 -j CA_PROXY_REDIRECT/);
  });
});

describe('the command line', () => {
  const main = path.join(repoRoot(), 'dist/cmd/ca-proxy/main.js');
  const cli = (...args: string[]) => spawnSync(process.execPath, [main, 'redirect', ...args], { encoding: 'utf8', env: { ...process.env, PATH: '/nonexistent' } });

  test('bad values: exit 1, one line naming the flag, before touching iptables', () => {
    for (const [args, message] of [
      [['--exclude-cidrs', '10.0.0.0/8,300.1.1.1'], /^ca-proxy redirect: --exclude-cidrs: "300.1.1.1" is not an IPv4 or IPv6 address or CIDR/],
      [['--proxy-uid', '13x7'], /^ca-proxy redirect: --proxy-uid: "13x7" is not a numeric uid/],
      [['--ipv6', 'maybe'], /argument 'maybe' is invalid. Allowed choices are auto, on, off/],
    ] as [string[], RegExp][]) {
      const r = cli(...args);
      assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
  });

  test('--help documents every flag and where to see the rules', () => {
    const r = cli('--help');
    assert.equal(r.status, 0);
    for (const flag of ['--proxy-port', '--proxy-uid', '--ports', '--exclude-ports', '--exclude-cidrs', '--ipv6', '--iptables-mode', '--dry-run', '--cleanup', 'iptables -t nat -S']) assert.ok(r.stdout.includes(flag), flag);
  });

  test('without iptables: exit 1 with what to install', () => {
    const r = cli();
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^ca-proxy redirect: iptables is not installed/);
  });
});
