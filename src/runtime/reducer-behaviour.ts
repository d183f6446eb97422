import type { GlobalRanking, RankingState, RankingUpdate } from '../model/rankings.ts';

/**
 * The top-N reducer actor contract: what TopNReducerHost needs from the reducer it hosts. Defined
 * by the runtime, implemented by an actor kind (src/actors/topn-reducer.ts), wired in by the
 * composition root through runtime/actor-registry.ts.
 */
export interface TopNReducerBehaviour {
  /** Applies one shard's updates: the specs whose final may have changed, and whether a resync is needed. */
  apply(shard: number, updates: readonly RankingUpdate[]): { finals: Set<string>; resync: boolean };
  /** Replaces what is known of a shard with its full state (after start or a gap); the specs whose final may have changed. */
  load(shard: number, state: RankingState): Set<string>;
  globalFinal(spec: string): GlobalRanking | undefined;
  globalProvisional(spec: string): GlobalRanking | undefined;
  /** The ranking to emit if it differs from the last one emitted of its kind, else undefined. */
  changed(r: GlobalRanking | undefined): GlobalRanking | undefined;
}

export type TopNReducerFactory = (shards: number, depth: number) => TopNReducerBehaviour;
