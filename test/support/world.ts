/**
 * A complete test world for the integration tests, built at test time with the `openssl` CLI:
 *
 *   root ─┬─ intermediate ─┬─ server "good"     (SAN localhost, 127.0.0.1)
 *         │                ├─ server "revoked"  (revoked by the intermediate's CRL)
 *         │                └─ (the intermediate itself can be revoked by the root's CRL)
 *   client-ca ─── proxy identity "upstream"     (what external servers must see)
 *   workload-ca ── workload certificate         (must never leave the proxy)
 *   interception CA                              (signs minted leaves; workloads trust it)
 *
 * `startProxy()` runs ca-proxy in-process through the same composition root as `ca-proxy run`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { spawn } from 'node:child_process';
import { makePki, type Pki, type LeafHandle } from './pki';
import { createRuntime, type Runtime } from '../../cmd/ca-proxy/runtime';
import { defaultConfig } from '../../internal/config/defaults';
import type { Config, Rule, RuleSettings } from '../../internal/config/types';
import type { Decision } from '../../internal/engine/decision';
import { createLogger } from '../../internal/metrics/report';

export interface World {
  pki: Pki;
  dir: string;
  good: LeafHandle;
  revoked: LeafHandle;
  /** Server leaf issued by the intermediate, for the revoked-intermediate case (same CA as good). */
  identity: LeafHandle;
  workload: LeafHandle;
  /** Server leaf under `intermediate-b`, which the root's CRL revokes (reason cACompromise). */
  underRevokedCa: LeafHandle;
  /** PEM chain file (intermediate) servers send after their leaf. */
  chainPath: string;
  /** The chain for `underRevokedCa` (intermediate-b). */
  chainBPath: string;
  interceptionCA: { certPath: string; keyPath: string };
  /** CRL files: the intermediate's (revokes `revoked`) and the root's (revokes nothing yet). */
  crlDir: string;
  cleanup(): void;
}

export function makeWorld(): World {
  const pki = makePki({ keyType: 'ec' });
  const dir = pki.dir;
  const good = pki.issueLeaf('good', { san: ['DNS:localhost', 'IP:127.0.0.1'] });
  const revoked = pki.issueLeaf('revoked', { san: ['DNS:localhost', 'IP:127.0.0.1'] });
  pki.addCa('client-ca');
  const identity = pki.issueLeaf('proxy-identity', { issuer: 'client-ca', clientAuth: true });
  pki.addCa('workload-ca');
  const workload = pki.issueLeaf('workload', { issuer: 'workload-ca', clientAuth: true, san: ['DNS:secret-workload.ns.svc'] });
  const interception = pki.addCa('interception');
  pki.revoke('intermediate', revoked.certPath, 'keyCompromise');
  // A second intermediate, revoked by the root, with a server leaf under it.
  const revokedCa = pki.addCa('intermediate-b', { issuer: 'root' });
  const underRevokedCa = pki.issueLeaf('under-revoked-ca', { issuer: 'intermediate-b', san: ['DNS:localhost', 'IP:127.0.0.1'] });
  pki.revoke('root', revokedCa.certPath, 'CACompromise');
  const crlDir = path.join(dir, 'crl-store');
  fs.mkdirSync(crlDir);
  fs.copyFileSync(pki.crl('intermediate', { nextUpdateDays: 7 }), path.join(crlDir, 'intermediate.crl'));
  fs.copyFileSync(pki.crl('root', { nextUpdateDays: 7 }), path.join(crlDir, 'root.crl'));
  return {
    pki,
    dir,
    good,
    revoked,
    identity,
    workload,
    underRevokedCa,
    chainPath: pki.intermediate.certPath,
    chainBPath: revokedCa.certPath,
    interceptionCA: { certPath: interception.certPath, keyPath: interception.keyPath },
    crlDir,
    cleanup: () => pki.cleanup(),
  };
}

/** A Config for the world: CONNECT listener on an ephemeral port, identity "upstream". */
export function worldConfig(w: World, over: { defaults?: Partial<RuleSettings>; rules?: Rule[]; crl?: boolean; sni?: boolean } = {}): Config {
  const base = defaultConfig();
  return {
    ...base,
    listen: { connect: '127.0.0.1:0', sni: over.sni ? '127.0.0.1:0' : null, sniUpstreamPort: 443 },
    admin: '127.0.0.1:0',
    interceptionCA: { cert: w.interceptionCA.certPath, key: w.interceptionCA.keyPath },
    trust: { caFiles: [w.pki.root.certPath], systemRoots: false },
    revocation: {
      ...base.revocation,
      crlPaths: over.crl === false ? [] : [w.crlDir],
      crlSigners: [w.pki.intermediate.certPath],
      watch: true,
    },
    // The test servers are on loopback, which the destination policy refuses by default.
    destinations: { allow: ['127.0.0.0/8', '::1/128'], deny: [] },
    identities: [{ name: 'upstream', cert: w.identity.certPath, key: w.identity.keyPath }],
    workloadCA: [w.pki.cas.get('workload-ca')!.certPath],
    limits: { ...base.limits, handshakeTimeoutMs: 5000 },
    defaults: { ...base.defaults, identity: 'upstream', ...over.defaults },
    rules: over.rules ?? [],
    log: { level: 'warn' },
  };
}

export interface RunningProxy {
  rt: Runtime;
  proxyUrl: string;
  adminUrl: string;
  decisions: Decision[];
  /** Log lines (JSON) the proxy wrote. */
  logs: string[];
  /** The next decision not yet returned by this method. */
  nextDecision(ms?: number): Promise<Decision>;
  /** Marks every decision so far as seen (after a burst the test does not inspect one by one). */
  skipDecisions(): void;
  stop(): Promise<void>;
}

export async function startProxy(config: Config): Promise<RunningProxy> {
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  const rt = await createRuntime(config, { logger: createLogger('info', sink) });
  const decisions: Decision[] = [];
  let waiting: ((d: Decision) => void)[] = [];
  let consumed = 0;
  rt.onDecision((d) => {
    decisions.push(d);
    const w = waiting;
    waiting = [];
    w.forEach((f) => f(d));
  });
  const nextDecision = (ms = 8000) =>
    new Promise<Decision>((resolve, reject) => {
      if (decisions.length > consumed) return resolve(decisions[consumed++]!);
      const t = setTimeout(() => reject(new Error(`no decision within ${ms} ms`)), ms);
      waiting.push(() => {
        clearTimeout(t);
        resolve(decisions[consumed++]!);
      });
    });
  return {
    rt,
    proxyUrl: `http://127.0.0.1:${rt.connect!.address.port}`,
    adminUrl: `http://127.0.0.1:${rt.admin!.address.port}`,
    decisions,
    logs,
    nextDecision,
    skipDecisions: () => {
      consumed = decisions.length;
    },
    stop: () => rt.close(),
  };
}

export interface CmdResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command (curl, openssl s_client) without a shell; resolves on exit (kills after `ms`). */
export function runCmd(cmd: string, args: string[], opts: { input?: string; ms?: number } = {}): Promise<CmdResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => child.kill('SIGKILL'), opts.ms ?? 15000);
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on('error', () => undefined);
    if (opts.input !== undefined) child.stdin.write(opts.input);
    child.stdin.end();
  });
}

/** curl through the proxy to https://localhost:PORT/, trusting the interception CA. */
export function curlVia(p: RunningProxy, w: World, port: number, extra: string[] = []): Promise<CmdResult> {
  return runCmd('curl', ['-sS', '--max-time', '10', '--proxy', p.proxyUrl, '--cacert', w.interceptionCA.certPath, ...extra, `https://localhost:${port}/`]);
}
