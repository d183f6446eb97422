/**
 * The actor kinds, registered with the runtime by the composition root (CLI, tests, benchmarks):
 * this registry implements the runtime's contracts (runtime/actor-registry.ts), and the runtime
 * hosts actors through it without ever importing actor code.
 */
import type { ActorRegistry } from '../runtime/actor-registry.ts';
import type { TopNReducerFactory } from '../runtime/reducer-behaviour.ts';
import type { ShardBehaviourFactory } from '../runtime/shard-behaviour.ts';
import { ShardActor } from './shard-actor.ts';
import { TopNReducer } from './topn-reducer.ts';

export const shardActors: ShardBehaviourFactory = {
  create: (config, ports) => new ShardActor(config, ports),
  restore: (head, reader, config, ports) => ShardActor.restore(head, reader, config, ports),
};

export const createTopNReducer: TopNReducerFactory = (shards, depth) => new TopNReducer(shards, depth);

export const actorRegistry: ActorRegistry = { shardActors, createTopNReducer };
