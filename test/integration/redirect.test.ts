/**
 * `ca-proxy redirect` for real: in a "pod" network namespace joined to an "external" one
 * (test/support/netns.ts), with the iptables binaries of Debian's `iptables` package, once per
 * backend (nft, legacy) that this machine's kernel supports. Clients in the pod connect to
 * listeners that say who they are: redirected connections land on the pod's proxy-port listener,
 * which reports the destination the client dialled (SO_ORIGINAL_DST, as Envoy's original_dst
 * listener filter reads it); everything excluded reaches the external listeners directly.
 */
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ADDR, NetnsPair, netnsPrerequisites, netnsSuite, type ConnectResult } from '../support/netns';
import { note } from '../support/note';

type Mode = 'nft' | 'legacy';
const PROXY_PORT = 15001;

function has(bin: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }).status === 0;
}

/** Whether the kernel takes `mode`'s nat tables (IPv4 and IPv6), tried in a namespace of its own. */
function kernelSupports(mode: Mode): string | null {
  const ns = `rd-k-${mode}-${process.pid}`;
  spawnSync('ip', ['netns', 'add', ns]);
  try {
    for (const p of ['iptables', 'ip6tables']) {
      const r = spawnSync('ip', ['netns', 'exec', ns, `${p}-${mode}-restore`, '--noflush'], { input: '*nat\nCOMMIT\n', encoding: 'utf8' });
      if (r.status !== 0) return `the kernel refuses ${p}-${mode} nat: ${r.stderr.trim()}`;
    }
    return null;
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
}

const base = netnsPrerequisites();
/** Why a backend's suite cannot run (fails under CI, skips otherwise), per backend. */
const missing: Record<Mode, string | null> = { nft: null, legacy: null };
/** A backend this kernel does not offer: the machine's limit, not a missing install, so skipped even under CI. */
const kernelLacks: Record<Mode, string | null> = { nft: null, legacy: null };
for (const m of ['nft', 'legacy'] as Mode[]) {
  if (base) missing[m] = base;
  else if (!has(`iptables-${m}-restore`) || !has(`ip6tables-${m}-restore`)) missing[m] = `iptables-${m} is not installed (Debian: apt-get install iptables)`;
  else kernelLacks[m] = kernelSupports(m);
}
const MODES = (['nft', 'legacy'] as Mode[]).filter((m) => !missing[m] && !kernelLacks[m]);

/** `iptables-save` of both families of `mode` in `ns`, without comments and counters. */
async function saves(pair: NetnsPair, ns: string, mode: Mode): Promise<string> {
  const out: string[] = [];
  for (const p of ['iptables', 'ip6tables']) {
    const r = await pair.exec(ns, [`${p}-${mode}-save`]);
    if (r.code !== 0) throw new Error(`${p}-${mode}-save: ${r.stderr}`);
    out.push(`## ${p}`, ...r.stdout.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.replace(/\[\d+:\d+\]/g, '[0:0]')));
  }
  return out.join('\n');
}

/** Everything of both backends (what "changes nothing" is compared on). */
async function allSaves(pair: NetnsPair, ns: string): Promise<string> {
  const parts: string[] = [];
  for (const m of ['nft', 'legacy'] as Mode[]) if (has(`iptables-${m}-save`)) parts.push(`### ${m}`, await saves(pair, ns, m));
  return parts.join('\n');
}

/** Rules of others, so that the tables are not empty and "restored exactly" means something. */
async function seedForeignRules(pair: NetnsPair, mode: Mode): Promise<void> {
  const scripts: Record<string, string> = {
    iptables: '*nat\n-A OUTPUT -d 198.51.100.7/32 -p udp -j RETURN\nCOMMIT\n*filter\n-A OUTPUT -p tcp -m tcp --dport 9 -j ACCEPT\nCOMMIT\n',
    ip6tables: '*nat\n-A OUTPUT -d 2001:db8:7::7/128 -p udp -j RETURN\nCOMMIT\n*filter\n-A OUTPUT -p tcp -m tcp --dport 9 -j ACCEPT\nCOMMIT\n',
  };
  for (const [p, script] of Object.entries(scripts)) {
    const r = await pair.exec(pair.pod, [`${p}-${mode}-restore`, '--noflush'], { input: script });
    if (r.code !== 0) throw new Error(`seeding ${p}-${mode}: ${r.stderr}`);
  }
}

function who(results: ConnectResult[]): string[] {
  return results.map((r) => (r.said ? `${r.said.says}${r.said.originalDst ? ` ${r.said.originalDst}` : ''}` : `error ${r.error}`));
}

const FLAGS = ['--ports', '443,8443,9443', '--exclude-ports', '9443', '--exclude-cidrs', '198.18.1.0/24,fd00:ca:2::/64'];

const externalListeners = ['0.0.0.0', '::'].flatMap((host) => [443, 80, 8443, 9443].map((port) => ({ host, port, says: 'external' })));

for (const mode of ['nft', 'legacy'] as Mode[]) {
  if (kernelLacks[mode]) {
    process.stderr.write(`skipping ca-proxy redirect with iptables-${mode}: ${kernelLacks[mode]}\n`);
    test.skip(`ca-proxy redirect with iptables-${mode} — skipped: ${kernelLacks[mode]}`, () => undefined);
    continue;
  }
  netnsSuite(`ca-proxy redirect with iptables-${mode}`, missing[mode], () => {
    let pair: NetnsPair;
    let baseline: string;
    let installed: string;
    let podListeners: ChildProcess | undefined;

    beforeAll(async () => {
      pair = await NetnsPair.create(`rd-${mode.slice(0, 3)}`);
      await seedForeignRules(pair, mode);
      baseline = await allSaves(pair, pair.pod);
      await pair.serve(pair.external, externalListeners);
    });
    afterAll(async () => {
      await pair?.destroy();
    });

    test('--dry-run prints the rules and changes nothing', async () => {
      const r = await pair.caProxy(pair.pod, ['redirect', ...FLAGS, '--dry-run']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Backend: ${mode}`);
      expect(r.stdout).toContain('-A CA_PROXY_OUTPUT -m owner --uid-owner 1337 -j RETURN');
      expect(r.stdout).toContain('-A CA_PROXY_OUTPUT -d 198.18.1.0/24 -j RETURN');
      expect(r.stdout).toContain('-A CA_PROXY_OUTPUT -d fd00:ca:2::/64 -j RETURN');
      expect(r.stdout).toContain('-A CA_PROXY_REDIRECT -p tcp -j REDIRECT --to-ports 15001');
      expect(await allSaves(pair, pair.pod)).toBe(baseline);
    });

    test(`installs in ${mode} (detected from the rules already there), first in nat OUTPUT, and the probe sees the kernel redirect`, async () => {
      const r = await pair.caProxy(pair.pod, ['redirect', ...FLAGS]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      note(r.stdout.trim());
      expect(r.stdout.trim().split('\n')).toHaveLength(1);
      expect(r.stdout).toMatch(new RegExp(`^ca-proxy redirect: installed in ${mode} \\(\\d+ existing rules in ${mode}`));
      expect(r.stdout).toContain('IPv4 redirected (192.0.2.1:443)');
      expect(r.stdout).toContain('IPv6 redirected ([2001:db8::1]:443)');
      for (const p of ['iptables', 'ip6tables']) {
        const s = await pair.exec(pair.pod, [`${p}-${mode}`, '-t', 'nat', '-S', 'OUTPUT']);
        const rules = s.stdout.split('\n').filter((l) => l.startsWith('-A'));
        expect(rules[0]).toBe('-A OUTPUT -p tcp -j CA_PROXY_OUTPUT');
        expect(rules).toHaveLength(2); // ours first, the foreign rule kept after it
      }
      const other: Mode = mode === 'nft' ? 'legacy' : 'nft';
      if (has(`iptables-${other}-save`)) expect(await saves(pair, pair.pod, other)).not.toContain('CA_PROXY');
      installed = await allSaves(pair, pair.pod);
      podListeners = await pair.serve(pair.pod, [
        { host: '0.0.0.0', port: PROXY_PORT, says: 'proxy', originalDst: true },
        { host: '::', port: PROXY_PORT, says: 'proxy', originalDst: true },
        { host: '0.0.0.0', port: 443, says: 'pod-local' },
        { host: '::', port: 443, says: 'pod-local' },
      ]);
    });

    test('the pod\'s TCP to selected ports lands on the proxy port; excluded traffic goes out directly', async () => {
      expect(podListeners).toBeDefined();
      const targets = (ext: string, ext2: string, loop: string, self: string) => [
        { host: ext, port: 443 },
        { host: ext, port: 8443 },
        { host: ext, port: 9443 }, // --exclude-ports
        { host: ext, port: 80 }, // not in --ports
        { host: ext2, port: 443 }, // --exclude-cidrs
        { host: loop, port: 443 }, // loopback
        { host: self, port: 443 }, // the pod's own address (routed through lo)
      ];
      const fmt = (a: string, p: number) => (a.includes(':') ? `[${a}]:${p}` : `${a}:${p}`);
      const expected = (ext: string) => [`proxy ${fmt(ext, 443)}`, `proxy ${fmt(ext, 8443)}`, 'external', 'external', 'external', 'pod-local', 'pod-local'];
      const v4 = await pair.connect(pair.pod, targets(ADDR.extV4, ADDR.ext2V4, '127.0.0.1', ADDR.podV4));
      expect(who(v4)).toEqual(expected(ADDR.extV4));
      expect(v4[4].said!.local).toBe(`${ADDR.ext2V4}:443`); // the second external host itself answered
      const v6 = await pair.connect(pair.pod, targets(ADDR.extV6, ADDR.ext2V6, '::1', ADDR.podV6));
      expect(who(v6)).toEqual(expected(ADDR.extV6));
      expect(v6[4].said!.local).toBe(`[${ADDR.ext2V6}]:443`);
      // The proxy saw the pod's own address as the source: REDIRECT changes only the destination.
      expect(v4[0].said!.remote.startsWith(`${ADDR.podV4}:`)).toBe(true);
    });

    test('the proxy uid\'s connections are never redirected; any other uid\'s are', async () => {
      const targets = [
        { host: ADDR.extV4, port: 443 },
        { host: ADDR.extV6, port: 443 },
      ];
      expect(who(await pair.connect(pair.pod, targets, { uid: 1337 }))).toEqual(['external', 'external']);
      expect(who(await pair.connect(pair.pod, targets, { uid: 1000 }))).toEqual([`proxy ${ADDR.extV4}:443`, `proxy [${ADDR.extV6}]:443`]);
    });

    test('a second run changes nothing', async () => {
      const r = await pair.caProxy(pair.pod, ['redirect', ...FLAGS]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`already in force (unchanged) in ${mode} (ca-proxy rules found in ${mode})`);
      // The proxy port is taken by the pod's listener now, so the probe says why it did not run.
      expect(r.stdout).toContain('IPv4 not probed: port 15001 on 127.0.0.1 is already in use');
      expect(await allSaves(pair, pair.pod)).toBe(installed);
    });

    test('different flags replace our rules in one transaction, still exactly one set', async () => {
      const r = await pair.caProxy(pair.pod, ['redirect', '--ports', '*', '--exclude-ports', '22,9443', '--exclude-cidrs', '198.18.1.0/24,fd00:ca:2::/64']);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`installed in ${mode}`);
      const s = await pair.exec(pair.pod, [`iptables-${mode}`, '-t', 'nat', '-S']);
      expect(s.stdout.split('\n').filter((l) => l === '-A OUTPUT -p tcp -j CA_PROXY_OUTPUT')).toHaveLength(1);
      expect(s.stdout).toContain('-A CA_PROXY_OUTPUT -j CA_PROXY_REDIRECT');
      expect(who(await pair.connect(pair.pod, [{ host: ADDR.extV4, port: 80 }, { host: ADDR.extV4, port: 9443 }]))).toEqual([`proxy ${ADDR.extV4}:80`, 'external']);
    });

    test('--cleanup restores the original rules exactly, and traffic goes out directly again', async () => {
      const r = await pair.caProxy(pair.pod, ['redirect', '--cleanup']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`removed ca-proxy's chains and jump from IPv4 ${mode}, IPv6 ${mode}`);
      expect(await allSaves(pair, pair.pod)).toBe(baseline);
      expect(who(await pair.connect(pair.pod, [{ host: ADDR.extV4, port: 443 }, { host: ADDR.extV6, port: 443 }]))).toEqual(['external', 'external']);
      const again = await pair.caProxy(pair.pod, ['redirect', '--cleanup']);
      expect(again.code).toBe(0);
      expect(again.stdout).toContain('no ca-proxy rules found; nothing removed');
    });
  });
}

const anyMode = MODES[0];

netnsSuite('ca-proxy redirect failures', anyMode ? null : (missing.nft ?? missing.legacy ?? 'no iptables backend usable on this kernel'), () => {
  const mode = anyMode!;
  let pair: NetnsPair;
  let tmp: string;
  beforeAll(async () => {
    pair = await NetnsPair.create('rd-fail');
    // Tables that exist before: iptables can remove our chains but never a built-in table it
    // created, so "changes nothing" is only exact from a table that was already there.
    await seedForeignRules(pair, mode);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-redirect-'));
  });
  afterAll(async () => {
    await pair?.destroy();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('without CAP_NET_ADMIN: exit 1, says which capability, changes nothing', async () => {
    const before = await allSaves(pair, pair.pod);
    const r = await pair.caProxy(pair.pod, ['redirect'], { setpriv: ['--inh-caps=-net_admin', '--bounding-set=-net_admin'] });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ca-proxy redirect: .*CAP_NET_ADMIN/);
    expect(r.stderr).toContain('NET_ADMIN and NET_RAW');
    expect(await allSaves(pair, pair.pod)).toBe(before);
  });

  test('iptables not installed: exit 1 with what to install', async () => {
    const r = await pair.caProxy(pair.pod, ['redirect'], { env: { ...process.env, PATH: path.join(tmp, 'nothing-here') } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/iptables is not installed: .* found on PATH .*Debian's iptables package/);
  });

  test('a forced backend whose binaries are missing: exit 1 naming them', async () => {
    const bin = path.join(tmp, 'only-one-backend');
    fs.mkdirSync(bin);
    for (const p of ['iptables', 'ip6tables']) for (const s of ['save', 'restore']) fs.symlinkSync(`/usr/sbin/xtables-${mode}-multi`, path.join(bin, `${p}-${mode}-${s}`));
    const other: Mode = mode === 'nft' ? 'legacy' : 'nft';
    const r = await pair.caProxy(pair.pod, ['redirect', '--iptables-mode', other], { env: { ...process.env, PATH: bin } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`iptables-${other}-save/iptables-${other}-restore`);
  });

  test('IPv6 failing after IPv4 was written: exit 1 and IPv4 rolled back', async () => {
    const before = await allSaves(pair, pair.pod);
    const bin = path.join(tmp, 'ip6-broken');
    fs.mkdirSync(bin);
    for (const s of ['save', 'restore']) fs.symlinkSync(`/usr/sbin/xtables-${mode}-multi`, path.join(bin, `iptables-${mode}-${s}`));
    fs.symlinkSync(`/usr/sbin/xtables-${mode}-multi`, path.join(bin, `ip6tables-${mode}-save`));
    fs.writeFileSync(path.join(bin, `ip6tables-${mode}-restore`), '#!/bin/sh\necho "ip6tables-restore: line 1 failed (simulated)" >&2\nexit 1\n', { mode: 0o755 });
    const r = await pair.caProxy(pair.pod, ['redirect', '--iptables-mode', mode, '--ipv6', 'on'], { env: { ...process.env, PATH: bin } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('simulated');
    expect(r.stderr).toContain(`IPv4 ${mode} rolled back`);
    expect(await allSaves(pair, pair.pod)).toBe(before);
  });

  test('rules in the table but the probe not delivered (a filter rule rejects it): exit 1, nothing of ours left', async () => {
    // By destination: filter OUTPUT sees the address REDIRECT wrote, but the output device of the
    // route looked up before nat (eth0), so `-o lo` would not match.
    const reject = `-A OUTPUT -d 127.0.0.1/32 -p tcp -m tcp --dport ${PROXY_PORT} -j REJECT --reject-with tcp-reset`;
    const seeded = await pair.exec(pair.pod, [`iptables-${mode}-restore`, '--noflush'], { input: `*filter\n${reject}\nCOMMIT\n` });
    expect(seeded.code).toBe(0);
    const before = await allSaves(pair, pair.pod);
    const r = await pair.caProxy(pair.pod, ['redirect', '--ipv6', 'off', '--iptables-mode', mode]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('the kernel does not apply them: IPv4 probe: a connection to 192.0.2.1:443 did not reach the proxy port 15001: ECONNREFUSED');
    expect(r.stderr).toContain(`IPv4 ${mode} rolled back`);
    expect(await allSaves(pair, pair.pod)).toBe(before);
    await pair.exec(pair.pod, [`iptables-${mode}`, '-D', ...reject.split(' ').slice(1)]);
  });

  test('bad flag values: exit 1 with the flag and what is valid, nothing read or written', async () => {
    const cases: [string[], RegExp][] = [
      [['--exclude-cidrs', '10.0.0.0/33'], /--exclude-cidrs: "10.0.0.0\/33" has a bad prefix length \(0-32 for IPv4\)/],
      [['--proxy-port', '70000'], /--proxy-port: port 70000 is out of range \(1-65535\)/],
      [['--proxy-uid', 'envoy'], /--proxy-uid: "envoy" is not a numeric uid/],
      [['--ports', '443', '--exclude-ports', '443'], /nothing would be redirected/],
    ];
    for (const [args, message] of cases) {
      const r = await pair.caProxy(pair.pod, ['redirect', ...args], { env: { ...process.env, PATH: path.join(tmp, 'nothing-here') } });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(message);
    }
  });

  if (MODES.length === 2) {
    test('a copy of ours left in the other backend by an earlier forced run is removed', async () => {
      const forced = await pair.caProxy(pair.pod, ['redirect', '--iptables-mode', 'legacy']);
      expect(forced.code).toBe(0);
      const r = await pair.caProxy(pair.pod, ['redirect', '--iptables-mode', 'nft']);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('removed an older copy of our rules from IPv4 legacy, IPv6 legacy');
      expect(await saves(pair, pair.pod, 'legacy')).not.toContain('CA_PROXY');
      expect(await saves(pair, pair.pod, 'nft')).toContain('CA_PROXY_OUTPUT');
      const c = await pair.caProxy(pair.pod, ['redirect', '--cleanup']);
      expect(c.stdout).toContain('removed ca-proxy\'s chains and jump from IPv4 nft, IPv6 nft');
    });
  }
});

netnsSuite('SO_ORIGINAL_DST harness (test/support/original-dst.ts)', base, () => {
  let pair: NetnsPair;
  beforeAll(async () => {
    pair = await NetnsPair.create('rd-odst');
  });
  afterAll(async () => {
    await pair?.destroy();
  });

  test('a connection that was not NATed has no original destination, and says so', async () => {
    await pair.serve(pair.external, [{ host: '0.0.0.0', port: 443, says: 'external', originalDst: true }]);
    const [r] = await pair.connect(pair.pod, [{ host: ADDR.extV4, port: 443 }]);
    expect(r.said!.says).toBe('external');
    // No conntrack entry (ENOENT), or, where the namespace tracks connections, the destination unchanged.
    if (r.said!.originalDst!.startsWith('error')) expect(r.said!.originalDst).toMatch(/^error: SO_ORIGINAL_DST: .*errno 2/);
    else expect(r.said!.originalDst).toBe(r.said!.local);
  });
});
