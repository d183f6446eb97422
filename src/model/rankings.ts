import type { Ranked } from './top-n.ts';
import type { FlatCounts } from './shard-state.ts';

/**
 * What the live rankings send between shard actors and the top-N reducer (docs/live-rankings.md, "Live rankings
 * as actors"): shared by the actors that produce and merge them and by the runtime that carries
 * them, so it lives here rather than in either.
 */

/** One shard's ranking change: a final list for a closed window end, or a provisional delta numbered by `rev`. */
export type RankingUpdate =
  | { k: 'final'; spec: string; end: number; list: FlatCounts }
  | { k: 'prov'; spec: string; end: number; rev: number; full: boolean; changed: FlatCounts; removed: string[] };

/** Everything a reducer needs to (re)start with one shard: recent finals and the last provisional list per spec. */
export interface RankingState {
  finals: Array<{ spec: string; end: number; list: FlatCounts }>;
  provs: Array<{ spec: string; end: number; rev: number; list: FlatCounts }>;
}

/** A merged ranking over every shard, as the gateway serves it. */
export interface GlobalRanking {
  spec: string;
  final: boolean;
  /** Window end (exclusive), minute index. */
  end: number;
  list: Ranked[];
}
