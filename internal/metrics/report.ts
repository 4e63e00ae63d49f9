/**
 * Decision reporting: the JSON log (pino, one line per decision) and the metrics. Other sinks
 * (Envoy dynamic metadata, Kubernetes Events) live with their front door and take the same
 * `Decision` object.
 */
import pino, { type DestinationStream, type Logger } from 'pino';
import type { Config } from '../config/types';
import { observeDecision, observeEnds, type Metrics } from './registry';
import type { Decision } from '../engine/decision';

export type LogLevel = Config['log']['level'];

/**
 * A JSON logger on stdout (or `destination`, for tests): level as its name (`"level":"info"`),
 * ISO 8601 `time`, no `hostname` (pods have names of their own in the log pipeline).
 */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}

/** The part of a logger the reporter uses (a pino Logger fits). */
export type DecisionLogger = Pick<Logger, 'info' | 'warn' | 'error'>;

/** The two moments a decision is reported (EngineContext.decided and .report). */
export interface Reporter {
  /** The verdict: counted in the metrics at once. */
  decided(decision: Decision): void;
  /** The complete record at close: one JSON line, and how each side ended in the metrics. */
  report(decision: Decision): void;
}

/**
 * The reporter every front door's sessions use: the verdict is counted when it is made, and
 * the decision is logged once, when the connection has closed — like HAProxy's and Envoy's
 * access logs — as `{"msg":"decision","decision":{...}}` at info for allow and warn for deny
 * (a denied connection closes at once). It never throws: reporting must not break the
 * connection it reports on.
 */
export function createReporter(deps: { logger: DecisionLogger; metrics: Metrics }): Reporter {
  const { logger, metrics } = deps;
  const guarded = (what: string, decision: Decision, fn: () => void): void => {
    try {
      fn();
    } catch (err) {
      try {
        logger.error({ err, connectionId: decision.connectionId }, `decision ${what} failed`);
      } catch {
        // nothing left to tell
      }
    }
  };
  return {
    decided: (decision) => guarded('metrics update', decision, () => observeDecision(metrics, decision)),
    report: (decision) => {
      try {
        if (decision.outcome === 'deny') logger.warn({ decision }, 'decision');
        else logger.info({ decision }, 'decision');
      } catch {
        // A failing log sink (closed stdout) has nowhere to report to; the metrics still count.
      }
      guarded('metrics update', decision, () => observeEnds(metrics, decision));
    },
  };
}
