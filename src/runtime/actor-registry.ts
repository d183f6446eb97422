import type { TopNReducerFactory } from './reducer-behaviour.ts';
import type { ShardBehaviourFactory } from './shard-behaviour.ts';

/**
 * The actor kinds a runtime node and a gateway host. The runtime defines what it needs (the
 * contracts in shard-behaviour.ts and reducer-behaviour.ts); src/actors/index.ts implements this
 * registry, and only the composition root (CLI, tests, benchmarks) passes it in.
 */
export interface ActorRegistry {
  shardActors: ShardBehaviourFactory;
  createTopNReducer: TopNReducerFactory;
}
