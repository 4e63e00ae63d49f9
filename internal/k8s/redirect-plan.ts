/**
 * Rule planning for `ca-proxy redirect` (pure: text in, text out, no I/O).
 *
 * What is installed, per address family, in the nat table (iptables for IPv4, ip6tables for IPv6):
 *
 *   -I OUTPUT 1 -p tcp -j CA_PROXY_OUTPUT                       first, so no earlier nat rule skips it
 *   -A CA_PROXY_OUTPUT -m owner --uid-owner 1337 -j RETURN      the sidecar's own connections (no loop)
 *   -A CA_PROXY_OUTPUT -o lo -j RETURN                          loopback and the pod's own addresses
 *   -A CA_PROXY_OUTPUT -d 10.0.0.0/8 -j RETURN                  each --exclude-cidrs network
 *   -A CA_PROXY_OUTPUT -p tcp -m multiport --dports 22 -j RETURN          --exclude-ports
 *   -A CA_PROXY_OUTPUT -p tcp -m multiport --dports 443 -j CA_PROXY_REDIRECT   --ports (no match: * )
 *   -A CA_PROXY_REDIRECT -p tcp -j REDIRECT --to-ports 15001    to the sidecar on 127.0.0.1 / ::1
 *
 * The rule texts are written exactly as `iptables-save` prints them (both nft and legacy), so the
 * rules read back after applying compare as strings. Changes are rendered as one
 * `iptables-restore --noflush` script per table: the kernel applies it as one transaction (one
 * table replace for legacy, one netlink batch for nft) or not at all.
 */
import type { Cidr, PortRange, RedirectOptions } from './redirect-options';

export const OUTPUT_CHAIN = 'CA_PROXY_OUTPUT';
export const REDIRECT_CHAIN = 'CA_PROXY_REDIRECT';
export const OUR_CHAINS = [OUTPUT_CHAIN, REDIRECT_CHAIN] as const;

/** The jump from nat OUTPUT into our chain. */
export const JUMP = `-p tcp -j ${OUTPUT_CHAIN}`;

/** iptables' multiport match takes at most 15 ports per rule, a range counting as two. */
const MULTIPORT_MAX = 15;

export type Family = 4 | 6;

/** What we want in one family's nat table. */
export interface NatPlan {
  family: Family;
  /** Rule specs of each of our chains, in order, without the leading `-A CHAIN`. */
  chains: Record<(typeof OUR_CHAINS)[number], string[]>;
}

/** What one family's nat table holds of ours (parsed from `iptables-save -t nat`). */
export interface NatState {
  /** Whether the save output had a nat table at all. */
  tablePresent: boolean;
  /** Our chains that exist, with their rule specs (without `-A CHAIN`). */
  chains: Map<string, string[]>;
  /** Every rule spec of nat OUTPUT, in order (ours and others'). */
  output: string[];
  /** Rules outside our chains that jump into them, other than the OUTPUT jump (`-A CHAIN spec` lines). */
  foreignReferences: string[];
  /** The count of `-A` lines that are not ours (OUTPUT jump and our chains excluded). */
  foreignRuleCount: number;
}

function multiportChunks(ranges: PortRange[]): string[] {
  const chunks: string[] = [];
  let cur: string[] = [];
  let weight = 0;
  for (const r of ranges) {
    const w = r.from === r.to ? 1 : 2;
    if (weight + w > MULTIPORT_MAX) {
      chunks.push(cur.join(','));
      cur = [];
      weight = 0;
    }
    cur.push(r.from === r.to ? `${r.from}` : `${r.from}:${r.to}`);
    weight += w;
  }
  if (cur.length) chunks.push(cur.join(','));
  return chunks;
}

function cidrText(c: Cidr): string {
  return `${c.address}/${c.prefix}`;
}

/** The rules of one family (IPv4 CIDRs go to iptables, IPv6 CIDRs to ip6tables). */
export function planNat(o: RedirectOptions, family: Family): NatPlan {
  const out: string[] = [`-m owner --uid-owner ${o.proxyUid} -j RETURN`, '-o lo -j RETURN'];
  for (const c of o.excludeCidrs) if (c.family === family) out.push(`-d ${cidrText(c)} -j RETURN`);
  for (const ports of multiportChunks(o.excludePorts)) out.push(`-p tcp -m multiport --dports ${ports} -j RETURN`);
  if (o.ports === '*') out.push(`-j ${REDIRECT_CHAIN}`);
  else for (const ports of multiportChunks(o.ports)) out.push(`-p tcp -m multiport --dports ${ports} -j ${REDIRECT_CHAIN}`);
  return { family, chains: { [OUTPUT_CHAIN]: out, [REDIRECT_CHAIN]: [`-p tcp -j REDIRECT --to-ports ${o.proxyPort}`] } };
}

/** Collapse runs of whitespace: save output and our specs then compare as strings. */
function norm(spec: string): string {
  return spec.trim().split(/\s+/).join(' ');
}

function jumpsToOurs(spec: string): boolean {
  const m = /(?:^|\s)-[jg]\s+(\S+)/.exec(spec);
  return m !== null && (OUR_CHAINS as readonly string[]).includes(m[1]);
}

/** Parse the nat table of `iptables-save` (or `iptables-save -t nat`) output. */
export function parseNatSave(text: string): NatState {
  const state: NatState = { tablePresent: false, chains: new Map(), output: [], foreignReferences: [], foreignRuleCount: 0 };
  let inNat = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) {
      inNat = line === '*nat';
      if (inNat) state.tablePresent = true;
      continue;
    }
    if (!inNat) continue;
    if (line === 'COMMIT') {
      inNat = false;
      continue;
    }
    if (line.startsWith(':')) {
      const name = line.slice(1).split(/\s+/)[0];
      if ((OUR_CHAINS as readonly string[]).includes(name) && !state.chains.has(name)) state.chains.set(name, []);
      continue;
    }
    const m = /^-A\s+(\S+)\s*(.*)$/.exec(line);
    if (!m) continue;
    const [, chain, rest] = m;
    const spec = norm(rest);
    if ((OUR_CHAINS as readonly string[]).includes(chain)) {
      if (!state.chains.has(chain)) state.chains.set(chain, []);
      state.chains.get(chain)!.push(spec);
      continue;
    }
    if (chain === 'OUTPUT') state.output.push(spec);
    if (jumpsToOurs(spec)) {
      if (!(chain === 'OUTPUT' && spec === JUMP)) state.foreignReferences.push(`-A ${chain} ${spec}`);
      continue;
    }
    state.foreignRuleCount++;
  }
  return state;
}

/** Count the `-A` lines of any table in a save output that are not ours. */
export function foreignRules(saveText: string): number {
  let n = 0;
  let table = '';
  for (const raw of saveText.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) table = line.slice(1);
    const m = /^-A\s+(\S+)\s*(.*)$/.exec(line);
    if (!m) continue;
    if ((OUR_CHAINS as readonly string[]).includes(m[1])) continue;
    if (table === 'nat' && jumpsToOurs(m[2])) continue;
    n++;
  }
  return n;
}

/** Whether the state holds any of ours (a chain, or a jump into one). */
export function hasOurs(s: NatState): boolean {
  return s.chains.size > 0 || s.output.some(jumpsToOurs) || s.foreignReferences.length > 0;
}

/**
 * Whether `state` is exactly `plan`: both chains with exactly the planned rules, and nat OUTPUT
 * holding our jump once, as its first rule. Returns the differences (empty: in force).
 */
export function compareToPlan(plan: NatPlan, state: NatState): string[] {
  const problems: string[] = [];
  for (const chain of OUR_CHAINS) {
    const want = plan.chains[chain].map(norm);
    const have = state.chains.get(chain);
    if (!have) {
      problems.push(`chain ${chain} is missing`);
      continue;
    }
    if (have.length !== want.length || have.some((r, i) => r !== want[i])) {
      problems.push(`chain ${chain} holds [${have.join(' | ')}], expected [${want.join(' | ')}]`);
    }
  }
  const jumps = state.output.filter(jumpsToOurs);
  if (jumps.length !== 1 || jumps[0] !== JUMP) problems.push(`nat OUTPUT jumps into our chains ${jumps.length} times ([${jumps.join(' | ')}]), expected once: ${JUMP}`);
  else if (state.output[0] !== JUMP) problems.push(`our jump is rule ${state.output.indexOf(JUMP) + 1} of nat OUTPUT, expected rule 1 (an earlier nat rule could skip it)`);
  if (state.foreignReferences.length) problems.push(`other rules jump into our chains: ${state.foreignReferences.join(' | ')}`);
  return problems;
}

function deleteOurJumps(state: NatState): string[] {
  // Deleted by spec (not by number): if the table changed since it was read, the delete fails and
  // the whole transaction with it, instead of removing someone else's rule.
  return state.output.filter(jumpsToOurs).map((spec) => `-D OUTPUT ${spec}`);
}

/**
 * The `iptables-restore --noflush` script that turns `current` into `plan`: our chains are
 * declared (created, or flushed when they exist), our old jumps deleted, one jump inserted
 * first in OUTPUT, then our rules appended. Nothing else in the table is touched.
 */
export function renderApply(plan: NatPlan, current: NatState): string {
  const lines = ['*nat'];
  for (const chain of OUR_CHAINS) lines.push(`:${chain} - [0:0]`);
  lines.push(...deleteOurJumps(current));
  lines.push(`-I OUTPUT 1 ${JUMP}`);
  for (const chain of OUR_CHAINS) for (const spec of plan.chains[chain]) lines.push(`-A ${chain} ${spec}`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/**
 * The script that removes exactly ours from `current` (our jumps, then our chains); null when
 * there is nothing of ours. Rules of others that jump into our chains are not removed: the
 * transaction then fails (a chain still referenced cannot be deleted) and says so.
 */
export function renderCleanup(current: NatState): string | null {
  if (!hasOurs(current)) return null;
  const lines = ['*nat', ...deleteOurJumps(current)];
  for (const chain of OUR_CHAINS) if (current.chains.has(chain)) lines.push(`-F ${chain}`);
  for (const chain of OUR_CHAINS) if (current.chains.has(chain)) lines.push(`-X ${chain}`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/**
 * The script that puts ours back as they were in `before` (used to roll back when a later step
 * fails): `before`'s chains and jump, or nothing of ours when `before` had none.
 */
export function renderRollback(before: NatState, now: NatState): string | null {
  if (!hasOurs(before)) return renderCleanup(now);
  const lines = ['*nat'];
  for (const chain of OUR_CHAINS) lines.push(`:${chain} - [0:0]`);
  lines.push(...deleteOurJumps(now));
  before.output.forEach((spec, i) => {
    if (jumpsToOurs(spec)) lines.push(`-I OUTPUT ${Math.min(i + 1, countOthers(now) + 1)} ${spec}`);
  });
  for (const chain of OUR_CHAINS) for (const spec of before.chains.get(chain) ?? []) lines.push(`-A ${chain} ${spec}`);
  for (const chain of OUR_CHAINS) if (!before.chains.has(chain)) lines.push(`-X ${chain}`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

function countOthers(s: NatState): number {
  return s.output.filter((spec) => !jumpsToOurs(spec)).length;
}
