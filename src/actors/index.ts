/**
 * The actor kinds, registered with the runtime by the composition root (CLI, tests, benchmarks):
 * the runtime hosts actors through these factories and never imports actor code itself.
 */
import type { ShardActorFactory } from '../runtime/shard-host.ts';
import { ShardActor } from './shard-actor.ts';
import { TopNReducer } from './topn-reducer.ts';

export const shardActors: ShardActorFactory = {
  create: (config, ports) => new ShardActor(config, ports),
  restore: (head, reader, config, ports) => ShardActor.restore(head, reader, config, ports),
};

export const createTopNReducer = (shards: number, depth: number): TopNReducer => new TopNReducer(shards, depth);

export interface ActorRegistry {
  shardActors: ShardActorFactory;
  createTopNReducer: (shards: number, depth: number) => TopNReducer;
}

export const actorRegistry: ActorRegistry = { shardActors, createTopNReducer };
