/**
 * What kubelet does to a container's command and args before it starts it, for tests (no kubelet
 * runs on the project's machines): the environment from `env` (value, or a Downward API fieldRef
 * resolved against the Pod), then `$(VAR)` expansion of every arg.
 *
 * `expand` is a line-by-line port of Kubernetes' own
 * third_party/forked/golang/expansion/expand.go (`Expand` and `tryReadVariableName`), which
 * kubelet applies to command and args (pkg/kubelet/kubecontainer ExpandContainerCommandAndArgs):
 * `$$` is a literal `$`; `$(NAME)` becomes the variable's value when NAME is defined, and stays as
 * written when it is not; any other `$x` is kept.
 */
import type { V1Container, V1Pod } from '@kubernetes/client-node';

/** Kubernetes' `expansion.Expand` with `mapping` (returns undefined for an undefined variable). */
export function expand(input: string, mapping: (name: string) => string | undefined): string {
  let buf = '';
  let checkpoint = 0;
  for (let cursor = 0; cursor < input.length; cursor++) {
    if (input[cursor] === '$' && cursor + 1 < input.length) {
      buf += input.slice(checkpoint, cursor);
      const [read, isVar, advance] = tryReadVariableName(input.slice(cursor + 1));
      if (isVar) {
        const v = mapping(read);
        buf += v === undefined ? `$(${read})` : v;
      } else {
        buf += read;
      }
      cursor += advance;
      checkpoint = cursor + 1;
    }
  }
  return buf + input.slice(checkpoint);
}

function tryReadVariableName(input: string): [string, boolean, number] {
  switch (input[0]) {
    case '$':
      return [input.slice(0, 1), false, 1];
    case '(':
      for (let i = 1; i < input.length; i++) if (input[i] === ')') return [input.slice(1, i), true, i + 1];
      return ['$(', false, 1];
    default:
      return [`$${input[0]}`, false, 1];
  }
}

/**
 * The container's environment as kubelet builds it from `env` (envFrom is not modelled): literal
 * values (themselves expanded against earlier entries) and Downward API fieldRefs for
 * metadata.name, metadata.namespace, spec.serviceAccountName, metadata.annotations['k'] and
 * metadata.labels['k']. `pod` is the Pod as stored (name and namespace assigned).
 */
export function containerEnv(container: V1Container, pod: V1Pod): Map<string, string> {
  const env = new Map<string, string>();
  for (const e of container.env ?? []) {
    if (e.value !== undefined) env.set(e.name, expand(e.value, (n) => env.get(n)));
    else if (e.valueFrom?.fieldRef) env.set(e.name, fieldValue(pod, e.valueFrom.fieldRef.fieldPath));
    else throw new Error(`kubelet stand-in: env ${e.name} uses a source this harness does not model`);
  }
  return env;
}

/** The Downward API value of `fieldPath` (the subset of pkg/fieldpath ExtractFieldPathAsString the injector uses). */
export function fieldValue(pod: V1Pod, fieldPath: string): string {
  const m = /^metadata\.(annotations|labels)\['(.+)'\]$/.exec(fieldPath);
  if (m) return (pod.metadata?.[m[1] as 'annotations' | 'labels'] ?? {})[m[2]!] ?? '';
  switch (fieldPath) {
    case 'metadata.name':
      return pod.metadata?.name ?? '';
    case 'metadata.namespace':
      return pod.metadata?.namespace ?? '';
    case 'spec.serviceAccountName':
      return pod.spec?.serviceAccountName ?? '';
    default:
      throw new Error(`kubelet stand-in: fieldPath ${fieldPath} not modelled`);
  }
}

/** The args kubelet hands the container's process. */
export function expandedArgs(container: V1Container, pod: V1Pod): string[] {
  const env = containerEnv(container, pod);
  return (container.args ?? []).map((a) => expand(a, (n) => env.get(n)));
}
