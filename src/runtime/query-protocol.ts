import type { RankSpec } from '../actors/shard/rankings.ts';
import type { AdQuery, AdQueryReply, HotSplitStatus, ShardStatus, TopQuery, TopQueryReply } from '../actors/shard-actor.ts';

/** Request/reply messages on a shard's query subject (JSON). The gateway only knows these types. */
export type ShardRequest =
  | ({ op: 'ad' } & AdQuery)
  | ({ op: 'top' } & TopQuery)
  | { op: 'status' }
  | { op: 'rank-specs'; specs: RankSpec[]; leaseMs: number }
  | { op: 'rank-state' }
  /**
   * A hot child asks its parent which ids (flat fnv1a32/murmur3_32 pairs) it counted before split
   * `gen`: `{seen, maxTs}` (maxTs: highest event time counted before the split), null: not yet known.
   */
  | { op: 'hot-seen'; ad: string; gen: number; hashes: number[] }
  /** The shard's split ads. */
  | { op: 'hot-status' };

export interface ShardStatusReply extends ShardStatus {
  epoch: number;
  lag: number;
  node: string;
}

export type ShardReply<T> = { ok: true; result: T } | { ok: false; code: string; error: string };

export type { AdQueryReply, HotSplitStatus, TopQueryReply };
