/**
 * What changed between two reloads of the revocation store. Every reload re-reads every file; a
 * CRL is counted and logged only when its outcome changed since the last reload, so one bad file
 * left in place is not a new refusal on every rescan, and an unchanged good file is not a new
 * acceptance.
 */
import type { LoadReport } from './store';

export type ReloadChanges = Pick<LoadReport, 'accepted' | 'refused' | 'retained'>;

export class ReloadDiff {
  private seen = new Map<string, string>();

  /** The entries of `report` whose outcome differs from the previous report's for the same source. */
  next(report: LoadReport): ReloadChanges {
    const now = new Map<string, string>();
    const pick = <T extends { source: string }>(items: T[], sig: (x: T) => string): T[] =>
      items.filter((x) => {
        const s = sig(x);
        now.set(x.source, s);
        return this.seen.get(x.source) !== s;
      });
    const changes = {
      accepted: pick(report.accepted, (a) => `ok:${a.sha256}`),
      refused: pick(report.refused, (b) => `refused:${b.code}:${b.message}`),
      retained: pick(report.retained, (a) => `retained:${a.sha256}`),
    };
    this.seen = now;
    return changes;
  }
}
