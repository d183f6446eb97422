/**
 * adagg's public API: the services (runtime node, gateway) with the actor registry they host,
 * their options, errors and clock, and the producer (publish clicks straight to JetStream).
 * This module is a composition root: it hands embedders the actor kinds (`actorRegistry`) that
 * the runtime itself never imports. examples/embed.ts runs a node and a gateway in one process.
 *
 * @example
 * const o = { ...compileOptions({ workers: 0 }), natsUrl, redisUrl };
 * const node = new RuntimeNode('node-1', o, { actors: actorRegistry, workerEntry: actorWorkerEntry });
 * await node.startManaged();
 * const gateway = new GatewayService(o, { actors: actorRegistry });
 * const { url } = await gateway.start();
 *
 * @example
 * const producer = new ClickProducer(nc, topology('adagg'), { shards: 16 });
 * await producer.publish([{ click_id: 'c1', ad_id: 'ad001', ts: Date.now() }]);
 */

// Services and the actor kinds they host.
export { RuntimeNode } from './runtime/runtime-node.ts';
export type { RuntimeNodeDeps } from './runtime/runtime-node.ts';
export { GatewayService } from './gateway/gateway-service.ts';
export type { GatewayServiceDeps } from './gateway/gateway-service.ts';
export { actorRegistry } from './actors/index.ts';
export type { ActorRegistry } from './runtime/actor-registry.ts';
export { actorWorkerEntry } from './cli/services.ts';
export { RuntimeEvents } from './runtime/events.ts';
export type { RuntimeEventMap } from './runtime/events.ts';
export { createLogger } from './runtime/logger.ts';
export type { Logger } from './runtime/logger.ts';
export type { LifecycleState, Service } from './runtime/lifecycle.ts';

// Options, errors, clock.
export { aggregatedDimensions, compileOptions, DEFAULTS, ENV_VARS, OPTIONS, optionsFromEnv } from './options.ts';
export type { AdaggOptions, CompiledOptions, OptionSpec } from './options.ts';
export { AdaggError, ErrorCode, OptionError } from './errors.ts';
export { systemClock, ManualClock } from './runtime/clock.ts';
export type { Clock, TimerHandle } from './runtime/clock.ts';

// Producing clicks.
export { ClickProducer, DeadLetterPublisher } from './runtime/producer.ts';
export type { ProducerOptions, PublishResult, DeadLetter } from './runtime/producer.ts';
export { topology } from './runtime/topology.ts';
export type { Topology } from './runtime/topology.ts';
export { HotRoutes } from './runtime/hot/hot-routes.ts';
export type { HotRoute } from './runtime/hot/hot-routes.ts';
export { validateClick } from './model/validate.ts';
export type { RejectCode, Rejection, ValidationLimits } from './model/validate.ts';
export type { Click } from './model/click.ts';
// `fnv1a32` is the original public name of `fnv1a32Utf8` (UTF-8 FNV-1a, the shard hash); kept as an alias.
export { shardOf, fnv1a32Utf8, fnv1a32Utf8 as fnv1a32 } from './model/partition.ts';
export { encodeBatch, decodeBatch, batchMsgId } from './model/batch-codec.ts';
