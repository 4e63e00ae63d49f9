/**
 * deploy/image/Dockerfile, without a container engine (none runs here; `make image` is for a
 * machine that has one). The file is parsed with `dockerfile-ast` (the parser of the Docker
 * language server) and read by a small interpreter of the instructions it uses (FROM … AS, ARG,
 * WORKDIR, COPY [--from], RUN, ENV, USER, ENTRYPOINT, CMD):
 * - what it promises: multi-stage, an official Node 20 slim base pinned by tag, production
 *   dependencies only, iptables and tini installed, a non-root numeric user, tini as PID 1;
 * - every path it copies exists (context paths in the repository, build-stage paths after
 *   `make build`), and .dockerignore hides none of them;
 * - the runtime stage's file system is assembled from exactly those COPY instructions in a temp
 *   folder — node_modules by running the deps stage's own `npm ci --omit=dev` there — and the
 *   entrypoint's commands run from it: `--help` of the CLI and of every subcommand, `--version`,
 *   and `crl show` on a real CRL.
 */
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DockerfileParser } from 'dockerfile-ast';
import { makePki, type Pki } from '../../support/pki';
import { repoRoot } from '../../support/root';

const ROOT = repoRoot();
const DOCKERFILE = path.join(ROOT, 'deploy', 'image', 'Dockerfile');

interface Copy {
  from: string | null;
  sources: string[];
  dest: string;
}
interface Stage {
  name: string | null;
  base: string;
  workdir: string;
  copies: Copy[];
  runs: string[];
  env: Record<string, string>;
  user: string | null;
  entrypoint: string[] | null;
  cmd: string[] | null;
}

/** Our interpreter: the instructions above, in order; anything else is an error (so it cannot silently skip one). */
function interpret(text: string): { args: Record<string, string>; stages: Stage[] } {
  const df = DockerfileParser.parse(text);
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  const expand = (s: string) => s.replace(/\$\{(\w+)\}|\$(\w+)/g, (_m, a: string, b: string) => args[a ?? b] ?? '');
  for (const ins of df.getInstructions()) {
    const kw = ins.getKeyword();
    const argv = ins.getArguments().map((a) => a.getValue());
    const stage = stages[stages.length - 1];
    const json = (): string[] => JSON.parse(ins.getRawArgumentsContent() ?? '') as string[];
    switch (kw) {
      case 'ARG': {
        const [k, v] = argv[0]!.split('=');
        if (!stage) args[k!] = v ?? '';
        break;
      }
      case 'FROM':
        stages.push({ name: argv[2] && argv[1]?.toUpperCase() === 'AS' ? argv[2] : null, base: expand(argv[0]!), workdir: '/', copies: [], runs: [], env: {}, user: null, entrypoint: null, cmd: null });
        break;
      case 'WORKDIR':
        stage!.workdir = path.posix.resolve(stage!.workdir, argv[0]!);
        break;
      case 'COPY': {
        // dockerfile-ast reports `--from=x` as a flag, not an argument.
        const flags = (ins as unknown as { getFlags(): { getName(): string; getValue(): string | null }[] }).getFlags();
        const rest = argv.filter((a) => !a.startsWith('--'));
        for (const f of flags) if (f.getName() !== 'from') throw new Error(`COPY flag not interpreted: --${f.getName()}`);
        const from = flags.find((f) => f.getName() === 'from')?.getValue() ?? null;
        stage!.copies.push({ from, sources: rest.slice(0, -1), dest: path.posix.resolve(stage!.workdir, rest[rest.length - 1]!) + (rest[rest.length - 1]!.endsWith('/') ? '/' : '') });
        break;
      }
      case 'RUN':
        stage!.runs.push(ins.getRawArgumentsContent() ?? '');
        break;
      case 'ENV': {
        const [k, v] = argv[0]!.split('=');
        stage!.env[k!] = v ?? argv[1] ?? '';
        break;
      }
      case 'USER':
        stage!.user = argv[0]!;
        break;
      case 'ENTRYPOINT':
        stage!.entrypoint = json();
        break;
      case 'CMD':
        stage!.cmd = json();
        break;
      default:
        throw new Error(`instruction not interpreted by the test: ${kw}`);
    }
  }
  return { args, stages };
}

const { args, stages } = interpret(fs.readFileSync(DOCKERFILE, 'utf8'));
const runtime = stages[stages.length - 1]!;
const stageNamed = (n: string) => stages.find((s) => s.name === n);

/** Where a COPY source is on this machine: the build context is the repository; the build stage is the repository after `make build`. */
function hostPath(c: Copy, src: string): string {
  if (c.from === null) return path.join(ROOT, src);
  const st = stageNamed(c.from);
  if (!st) throw new Error(`COPY --from=${c.from}: no such stage`);
  if (c.from === 'build') return path.join(ROOT, path.posix.relative(st.workdir, src));
  throw new Error(`no host path for stage ${c.from}`);
}

describe('deploy/image/Dockerfile', () => {
  test('parses, with three stages on one pinned official Node 20 slim image', () => {
    const problems = DockerfileParser.parse(fs.readFileSync(DOCKERFILE, 'utf8')).getInstructions().filter((i) => i.getKeyword() !== i.getKeyword().toUpperCase());
    expect(problems).toEqual([]);
    expect(stages.map((s) => s.name)).toEqual(['build', 'deps', null]);
    expect(args.NODE_IMAGE).toMatch(/^node:20\.\d+\.\d+-(bookworm|bullseye|trixie)-slim$/);
    for (const s of stages) expect(s.base).toBe(args.NODE_IMAGE);
    // The same Node release the tests run on.
    expect(args.NODE_IMAGE).toContain(`node:${process.versions.node}-`);
  });

  test('production dependencies only, iptables and tini, non-root, tini as PID 1', () => {
    expect(stageNamed('deps')!.runs.join('\n')).toMatch(/npm ci --omit=dev/);
    expect(runtime.copies.find((c) => c.sources.some((s) => s.endsWith('node_modules')))!.from).toBe('deps');
    expect(runtime.runs.join('\n')).toMatch(/apt-get install -y --no-install-recommends iptables tini/);
    expect(runtime.user).toMatch(/^[1-9]\d*:[1-9]\d*$/);
    expect(runtime.entrypoint).toEqual(['/usr/bin/tini', '--', 'node', '/app/dist/cmd/ca-proxy/main.js']);
    expect(runtime.env.NODE_ENV).toBe('production');
  });

  test('every path it copies exists after make build, and .dockerignore hides none from the context', () => {
    const ignored = fs.readFileSync(path.join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    for (const st of stages) {
      for (const c of st.copies) {
        if (c.from === 'deps') continue; // produced by the deps stage's RUN, assembled below
        for (const src of c.sources) {
          expect([src, fs.existsSync(hostPath(c, src))]).toEqual([src, true]);
          if (c.from === null) for (const pat of ignored) expect([src, pat, src === pat || src.startsWith(`${pat}/`)]).toEqual([src, pat, false]);
        }
      }
    }
  });
});

describe('the entrypoint from the image layout', () => {
  let root: string;
  let pki: Pki;
  const app = () => path.join(root, 'app');
  const ca = (...argv: string[]) => {
    const [node, ...rest] = runtime.entrypoint!.slice(2); // tini is PID 1 in the image; here the test runner is
    const entry = path.join(root, rest[0]!);
    return spawnSync(node!, [entry, ...argv], { cwd: app(), encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: root, ...runtime.env } });
  };

  beforeAll(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-image-'));
    // The deps stage, run for real: its COPYs, then its own RUN line (from the local npm cache when it can).
    const deps = stageNamed('deps')!;
    const depsDir = path.join(root, 'deps-stage');
    fs.mkdirSync(depsDir);
    for (const c of deps.copies) for (const src of c.sources) fs.copyFileSync(path.join(ROOT, src), path.join(depsDir, path.basename(src)));
    for (const run of deps.runs) execFileSync('sh', ['-c', run], { cwd: depsDir, stdio: 'pipe', timeout: 300_000, env: { ...process.env, npm_config_prefer_offline: 'true', npm_config_cache: path.join(os.homedir(), '.npm') } });
    // The runtime stage: exactly its COPY instructions.
    for (const c of runtime.copies) {
      for (const src of c.sources) {
        const from = c.from === 'deps' ? path.join(depsDir, path.posix.relative(deps.workdir, src)) : hostPath(c, src);
        const to = c.dest.endsWith('/') ? path.join(root, c.dest, path.basename(src)) : path.join(root, c.dest);
        fs.mkdirSync(path.dirname(to), { recursive: true });
        fs.cpSync(from, to, { recursive: true });
      }
    }
    pki = makePki({ keyType: 'ec' });
  }, 300_000);
  afterAll(() => {
    pki?.cleanup();
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  test('holds production dependencies only', () => {
    expect(fs.existsSync(path.join(app(), 'node_modules', 'prom-client'))).toBe(true);
    for (const dev of ['jest', 'typescript', '@aws-cdk/lambda-layer-kubectl-v34', 'kubernetes-models']) expect([dev, fs.existsSync(path.join(app(), 'node_modules', dev))]).toEqual([dev, false]);
    expect(fs.existsSync(path.join(app(), 'dist', 'test'))).toBe(false);
  });

  test('ca-proxy --help, --version and every subcommand --help run', () => {
    const top = ca('--help');
    expect([top.status, top.stderr]).toEqual([0, '']);
    const subcommands = [...top.stdout.matchAll(/^ {2}([a-z][a-z-]+)(?: \[options\]| <|\s)/gm)].map((m) => m[1]!).filter((s) => s !== 'help');
    expect(subcommands).toEqual(expect.arrayContaining(['run', 'serve-extproc', 'publish-crl', 'crl', 'check']));
    for (const sub of subcommands) {
      const r = ca(sub, '--help');
      expect([sub, r.status, r.stderr]).toEqual([sub, 0, '']);
      expect(r.stdout).toMatch(/^Usage: ca-proxy /);
    }
    const v = ca('--version');
    expect(v.stdout.trim()).toBe(JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version);
  });

  test('crl show reads a real CRL through the same code paths', () => {
    const crl = pki.crl('intermediate');
    const r = ca('crl', 'show', crl, '--ca', pki.intermediate.certPath, '--json');
    expect([r.status, r.stderr]).toEqual([0, '']);
    expect(r.stdout).toMatch(/"signature"/);
  });
});
