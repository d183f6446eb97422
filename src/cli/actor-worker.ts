/**
 * Entry module of an actor worker thread (see src/runtime/worker-hosts.ts): the composition root
 * hands the runtime the actor kinds here, so the runtime itself never imports actor code.
 */
import { actorRegistry } from '../actors/index.ts';
import { runActorWorker } from '../runtime/worker-runner.ts';

runActorWorker(actorRegistry.shardActors);
