/**
 * `ca-proxy redirect [flags]`: install (or `--cleanup` remove) the nat OUTPUT rules that send the
 * pod's outbound TCP to the Envoy sidecar (internal/k8s/redirect.ts; docs/kubernetes.md, "Traffic
 * redirect"). Prints one summary line on stdout; errors on stderr with exit code 1: bad flag
 * values, iptables missing, no CAP_NET_ADMIN, rules not in force after applying.
 */
import { parseRedirectFlags, RedirectUsageError, type RedirectFlags } from '../../internal/k8s/redirect-options';
import { runRedirect, RedirectError } from '../../internal/k8s/redirect';

export async function redirectCommand(flags: RedirectFlags): Promise<void> {
  // `ca-proxy redirect --dry-run | head`: a reader that goes away is not a crash; the exit code still says what happened.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
  });
  try {
    const summary = await runRedirect(parseRedirectFlags(flags));
    process.stdout.write(`${summary}\n`);
  } catch (e) {
    if (!(e instanceof RedirectUsageError) && !(e instanceof RedirectError)) throw e;
    process.stderr.write(`ca-proxy redirect: ${e.message}\n`);
    process.exitCode = 1;
  }
}
