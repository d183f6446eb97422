import type { HotChildSpec } from './hot-report.ts';
import type { UnitId } from './shard-state.ts';

/**
 * A shard actor's configuration: built by the runtime (from the node's options) and by query jobs,
 * read by the actor. Plain data, so it lives in the model.
 */
export interface ShardActorConfig {
  /** The shard number, or a hot ad's child unit id (`h<adkey>-<gen>-<k>`). */
  shard: UnitId;
  dimensions: readonly string[];
  allowedLatenessMs: number;
  idleTimeoutMs: number;
  /** Event-time span behind the watermark for which dedupe ids and corrections are kept. */
  retentionMs: number;
  /** Depth of the streaming top-K per ranking spec. @default 100 */
  topnDepth?: number;
  /** Closed minutes kept in memory for live rankings (longest live window). @default 60 */
  maxLiveWindow?: number;
  /**
   * Hot-ad splitting: `splits` honours split messages (managed mode; otherwise they are skipped);
   * `child` makes this actor a child counting part of one split ad's clicks.
   */
  hot?: { splits?: boolean; child?: HotChildSpec | undefined };
}
