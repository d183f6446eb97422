/**
 * Recompute's private shard actors: the production aggregation code (dedupe, minute windows,
 * dimensions), created through the injected factory like query jobs' (src/gateway/query-job-executor.ts),
 * never restored and never persisted. Retention and lateness are far beyond any range, so no minute
 * closes and no click id expires: every copy of a click meets the first one in the dedupe.
 */
import { AdaggError, ErrorCode } from '../../errors.ts';
import type { Click } from '../../model/click.ts';
import type { ShardActorConfig } from '../../model/shard-config.ts';
import type { Clock } from '../clock.ts';
import type { ShardBehaviour, ShardBehaviourFactory } from '../shard-behaviour.ts';
import { fieldKey, type FieldValues } from './recompute-diff.ts';

/** Far beyond any range: the actors never close a minute or expire a dedupe id. */
const NEVER_MS = 100 * 365 * 24 * 3600_000;

export interface RecomputeActorsOptions {
  actors: Pick<ShardBehaviourFactory, 'create'>;
  clock: Clock;
  /** The deployment's aggregated dimensions and cubes (aggregatedDimensions(options)). */
  dimensions: readonly string[];
}

/** One private actor per shard, fed in stream order. */
export class RecomputeActors {
  private readonly actors = new Map<number, ShardBehaviour>();
  private clicks = 0;

  constructor(private readonly o: RecomputeActorsOptions) {}

  /** Clicks handed in so far (before dedupe). */
  get fed(): number {
    return this.clicks;
  }

  /**
   * Applies one message's clicks to the shard's actor at stream sequence `seq`; without `seq`
   * (backfill batches, after every stream message) at the one after the actor's last.
   */
  async apply(shard: number, clicks: readonly Click[], seq?: number): Promise<void> {
    if (clicks.length === 0) return;
    this.clicks += clicks.length;
    const a = this.actor(shard);
    // The live actor of the shard saw its own subject and the hot subjects of its ads interleaved
    // in stream order; a sequence at or below the last applied one would be skipped, so never go back.
    const at = seq === undefined || seq <= a.lastSeq ? a.lastSeq + 1 : seq;
    await a.applyBatch(at, clicks);
  }

  /**
   * Every count field of the minutes in [fromMinute, toMinute) (only `ads`' when given), as the
   * actors hold them: totals, each dimension value (the writes a commit would persist).
   */
  fields(fromMinute: number, toMinute: number, ads: ReadonlySet<string> | undefined): FieldValues {
    const out: FieldValues = new Map();
    for (const [shard, a] of this.actors) {
      const c = a.prepareCommit(0, true);
      if (!c) continue;
      if (a.closedThrough >= fromMinute) throw new AdaggError(ErrorCode.Internal, 'recompute: a minute closed in a private actor');
      for (const w of c.writes) {
        if (w.minute < fromMinute || w.minute >= toMinute) continue;
        for (let i = 0; i + 1 < w.counts.length; i += 2) {
          const ad_id = String(w.counts[i]);
          if (ads && !ads.has(ad_id)) continue;
          const n = Number(w.counts[i + 1]);
          if (n !== 0) out.set(fieldKey({ shard, minute: w.minute, dim: w.dim, value: w.value, ad_id }), n);
        }
      }
      a.committed(c);
    }
    return out;
  }

  private actor(shard: number): ShardBehaviour {
    let a = this.actors.get(shard);
    if (a) return a;
    const config: ShardActorConfig = { shard, dimensions: this.o.dimensions, allowedLatenessMs: NEVER_MS, idleTimeoutMs: NEVER_MS, retentionMs: NEVER_MS };
    a = this.o.actors.create(config, {
      clock: this.o.clock,
      readClosed: () => Promise.reject(new AdaggError(ErrorCode.Internal, 'recompute: a minute closed in a private actor')),
    });
    this.actors.set(shard, a);
    return a;
  }
}
