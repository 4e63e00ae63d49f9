/**
 * What intercept and inspect share: the part of the Session they drive (FlowHost), and the
 * policy verdict on a checked server chain.
 */
import type { RuleSettings } from '../config/types';
import type { ChainResult } from '../pki/chain';
import type { Decision } from './decision';
import { chainReason } from './pki-reasons';
import { Reason, type ReasonCode } from './reasons';
import type { Peer } from './types';

/** What the Session offers to a flow (intercept.ts, inspect.ts). */
export interface FlowHost {
  readonly partial: Partial<Decision>;
  /** The front door answers in Envoy's lockstep and needs to know when the engine is idle. */
  readonly lockstep: boolean;
  readonly decision: Decision | null;
  send(to: Peer, data: Buffer): void;
  endTo(to: Peer): void;
  decide(fields: Pick<Decision, 'outcome' | 'reason'> & Partial<Decision>): void;
  /** An alert to the workload (when not null), the decision, and a graceful close of both sides. */
  deny(reason: ReasonCode, detail: string, alert: number | null, extra?: Partial<Decision>): void;
}

/** Revocation outcomes a `softFail` rule lets through. */
const SOFT_REASONS: ReadonlySet<ReasonCode> = new Set([Reason.revocationUnknown, Reason.revocationStale]);

/** The reason to deny for a checked chain under the rule, or null to go on. */
export function chainVerdict(chain: ChainResult, settings: Pick<RuleSettings, 'revocation'>): ReasonCode | null {
  if (chain.ok) return null;
  const reason = chainReason(chain);
  if (settings.revocation === 'softFail' && SOFT_REASONS.has(reason)) return null;
  return reason;
}
