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
  /**
   * The deployment's 128-bit dedupe secret (SipHash-2-4 key of the click-id hashes), the same for
   * every actor of a deployment: a hot child and its parent exchange hashes. The runtime reads it
   * from the store (ShardStore.dedupSecret); without it an actor uses a random per-process key,
   * fine for state that never outlives the process (query jobs, tests).
   */
  dedupKey?: Uint8Array;
  /**
   * The number of shards: also the number of risk partitions (a spread rule's groups live in the
   * shard actor `riskPartition(key, shards)`, docs/risk.md). Unset: invalid-click rules are ignored.
   */
  shards?: number;
}
