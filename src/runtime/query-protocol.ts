import type { RankSpec } from '../actors/shard/rankings.ts';
import type { AdQuery, AdQueryReply, ShardStatus, TopQuery, TopQueryReply } from '../actors/shard-actor.ts';

/** Request/reply messages on a shard's query subject (JSON). The gateway only knows these types. */
export type ShardRequest =
  | ({ op: 'ad' } & AdQuery)
  | ({ op: 'top' } & TopQuery)
  | { op: 'status' }
  | { op: 'rank-specs'; specs: RankSpec[]; leaseMs: number }
  | { op: 'rank-state' };

export interface ShardStatusReply extends ShardStatus {
  epoch: number;
  lag: number;
  node: string;
}

export type ShardReply<T> = { ok: true; result: T } | { ok: false; code: string; error: string };

export type { AdQueryReply, TopQueryReply };
