/**
 * The smallest run of `make bench`'s pieces (bench/run.ts, bench/compare/), so the harness cannot
 * rot between benchmark runs: the C load generator builds and completes 20 full handshakes through
 * every contender (HAProxy, nginx, stunnel, ca-proxy, ca-proxy's ext_proc service behind the Envoy
 * stand-in, HAProxy as a TCP relay, inspect) against the real upstreams (`openssl s_server -Verify 1`,
 * tlsbench server); the proxies' CPU and memory are read from /proc; transfers, held connections,
 * the CRL scale piece and the report with its chart run once at toy sizes. No timing is asserted.
 *
 * Needs Debian packages (gcc + libssl-dev for the load generator; haproxy, nginx +
 * libnginx-mod-stream, stunnel4, gnuplot-nox for the contenders and charts): with `CI` set a
 * missing one fails the test, otherwise that part is skipped with the reason printed.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, test } from '@jest/globals';
import { NEEDS, startContender, type ContenderName } from '../../bench/compare/contenders';
import { writeChart } from '../../bench/compare/chart';
import { runCrlScale } from '../../bench/compare/crl-scale';
import { handshakeRound, measureRounds, type ScenarioResult } from '../../bench/compare/measure';
import { TOOLS, type Tool } from '../../bench/compare/packages';
import { makeBenchPki, SNI, type BenchPki } from '../../bench/compare/pki';
import { stopAll } from '../../bench/compare/processes';
import { cpuSeconds, treeMemory } from '../../bench/compare/procstat';
import { scenarioSection, targetChecks } from '../../bench/compare/report';
import { buildTlsbench, bulk, handshakes, hold } from '../../bench/compare/tlsbench';
import { startFastUpstream, startSServer, type RunningUpstream } from '../../bench/compare/upstreams';
import { note } from '../support/note';

const missing = (name: Tool['name']): string | null => {
  const t = TOOLS.find((x) => x.name === name)!;
  return t.present() ? null : `${name} is not installed (apt-get install ${t.packages.join(' ')})`;
};

/** Runs `body` when `tool` is there; otherwise fails under CI and skips (printing why) elsewhere. */
function needing(tool: Tool['name'] | undefined, name: string, body: () => Promise<void>, ms = 120_000): void {
  const why = tool ? missing(tool) : null;
  if (!why) return void test(name, body, ms);
  if (process.env.CI) return void test(`${name} (CI: ${tool} required)`, () => assert.fail(`CI is set and ${why}`));
  process.stderr.write(`skipping "${name}": ${why}\n`);
  test.skip(`${name} — skipped: ${why}`, () => undefined);
}

const ccMissing = missing('cc');
if (ccMissing) {
  needing('cc', 'bench harness: the load generator builds', async () => undefined);
} else {
  describe('bench harness (make bench, smallest configuration)', () => {
    let pki: BenchPki;
    let dir: string;
    let sServer: RunningUpstream;
    let fast12: RunningUpstream;

    beforeAll(async () => {
      buildTlsbench();
      pki = makeBenchPki();
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-harness-'));
      sServer = await startSServer(pki, dir);
      fast12 = await startFastUpstream(pki, { tls: '1.2' });
    }, 60_000);

    afterAll(async () => {
      await stopAll();
      pki?.cleanup();
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    const split: ContenderName[] = ['direct', 'haproxy', 'nginx', 'stunnel', 'ca-proxy', 'ca-proxy-extproc'];
    for (const name of split) {
      needing(NEEDS[name], `20 full handshakes through ${name} to openssl s_server -Verify 1`, async () => {
        const c = await startContender(name, { pki, upstream: sServer, dir });
        try {
          const r = await handshakes(c.target, SNI, 20);
          assert.equal(r.errors, 0, r.firstError);
          assert.equal(r.ok, 20);
          assert.equal(r.latMs.length, 20);
          assert.equal(r.protocol, 'TLSv1.3');
          if (c.pids.length) {
            const cpu = cpuSeconds(c.pids);
            assert.ok(Number.isFinite(cpu) && cpu >= 0, `CPU of ${name}: ${cpu}`);
            assert.ok(treeMemory(c.pids).rssBytes > 0, `RSS of ${name}`);
          }
        } finally {
          await c.stop();
        }
      });
    }

    const endToEnd: ContenderName[] = ['tcp-relay-haproxy', 'ca-proxy-inspect'];
    for (const name of endToEnd) {
      needing(NEEDS[name], `20 handshakes and a transfer end to end through ${name} (TLS 1.2)`, async () => {
        const c = await startContender(name, { pki, upstream: fast12, dir });
        try {
          const r = await handshakes(c.target, SNI, 20);
          assert.equal(r.errors, 0, r.firstError);
          assert.equal(r.ok, 20);
          assert.equal(r.protocol, 'TLSv1.2');
          const b = await bulk(c.target, SNI, 2 ** 20, 2);
          assert.equal(b.errors, 0, b.firstError);
          assert.equal(b.ok, 2);
        } finally {
          await c.stop();
        }
      });
    }

    test('a wrong trust anchor is a counted handshake failure, not a success', async () => {
      const r = await handshakes({ port: sServer.port, ca: pki.interceptionCa, cert: pki.identityCert, key: pki.identityKey }, SNI, 2);
      assert.equal(r.ok, 0);
      assert.equal(r.errors, 2);
      assert.match(r.firstError, /certificate verify failed/);
    });

    test('ca-proxy: rounds, parallel transfers and held connections, measured from /proc', async () => {
      const fast = await startFastUpstream(pki);
      const c = await startContender('ca-proxy', { pki, upstream: fast, dir });
      try {
        const rows = await measureRounds({ contenders: [c], rounds: 2, tag: 'smoke', log: () => undefined, warmup: (x) => handshakes(x.target, SNI, 2), once: (x) => handshakeRound(x, SNI, 5) });
        assert.equal(rows[0]!.errors, 0, rows[0]!.firstError);
        assert.equal(rows[0]!.values.rate!.length, 2);
        assert.ok(rows[0]!.values.cpuMs!.every((v) => Number.isFinite(v) && v >= 0));
        const b = await bulk(c.target, SNI, 2 ** 20, 4);
        assert.equal(b.errors, 0, b.firstError);
        assert.equal(b.ok, 4);
        const h = await hold(c.target, SNI, 5);
        assert.equal(h.ok, 5, h.firstError);
        await h.release();
      } finally {
        await c.stop();
        await fast.stop();
      }
    });

    test('CRL scale at a toy size, and the report with its chart', async () => {
      const crl = await runCrlScale({ pki, dir, sizes: [1000], runs: 1, reloadRate: 20, reloadSeconds: 1, log: () => undefined });
      const row = crl.rows.find((r) => r.name === '1000')!;
      assert.equal(row.errors, 0, row.firstError);
      assert.ok(Number.isFinite(row.values.reloadMs![0]!), `the CRL reload was seen: ${crl.notes.join(' ')}`);
      assert.ok(row.values.loadMs!.length === 1 && row.values.lookupHitUs!.length === 1);
      note(`bench harness smoke: 1,000-entry CRL reload under traffic seen after ${row.values.reloadMs![0]!.toFixed(0)} ms`);

      const section = scenarioSection(crl);
      assert.match(section, /<!-- bench:crl-scale:begin -->[\s\S]*\| 1,000 entries \|[\s\S]*<!-- bench:crl-scale:end -->/);
      const mem: ScenarioResult = { id: 'memory', title: 'm', setup: '', metrics: [], rows: [{ name: 'ca-proxy', label: 'ca-proxy', values: { idleMB: [100], perConnKB: [40] }, errors: 0 }], refs: [], notes: [] };
      const checks = targetChecks(new Map([['memory', mem]]));
      assert.equal(checks.find((c) => /idle RSS/.test(c.target))?.ok, false);
      assert.equal(checks.find((c) => /held intercepted/.test(c.target))?.ok, true);
      if (!missing('gnuplot')) {
        const png = path.join(dir, 'crl-scale.png');
        assert.equal(writeChart(crl, png, dir), null);
        assert.deepEqual([...fs.readFileSync(png).subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
      } else if (process.env.CI) {
        assert.fail(`CI is set and ${missing('gnuplot')}`);
      }
    }, 180_000);
  });
}
