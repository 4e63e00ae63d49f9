/**
 * A connection a front door refuses before any Session exists (connection limits, a malformed or
 * timed-out CONNECT request): it still ends in exactly one decision (DESIGN.md "Egress policy",
 * last point), with action `none` and no rule, reported like every other.
 */
import type { EngineContext } from './context';
import type { Decision } from './decision';
import type { ReasonCode } from './reasons';

export interface Refused {
  connectionId: string;
  source: Decision['source'];
  destination?: Decision['destination'];
  reason: ReasonCode;
  detail: string;
  /** When the socket was accepted (performance.now()), for `durationMs`. */
  startedAt: number;
}

/** Builds the decision of a refused connection and reports it (verdict and record at once: it is closed). */
export function reportRefusal(ctx: Pick<EngineContext, 'decided' | 'report'>, r: Refused): Decision {
  const ms = Math.round((performance.now() - r.startedAt) * 1000) / 1000;
  const d: Decision = {
    time: new Date().toISOString(),
    connectionId: r.connectionId,
    source: r.source,
    destination: r.destination ?? {},
    action: 'none',
    rule: null,
    outcome: 'deny',
    reason: r.reason,
    detail: r.detail,
    ends: { workload: 'proxy', server: null },
    durationMs: ms,
  };
  try {
    ctx.decided?.(d);
  } finally {
    ctx.report(d);
  }
  return d;
}
