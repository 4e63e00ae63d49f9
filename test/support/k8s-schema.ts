/**
 * Validates rendered Kubernetes objects against the schemas of their apiVersion and kind, strictly.
 *
 * Two checks, both generated from the same OpenAPI schemas (Kubernetes' own for `kubernetes-models`
 * 4.5 — the Kubernetes 1.33 API —, the Prometheus Operator's and cert-manager's CRDs for
 * `@kubernetes-models/prometheus-operator` and `@kubernetes-models/cert-manager`):
 *
 * 1. `new Model(obj).validate()`: the models' compiled ajv validators — types, required fields,
 *    enums, formats (int32, int-or-string, …). They do **not** reject unknown fields (the OpenAPI
 *    schemas leave `additionalProperties` open, as the API server's non-strict decoding does).
 * 2. Unknown fields, as `kubectl apply --validate=strict` would reject them: the objects are written
 *    as object literals typed with the models' TypeScript interfaces (`IDeployment`, …) and
 *    type-checked with the TypeScript compiler; its excess-property check refuses any field the
 *    schema does not declare, at every depth, and its type check any wrong type the first check let
 *    through (e.g. `null` where a string is required).
 *
 * An apiVersion/kind with no model is an error too: nothing passes unchecked.
 */
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { repoRoot } from './root';

interface ModelRef {
  /** Module specifier of the model, e.g. `kubernetes-models/apps/v1/Deployment`. */
  module: string;
  kind: string;
}

/** Where each API group's models live. */
function modelFor(apiVersion: string, kind: string): ModelRef | null {
  if (!/^[A-Za-z0-9]+$/.test(kind)) return null;
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  if (!version || !/^v[0-9a-z]+$/.test(version)) return null;
  let base: string;
  if (group === '') base = `kubernetes-models/${version}`;
  else if (group === 'monitoring.coreos.com') base = `@kubernetes-models/prometheus-operator/${group}/${version}`;
  else if (group === 'cert-manager.io') base = `@kubernetes-models/cert-manager/${group}/${version}`;
  else if (/^[a-z0-9.]+$/.test(group)) base = `kubernetes-models/${group}/${version}`;
  else return null;
  const module = `${base}/${kind}`;
  try {
    require.resolve(module, { paths: [repoRoot()] });
  } catch {
    return null;
  }
  return { module, kind };
}

/** One object to check, with a label for messages (e.g. "Deployment ca-proxy/ca-proxy-processor"). */
export interface Checked {
  label: string;
  object: { apiVersion?: unknown; kind?: unknown; [k: string]: unknown };
}

/**
 * All problems of `objects`, as readable lines (`Deployment x: spec.template…: …`); empty when
 * every object is valid.
 */
export function schemaProblems(objects: Checked[]): string[] {
  const problems: string[] = [];
  const typed: { ref: ModelRef; item: Checked }[] = [];
  for (const item of objects) {
    const { apiVersion, kind } = item.object;
    if (typeof apiVersion !== 'string' || typeof kind !== 'string') {
      problems.push(`${item.label}: no apiVersion/kind`);
      continue;
    }
    const ref = modelFor(apiVersion, kind);
    if (!ref) {
      problems.push(`${item.label}: no schema for ${apiVersion} ${kind}`);
      continue;
    }
    // 1. The models' own validators (types, required, enums, formats).
    const mod = require(require.resolve(ref.module, { paths: [repoRoot()] })) as Record<string, new (d: unknown) => { validate(): void }>;
    const Model = mod[ref.kind];
    if (typeof Model !== 'function') {
      problems.push(`${item.label}: ${ref.module} exports no ${ref.kind}`);
      continue;
    }
    try {
      new Model(item.object).validate();
    } catch (err) {
      problems.push(`${item.label}: ${(err as Error).message}`);
    }
    typed.push({ ref, item });
  }
  problems.push(...unknownFieldProblems(typed));
  return problems;
}

/** Check 2: one TypeScript program over every object, as typed object literals. */
function unknownFieldProblems(typed: { ref: ModelRef; item: Checked }[]): string[] {
  if (typed.length === 0) return [];
  // Inside the repository, so that module resolution finds node_modules/kubernetes-models & co.
  const dir = fs.mkdtempSync(path.join(repoRoot(), 'node_modules', '.cache-k8s-schema-'));
  try {
    const lines: string[] = [];
    const spans: { from: number; to: number; label: string }[] = [];
    typed.forEach(({ ref }, i) => lines.push(`import type { I${ref.kind} as T${i} } from ${JSON.stringify(ref.module)};`));
    typed.forEach(({ item }, i) => {
      const from = lines.length + 1;
      const body = JSON.stringify(item.object, null, 1).split('\n');
      lines.push(`export const o${i}: T${i} = ${body[0]}`, ...body.slice(1));
      lines[lines.length - 1] += ';';
      spans.push({ from, to: lines.length, label: item.label });
    });
    const file = path.join(dir, 'objects.ts');
    fs.writeFileSync(file, lines.join('\n') + '\n');
    const program = ts.createProgram([file], {
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      types: [],
      module: ts.ModuleKind.CommonJS,
      moduleResolution: ts.ModuleResolutionKind.Node10,
      target: ts.ScriptTarget.ES2022,
      lib: ['lib.es2022.d.ts'],
    });
    const out: string[] = [];
    for (const d of ts.getPreEmitDiagnostics(program)) {
      const message = ts.flattenDiagnosticMessageText(d.messageText, '\n');
      if (!d.file || d.start === undefined) {
        out.push(message);
        continue;
      }
      const line = d.file.getLineAndCharacterOfPosition(d.start).line + 1;
      const span = spans.find((s) => line >= s.from && line <= s.to);
      out.push(`${span?.label ?? 'objects.ts'}: ${lines[line - 1]!.trim()} — ${message.split('\n').slice(-1)[0]}`);
    }
    return out;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** `Kind namespace/name` for messages. */
export function labelOf(o: { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown } }): string {
  const ns = typeof o.metadata?.namespace === 'string' ? `${o.metadata.namespace}/` : '';
  return `${String(o.kind)} ${ns}${String(o.metadata?.name)}`;
}
