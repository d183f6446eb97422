/**
 * adagg's public API: the producer (publish clicks straight to JetStream), validation, the
 * services (runtime node, gateway) and their options.
 *
 * @example
 * const producer = new ClickProducer(nc, topology('adagg'), { shards: 16 });
 * await producer.publish([{ click_id: 'c1', ad_id: 'ad001', ts: Date.now() }]);
 */
export { ClickProducer, DeadLetterPublisher } from './runtime/producer.ts';
export type { ProducerOptions, PublishResult, DeadLetter } from './runtime/producer.ts';
export { topology } from './runtime/topology.ts';
export { HotRoutes } from './runtime/hot/hot-routes.ts';
export type { HotRoute } from './runtime/hot/hot-routes.ts';
export type { Topology } from './runtime/topology.ts';
export { validateClick } from './model/validate.ts';
export type { RejectCode, Rejection, ValidationLimits } from './model/validate.ts';
export type { Click } from './model/click.ts';
export { shardOf, fnv1a32 } from './model/partition.ts';
export { encodeBatch, decodeBatch, batchMsgId } from './model/batch-codec.ts';
export { RuntimeNode } from './runtime/runtime-node.ts';
export { GatewayService } from './gateway/gateway-service.ts';
export { compileOptions, optionsFromEnv } from './options.ts';
export type { AdaggOptions, CompiledOptions } from './options.ts';
export { AdaggError, ErrorCode } from './errors.ts';
export { systemClock, ManualClock } from './runtime/clock.ts';
export type { Clock } from './runtime/clock.ts';
