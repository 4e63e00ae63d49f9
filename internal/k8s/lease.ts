/**
 * Leader election on a `coordination.k8s.io/v1` Lease, the way client-go's leaderelection
 * package does it, so several publisher replicas write one at a time.
 *
 * - Every `renewSeconds` (followers: with up to 20 % jitter) a candidate reads the Lease. It takes
 *   or renews the Lease with an update carrying the read `resourceVersion` (a `409 Conflict`
 *   means another candidate wrote first: this round is lost), or creates it when absent
 *   (`409 AlreadyExists`: lost too).
 * - Another holder's Lease counts as expired once the candidate has seen the same record
 *   (holder, renewTime, resourceVersion) unchanged for `leaseDurationSeconds` *by its own clock*
 *   (client-go's observedTime), so clock skew between nodes does not matter.
 * - The leader holds leadership until `renewStart + leaseDuration − safety` by its own clock,
 *   where renewStart is when its last successful renew was *sent*; `isLeader()` turns false
 *   at that moment even when the renew loop is stuck (a partition), before any follower can take
 *   over. A failed renew does not end leadership early, but one that fails until that moment
 *   does. Callers check `isLeader()` right before each write (a fence, not a guarantee against a
 *   write already in flight — the safety margin covers that).
 * - `stop()` releases the Lease (holder emptied, duration 1 s) so a follower takes over at its
 *   next round instead of waiting a whole lease duration; a process that dies releases nothing
 *   and is taken over after the lease duration.
 *
 * Events: `'leading'` (started), `'stopped-leading'`, `'leader'` (holder identity changed, as seen
 * by this candidate; may be null).
 */
import { EventEmitter } from 'node:events';
import { CoordinationV1Api, V1MicroTime, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import { errText } from '../pki/errors';

export interface LeaderElectorOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  /** Lease name. */
  name: string;
  /** This candidate's identity (pod name + a random suffix, say): unique among replicas. */
  identity: string;
  /** How long a Lease stays valid after its last renewal, seconds (≥ 1). */
  leaseDurationSeconds: number;
  /** Period of the acquire/renew loop, seconds; must be well under leaseDurationSeconds. */
  renewSeconds: number;
  /** The clock (ms); tests may move it. */
  now?: () => number;
  log?: { info(o: object, m: string): void; warn(o: object, m: string): void };
}

interface Observed {
  key: string;
  at: number;
}

export class LeaderElector extends EventEmitter {
  private readonly api: CoordinationV1Api;
  private readonly now: () => number;
  private leading = false;
  /** Leadership is valid until this local time (ms). */
  private validUntil = 0;
  private observed: Observed | null = null;
  private holder: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private round: Promise<void> = Promise.resolve();

  constructor(private readonly o: LeaderElectorOptions) {
    super();
    if (o.renewSeconds >= o.leaseDurationSeconds) throw new RangeError(`lease renewSeconds (${o.renewSeconds}) must be below durationSeconds (${o.leaseDurationSeconds})`);
    this.api = o.kubeConfig.makeApiClient(CoordinationV1Api);
    this.now = o.now ?? Date.now;
  }

  get identity(): string {
    return this.o.identity;
  }

  /** The holder as last seen (null: none or unknown). */
  get leader(): string | null {
    return this.holder;
  }

  /** True while this candidate holds a Lease that no other candidate may yet consider expired. */
  isLeader(): boolean {
    if (!this.leading) return false;
    if (this.now() < this.validUntil) return true;
    this.setLeading(false);
    return false;
  }

  /** Start the loop (the first round runs at once). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule(0);
  }

  /**
   * Stop the loop; when leading and `release` (default), give the Lease up so a follower takes
   * over at once.
   */
  async stop(opts: { release?: boolean } = {}): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.round;
    const wasLeading = this.leading;
    this.setLeading(false);
    if (wasLeading && opts.release !== false) {
      try {
        const lease = await this.read();
        if (lease?.spec?.holderIdentity === this.o.identity) {
          const t = new V1MicroTime(this.now());
          lease.spec = { ...lease.spec, holderIdentity: undefined, leaseDurationSeconds: 1, renewTime: t, acquireTime: t };
          await this.api.replaceNamespacedLease({ name: this.o.name, namespace: this.o.namespace, body: lease });
        }
      } catch (e) {
        this.o.log?.warn({ err: errText(e), lease: this.o.name }, 'could not release the Lease; a follower takes over when it expires');
      }
    }
  }

  private schedule(delayMs: number): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.round = this.tryAcquireOrRenew().finally(() => {
        const base = this.o.renewSeconds * 1000;
        this.schedule(this.leading ? base : base * (1 + Math.random() * 0.2));
      });
    }, delayMs);
  }

  private async read(): Promise<V1Lease | null> {
    try {
      return await this.api.readNamespacedLease({ name: this.o.name, namespace: this.o.namespace });
    } catch (e) {
      if (statusOf(e) === 404) return null;
      throw e;
    }
  }

  /** One round: returns with `leading` and `validUntil` updated; never throws. */
  private async tryAcquireOrRenew(): Promise<void> {
    const me = this.o.identity;
    const durMs = this.o.leaseDurationSeconds * 1000;
    // A write that started before validUntil may land after it: stop writing a little earlier.
    const safety = Math.min(2000, durMs / 4);
    const sentAt = this.now();
    try {
      const lease = await this.read();
      const t = new V1MicroTime(sentAt);
      if (!lease) {
        await this.api.createNamespacedLease({
          namespace: this.o.namespace,
          body: {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: { name: this.o.name, namespace: this.o.namespace },
            spec: { holderIdentity: me, leaseDurationSeconds: this.o.leaseDurationSeconds, acquireTime: t, renewTime: t, leaseTransitions: 0 },
          },
        });
        return this.won(sentAt + durMs - safety);
      }
      const spec = lease.spec ?? {};
      const holder = spec.holderIdentity || null;
      this.seeHolder(holder);
      const key = `${holder}|${spec.renewTime ? new Date(spec.renewTime).getTime() : ''}|${lease.metadata?.resourceVersion}`;
      if (!this.observed || this.observed.key !== key) this.observed = { key, at: sentAt };
      if (holder && holder !== me) {
        const theirMs = (spec.leaseDurationSeconds ?? this.o.leaseDurationSeconds) * 1000;
        if (this.observed.at + theirMs > sentAt) return this.lost();
        this.o.log?.info({ lease: this.o.name, holder, expiredForMs: sentAt - this.observed.at - theirMs }, 'Lease expired: taking over');
      }
      const ours = holder === me;
      lease.spec = {
        ...spec,
        holderIdentity: me,
        leaseDurationSeconds: this.o.leaseDurationSeconds,
        renewTime: t,
        acquireTime: ours && spec.acquireTime ? spec.acquireTime : t,
        leaseTransitions: (spec.leaseTransitions ?? 0) + (ours ? 0 : 1),
      };
      await this.api.replaceNamespacedLease({ name: this.o.name, namespace: this.o.namespace, body: lease });
      return this.won(sentAt + durMs - safety);
    } catch (e) {
      if (statusOf(e) === 409) return this.lost();
      this.o.log?.warn({ err: errText(e), lease: this.o.name }, 'Lease round failed');
      // Leadership lasts until validUntil without a renew; isLeader() ends it then.
      this.isLeader();
    }
  }

  private won(until: number): void {
    this.validUntil = until;
    this.observed = null;
    this.seeHolder(this.o.identity);
    this.setLeading(true);
  }

  private lost(): void {
    this.setLeading(false);
  }

  private seeHolder(h: string | null): void {
    if (h !== this.holder) {
      this.holder = h;
      this.emit('leader', h);
    }
  }

  private setLeading(v: boolean): void {
    if (v === this.leading) return;
    this.leading = v;
    if (!v) this.validUntil = 0;
    this.emit(v ? 'leading' : 'stopped-leading');
  }
}

/** HTTP status of a client-node ApiException (or anything with a numeric `code`), else undefined. */
export function statusOf(e: unknown): number | undefined {
  const c = (e as { code?: unknown } | null)?.code;
  return typeof c === 'number' ? c : undefined;
}
