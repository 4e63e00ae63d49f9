/**
 * Per-destination policy: which rule applies to a connection, and the settings that follow
 * (the rule's fields over `defaults`, field by field).
 *
 * Rules are tried in order and the first match wins. A rule's `match.sni` is a glob on DNS
 * labels: `*` matches exactly one label, `**` one or more labels, any other label matches
 * itself; comparison is ASCII case-insensitive (SNI host names are A-labels, RFC 6066 §3) and
 * a trailing dot on either side is ignored. `match.port` is the destination port and
 * `match.cidr` the address that is dialled (DESIGN.md "Egress policy"). A rule with several
 * match fields needs all of them.
 */
import type { Config, Rule, RuleSettings } from '../config/types';
import { CidrSet } from '../config/cidr';

/** Name reported for connections no rule matched (`Decision.rule`). */
export const DEFAULT_RULE_NAME = 'default';

export interface Destination {
  /** The host name: server_name from the ClientHello, or the name the front door dials when there is none; null/undefined when neither. */
  sni?: string | null;
  /** Destination TCP port. */
  port?: number | null;
  /** The address that is dialled (an IP literal), once known. */
  address?: string | null;
}

export interface MatchedRule {
  /** The rule's `name`, `rules[i]` for an unnamed rule, or `default`. */
  name: string;
  settings: RuleSettings;
}

/** The first rule of `config.rules` matching `dest`, merged over `config.defaults`; else the defaults. */
export function matchRule(config: Pick<Config, 'rules' | 'defaults'>, dest: Destination): MatchedRule {
  for (let i = 0; i < config.rules.length; i++) {
    const rule = config.rules[i];
    if (ruleMatches(rule, dest)) {
      return { name: rule.name ?? `rules[${i}]`, settings: settingsOf(rule, config.defaults) };
    }
  }
  return { name: DEFAULT_RULE_NAME, settings: { ...config.defaults } };
}

/** Compiled `match.cidr` sets, per rule object (rules are immutable once loaded). */
const cidrSets = new WeakMap<Rule, CidrSet>();

function ruleMatches(rule: Rule, dest: Destination): boolean {
  const { sni, port, cidr } = rule.match;
  // A match with no field is rejected by the schema; never let it match everything.
  if (sni === undefined && port === undefined && cidr === undefined) return false;
  if (port !== undefined && dest.port !== port) return false;
  if (sni !== undefined && (dest.sni === null || dest.sni === undefined || !sniGlobMatches(sni, dest.sni))) return false;
  if (cidr !== undefined) {
    let set = cidrSets.get(rule);
    if (!set) cidrSets.set(rule, (set = new CidrSet(cidr, 'match.cidr')));
    if (!dest.address || !set.has(dest.address)) return false;
  }
  return true;
}

function settingsOf(rule: Rule, defaults: RuleSettings): RuleSettings {
  // `identity: null` in a rule is a value (present no identity), so test for undefined only.
  return {
    action: rule.action ?? defaults.action,
    identity: rule.identity !== undefined ? rule.identity : defaults.identity,
    revocation: rule.revocation ?? defaults.revocation,
    clientAuth: rule.clientAuth ?? defaults.clientAuth,
    leafOnly: rule.leafOnly ?? defaults.leafOnly,
    tls13: rule.tls13 ?? defaults.tls13,
    minVersion: rule.minVersion ?? defaults.minVersion,
  };
}

/** Lower-cases ASCII only: `toLowerCase` would map non-ASCII bytes (e.g. U+0130) onto ASCII letters. */
function asciiLower(s: string): string {
  return s.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));
}

function labelsOf(name: string): string[] {
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  return asciiLower(trimmed).split('.');
}

/**
 * Whether host name `sni` matches `glob` (see the module comment). A name with an empty label
 * (`a..b`, a leading dot, the empty string) matches nothing.
 * Runs in O(globLabels × sniLabels²) at worst, whatever the number of `**`.
 */
export function sniGlobMatches(glob: string, sni: string): boolean {
  const g = labelsOf(glob);
  const s = labelsOf(sni);
  if (s.some((l) => l === '') || g.some((l) => l === '')) return false;
  // failed[gi * (s.length + 1) + si]: glob suffix gi cannot match name suffix si (memo for `**`).
  const failed = new Uint8Array((g.length + 1) * (s.length + 1));
  const match = (gi: number, si: number): boolean => {
    if (gi === g.length) return si === s.length;
    if (si === s.length) return false;
    const key = gi * (s.length + 1) + si;
    if (failed[key] === 1) return false;
    let ok: boolean;
    const label = g[gi];
    if (label === '**') {
      ok = false;
      for (let k = si + 1; k <= s.length && !ok; k++) ok = match(gi + 1, k);
    } else {
      ok = (label === '*' || label === s[si]) && match(gi + 1, si + 1);
    }
    if (!ok) failed[key] = 1;
    return ok;
  };
  return match(0, 0);
}
