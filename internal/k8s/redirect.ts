/**
 * `ca-proxy redirect`: what the injected init container runs (DESIGN.md, "Kubernetes pieces").
 * In the current network namespace it installs nat OUTPUT rules in chains of its own
 * (redirect-plan.ts) that send the pod's outbound TCP on the selected ports to the sidecar's
 * listener, for IPv4 (iptables) and IPv6 (ip6tables), in the nft or legacy backend
 * (redirect-iptables.ts).
 *
 * Guarantees:
 * - all or nothing: each family's table is changed by one `iptables-restore --noflush`
 *   transaction; when a later step fails (the other family, the read-back, the probe), what this
 *   run wrote is rolled back to what was there before;
 * - idempotent: a table already holding exactly the planned rules is not written at all;
 * - in force: after writing, the rules are read back from the backend and compared with the
 *   plan, then a live probe (redirect-probe.ts) checks that the kernel really redirects. Any
 *   mismatch fails the command: a filter that is silently absent is the worst failure an
 *   egress control can have;
 * - `cleanup` removes exactly ours (the OUTPUT jump and our two chains), in every backend that
 *   holds them; `dryRun` prints the restore scripts and changes nothing.
 */
import fs from 'node:fs';
import { formatPorts, type RedirectOptions } from './redirect-options';
import { compareToPlan, parseNatSave, planNat, renderApply, renderCleanup, renderRollback, type Family, type NatState } from './redirect-plan';
import {
  chooseBackend,
  findTools,
  label,
  missingToolsMessage,
  readAll,
  RedirectError,
  runProgram,
  surveyBackend,
  writeNat,
  type Mode,
  type Runner,
  type Tools,
} from './redirect-iptables';
import { fmt, ipv6InUse, probeRedirect, type ProbeResult } from './redirect-probe';

export { RedirectError } from './redirect-iptables';

export interface RedirectDeps {
  run: Runner;
  /** PATH to search for the iptables binaries. */
  pathVar?: string;
  /** `/proc/net/if_inet6` of this namespace, or null when the kernel has no IPv6. */
  readIfInet6: () => string | null;
  probe: (o: RedirectOptions, family: Family) => Promise<ProbeResult>;
  /** Dry-run output (stdout). */
  print: (text: string) => void;
  /** Warnings (stderr). */
  warn: (line: string) => void;
}

export const defaultDeps = (): RedirectDeps => ({
  run: runProgram,
  readIfInet6: () => {
    try {
      return fs.readFileSync('/proc/net/if_inet6', 'utf8');
    } catch {
      return null;
    }
  },
  probe: (o, family) => probeRedirect(o, family),
  print: (t) => process.stdout.write(t),
  warn: (l) => process.stderr.write(`ca-proxy redirect: warning: ${l}\n`),
});

interface Target {
  mode: Mode;
  why: string;
  families: Family[];
}

function familiesFor(o: RedirectOptions, d: RedirectDeps): Family[] {
  const inet6 = d.readIfInet6();
  if (o.ipv6 === 'on') return [4, 6];
  if (o.ipv6 === 'off') {
    if (!o.cleanup && ipv6InUse(inet6)) d.warn('--ipv6 off while this pod has IPv6 addresses: its IPv6 connections are NOT redirected and bypass the filter');
    return [4];
  }
  // auto: install where IPv6 can carry traffic out; clean up wherever the kernel has IPv6 at all
  // (an earlier run may have been told --ipv6 on).
  return (o.cleanup ? inet6 !== null : ipv6InUse(inet6)) ? [4, 6] : [4];
}

async function toolsFor(mode: Mode, family: Family, d: RedirectDeps): Promise<Tools> {
  const t = await findTools(mode, family, d.run, d.pathVar);
  if (!t) throw new RedirectError(missingToolsMessage(mode, family));
  return t;
}

async function chooseTarget(o: RedirectOptions, families: Family[], d: RedirectDeps): Promise<Target> {
  if (o.iptablesMode !== 'auto') return { mode: o.iptablesMode, why: 'forced by --iptables-mode', families };
  const [nft, legacy] = [await surveyBackend('nft', families, d.run, d.pathVar), await surveyBackend('legacy', families, d.run, d.pathVar)];
  const chosen = chooseBackend(nft, legacy);
  if (!chosen) {
    const unreadable = [nft, legacy].filter((s) => s.installed && s.unreadable).map((s) => `${s.mode}: ${s.unreadable}`);
    if (unreadable.length) throw new RedirectError(`no usable iptables backend: ${unreadable.join('; ')}`);
    throw new RedirectError(missingToolsMessage('any', 4));
  }
  return { ...chosen, families };
}

interface Written {
  tools: Tools;
  before: NatState;
}

async function rollback(written: Written[], d: RedirectDeps): Promise<string> {
  const notes: string[] = [];
  for (const w of written.reverse()) {
    try {
      const now = parseNatSave(await readAll(w.tools, d.run));
      const script = renderRollback(w.before, now);
      if (script) await writeNat(w.tools, script, d.run);
      notes.push(`${label(w.tools)} rolled back`);
    } catch (e) {
      notes.push(`${label(w.tools)} NOT rolled back: ${(e as Error).message}`);
    }
  }
  return notes.length ? ` (${notes.join('; ')})` : '';
}

function describe(o: RedirectOptions, families: Family[]): string {
  const except = ['loopback', ...o.excludeCidrs.filter((c) => families.includes(c.family)).map((c) => `${c.address}/${c.prefix}`)];
  if (o.excludePorts.length) except.push(`ports ${formatPorts(o.excludePorts)}`);
  const fam = families.length === 2 ? 'IPv4 and IPv6' : 'IPv4 only';
  return `TCP to ${o.ports === '*' ? 'every port' : `ports ${formatPorts(o.ports)}`} → proxy port ${o.proxyPort}, ${fam}, uid ${o.proxyUid} exempt; not redirected: ${except.join(', ')}`;
}

function probeText(family: Family, p: ProbeResult): string {
  if (p.status === 'redirected') return `IPv${family} redirected (${fmt(p.target)})`;
  if (p.status === 'skipped') return `IPv${family} not probed: ${p.reason}`;
  return `IPv${family} FAILED: ${p.reason}`;
}

/** Install (or, with `o.cleanup`, remove) the rules. Returns the one-line summary. @throws RedirectError */
export async function runRedirect(o: RedirectOptions, d: RedirectDeps = defaultDeps()): Promise<string> {
  const families = familiesFor(o, d);
  if (o.dryRun) return dryRun(o, families, d);
  if (o.cleanup) return cleanup(o, families, d);

  const target = await chooseTarget(o, families, d);
  const tools = await Promise.all(families.map((f) => toolsFor(target.mode, f, d)));
  const written: Written[] = [];
  const plans = tools.map((t) => planNat(o, t.family));
  try {
    for (const [i, t] of tools.entries()) {
      const before = parseNatSave(await readAll(t, d.run));
      if (compareToPlan(plans[i], before).length === 0) continue;
      await writeNat(t, renderApply(plans[i], before), d.run);
      written.push({ tools: t, before });
    }
    for (const [i, t] of tools.entries()) {
      const problems = compareToPlan(plans[i], parseNatSave(await readAll(t, d.run)));
      if (problems.length) throw new RedirectError(`the ${label(t)} rules read back are not the rules written: ${problems.join('; ')}`);
    }
  } catch (e) {
    throw new RedirectError(`${(e as Error).message}${await rollback(written, d)}`);
  }
  const probes: string[] = [];
  for (const f of families) {
    const p = await d.probe(o, f);
    if (p.status === 'failed') {
      throw new RedirectError(
        `the ${target.mode} rules are in the table but the kernel does not apply them: IPv${f} probe: ${p.reason}. ` +
          `Another backend's nat rules may act first (compare iptables-nft-save and iptables-legacy-save), or try --iptables-mode ${target.mode === 'nft' ? 'legacy' : 'nft'}${await rollback(written, d)}`,
      );
    }
    probes.push(probeText(f, p));
  }
  const stale = await removeStaleCopies(target.mode, families, d);
  const state = written.length ? 'installed' : 'already in force (unchanged)';
  return `ca-proxy redirect: ${state} in ${target.mode} (${target.why}): ${describe(o, families)}; probe: ${probes.join(', ')}${stale}`;
}

/** Ours in the other backend too (an earlier run forced there) would act beside these: remove them. */
async function removeStaleCopies(mode: Mode, families: Family[], d: RedirectDeps): Promise<string> {
  const other: Mode = mode === 'nft' ? 'legacy' : 'nft';
  const removed: string[] = [];
  for (const f of families) {
    const t = await findTools(other, f, d.run, d.pathVar);
    if (!t) continue;
    let state: NatState;
    try {
      state = parseNatSave(await readAll(t, d.run));
    } catch {
      continue; // that backend is unusable here, so it holds nothing that acts
    }
    const script = renderCleanup(state);
    if (!script) continue;
    await writeNat(t, script, d.run);
    removed.push(label(t));
  }
  return removed.length ? `; removed an older copy of our rules from ${removed.join(', ')}` : '';
}

async function cleanup(o: RedirectOptions, families: Family[], d: RedirectDeps): Promise<string> {
  const modes: Mode[] = o.iptablesMode === 'auto' ? ['nft', 'legacy'] : [o.iptablesMode];
  const removed: string[] = [];
  let installed = 0;
  for (const mode of modes) {
    for (const f of families) {
      const t = await findTools(mode, f, d.run, d.pathVar);
      if (!t) {
        if (o.iptablesMode !== 'auto') throw new RedirectError(missingToolsMessage(mode, f));
        continue;
      }
      installed++;
      let state: NatState;
      try {
        state = parseNatSave(await readAll(t, d.run));
      } catch (e) {
        // auto: a backend or family the kernel lacks holds nothing of ours; no permission is fatal.
        if (o.iptablesMode !== 'auto' || /CAP_NET_ADMIN/.test((e as Error).message)) throw e;
        continue;
      }
      const script = renderCleanup(state);
      if (!script) continue;
      await writeNat(t, script, d.run);
      const left = parseNatSave(await readAll(t, d.run));
      if (renderCleanup(left)) throw new RedirectError(`${label(t)}: ca-proxy rules are still present after removal`);
      removed.push(label(t));
    }
  }
  if (installed === 0) throw new RedirectError(missingToolsMessage('any', 4));
  return removed.length ? `ca-proxy redirect: removed ca-proxy's chains and jump from ${removed.join(', ')}` : 'ca-proxy redirect: no ca-proxy rules found; nothing removed';
}

async function dryRun(o: RedirectOptions, families: Family[], d: RedirectDeps): Promise<string> {
  let target: Target;
  let note = '';
  try {
    target = o.cleanup && o.iptablesMode === 'auto' ? { mode: 'nft', why: 'auto', families } : await chooseTarget(o, families, d);
  } catch (e) {
    target = { mode: o.iptablesMode === 'legacy' ? 'legacy' : 'nft', why: 'assumed', families };
    note = ` (${(e as Error).message})`;
  }
  const modes: Mode[] = o.cleanup && o.iptablesMode === 'auto' ? ['nft', 'legacy'] : [target.mode];
  const out: string[] = [`# ca-proxy redirect --dry-run${o.cleanup ? ' --cleanup' : ''}: nothing is changed. Backend: ${o.cleanup && o.iptablesMode === 'auto' ? 'every backend holding ours' : `${target.mode} (${target.why})`}${note}`];
  for (const mode of modes) {
    for (const f of families) {
      const bin = `${f === 4 ? 'iptables' : 'ip6tables'}-${mode}-restore`;
      let state: NatState = parseNatSave('');
      let read = true;
      try {
        const t = await findTools(mode, f, d.run, d.pathVar);
        if (!t) throw new RedirectError(missingToolsMessage(mode, f));
        state = parseNatSave(await readAll(t, d.run));
      } catch (e) {
        read = false;
        if (!o.cleanup) out.push(`# IPv${f}: the current ${mode} rules cannot be read (${(e as Error).message}); shown as written into an empty table`);
        else out.push(`# IPv${f} ${mode}: cannot be read (${(e as Error).message})`);
      }
      if (o.cleanup) {
        const script = read ? renderCleanup(state) : null;
        if (script) out.push(`# IPv${f} ${mode}: ${bin} --noflush <<'EOF'`, script.trimEnd(), 'EOF');
        else if (read) out.push(`# IPv${f} ${mode}: no ca-proxy rules; nothing would be removed`);
        continue;
      }
      const plan = planNat(o, f);
      if (read && compareToPlan(plan, state).length === 0) {
        out.push(`# IPv${f} ${mode}: already in force; nothing would be written`);
        continue;
      }
      out.push(`# IPv${f} ${mode}: ${bin} --noflush <<'EOF'`, renderApply(plan, state).trimEnd(), 'EOF');
    }
  }
  d.print(out.join('\n') + '\n');
  return o.cleanup ? 'ca-proxy redirect: dry run, nothing removed' : `ca-proxy redirect: dry run, nothing installed: ${describe(o, families)}`;
}
