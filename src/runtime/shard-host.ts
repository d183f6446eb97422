import type { ShardQuery, ShardQueryResult } from '../model/shard-queries.ts';
import type { UnitId } from '../model/shard-state.ts';
import type { ShardHostDeps, ShardHostOptions } from './shard-host-deps.ts';
import { Incarnation, unavailable } from './shard-incarnation.ts';

export type { ShardFeedPort, ShardHostDeps, ShardHostHotHooks, ShardHostOptions } from './shard-host-deps.ts';

/**
 * Hosts one shard actor (or hot child) on this node: each `run` is one incarnation
 * (shard-incarnation.ts): take ownership (a new epoch unless placement assigned one), restore from
 * the committed state, consume the stream one message at a time, commit on the configured cadence.
 * Run under a Supervisor, which restarts it from the last commit when it throws.
 *
 * Everyone else reaches the actor only through `ask`: a typed query, queued in the mailbox's
 * bounded query lane and answered between two stream messages.
 */
export class ShardHost {
  private current: Incarnation | undefined;
  private lastLag = -1;
  private ownerEpoch = 0;

  constructor(
    readonly shard: UnitId,
    private readonly opts: ShardHostOptions,
    private readonly deps: ShardHostDeps,
  ) {}

  /** The owner epoch of the latest incarnation (0 before the first). */
  get epoch(): number {
    return this.ownerEpoch;
  }

  /** Lag as last seen (messages pending in the stream for this shard), -1 when unknown. */
  get lag(): number {
    return this.current?.lag ?? this.lastLag;
  }

  /** Runs one incarnation until `signal` aborts (then drains and commits) or something fails (then throws). */
  async run(signal: AbortSignal): Promise<void> {
    this.ownerEpoch = this.opts.epoch ?? (await this.deps.store.acquire(this.shard));
    const inc = await Incarnation.open(this.shard, this.ownerEpoch, this.opts, this.deps);
    this.current = inc;
    try {
      await inc.run(signal);
    } finally {
      this.current = undefined;
      this.lastLag = inc.lag;
    }
  }

  /**
   * Asks the actor a question, answered in mailbox order before the next stream message. Rejects
   * with ADAGG_E_MAILBOX_FULL when the query lane is full, ADAGG_E_SHARD_UNAVAILABLE when no
   * incarnation is running (or it ends before answering).
   */
  ask<Q extends ShardQuery>(q: Q): Promise<ShardQueryResult<Q>> {
    const inc = this.current;
    if (!inc) return Promise.reject(unavailable(this.shard));
    return inc.ask(q);
  }
}
