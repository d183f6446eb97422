import type { FastifyInstance } from 'fastify';
import type { ActorRegistry } from '../runtime/actor-registry.ts';
import type { NatsConnection } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { ClickIngest } from '../ingest/click-ingest.ts';
import type { CompiledOptions } from '../options.ts';
import { systemClock, type Clock } from '../runtime/clock.ts';
import { RuntimeEvents } from '../runtime/events.ts';
import { createLogger, type Logger } from '../runtime/logger.ts';
import { createMetrics } from '../runtime/metrics.ts';
import { connectNats } from '../runtime/nats.ts';
import { HotRoutes } from '../runtime/hot/hot-routes.ts';
import { ClickProducer, DeadLetterPublisher } from '../runtime/producer.ts';
import { RedisKeys } from '../runtime/redis-keys.ts';
import { ensureStreams } from '../runtime/streams.ts';
import { TopNReducerHost } from '../runtime/topn-reducer-host.ts';
import { topology } from '../runtime/topology.ts';
import { QueryJobs } from './query-jobs.ts';
import { QueryService } from './query-service.ts';
import { buildGateway } from './server.ts';

export interface GatewayServiceDeps {
  /** The actor kinds the gateway hosts (the top-N reducer; src/actors/index.ts). */
  actors: Pick<ActorRegistry, 'createTopNReducer' | 'shardActors'>;
  clock?: Clock;
  log?: Logger;
  /** Shared with a co-located runtime node so /metrics shows both. */
  events?: RuntimeEvents;
  /** Extra readiness checks (e.g. the co-located node's actors). */
  extraReady?: () => Record<string, boolean>;
}

/** The gateway process: its own NATS and Redis connections, the producer, queries and the HTTP server. */
export class GatewayService {
  app: FastifyInstance | undefined;
  private nc: NatsConnection | undefined;
  private redis: Redis | undefined;
  private reducer: TopNReducerHost | undefined;
  private queryJobs: QueryJobs | undefined;
  private hotRoutes: HotRoutes | undefined;
  private closing: Promise<void> | undefined;
  readonly events: RuntimeEvents;
  private readonly log: Logger;

  constructor(
    private readonly opts: CompiledOptions & { natsUrl: string; redisUrl: string },
    private readonly deps: GatewayServiceDeps,
  ) {
    this.events = deps.events ?? new RuntimeEvents();
    this.log = deps.log ?? createLogger('adagg-gateway');
  }

  /** Starts listening; returns the bound address (port 0 picks a free port). */
  async start(): Promise<{ url: string; port: number }> {
    if (this.app) throw new Error('GatewayService.start() called twice');
    const o = this.opts;
    const topo = topology(o.prefix);
    this.nc = await connectNats(o.natsUrl, 'adagg-gateway');
    this.redis = new Redis(o.redisUrl, { maxRetriesPerRequest: 3 });
    await ensureStreams(this.nc, topo, o);
    // Publishers follow the hot-ad routes, so a split ad's clicks go straight to its children.
    this.hotRoutes = await (await HotRoutes.open(this.nc, topo, o.replicas)).watch();
    const producer = new ClickProducer(this.nc, topo, { shards: o.shards, hotRoutes: this.hotRoutes });
    const ingest = new ClickIngest(producer, new DeadLetterPublisher(this.nc, topo), o, this.deps.clock ?? systemClock, this.events);
    const queries = new QueryService(this.nc, this.redis, topo, new RedisKeys(o.prefix), o);
    const registry = createMetrics(this.events, new Registry());
    const nc = this.nc;
    const redis = this.redis;
    const ready = async (): Promise<Record<string, boolean>> => ({
      nats: !nc.isClosed(),
      redis: redis.status === 'ready',
      ...(this.deps.extraReady?.() ?? {}),
    });
    this.reducer = new TopNReducerHost(this.nc, topo, { shards: o.shards, depth: o.topnDepth, queryTimeoutMs: o.queryTimeoutMs }, this.deps.actors.createTopNReducer, this.deps.clock ?? systemClock, this.log);
    this.reducer.start();
    this.queryJobs = new QueryJobs(this.nc, topo, o, { actors: this.deps.actors.shardActors, clock: this.deps.clock, log: this.log });
    this.app = buildGateway(o, { queryJobs: this.queryJobs, reducer: this.reducer, events: this.events, ingest, queries, registry, ready, log: this.log });
    await this.app.listen({ port: o.httpPort, host: o.httpHost });
    const addr = this.app.server.address();
    const port = typeof addr === 'object' && addr ? addr.port : o.httpPort;
    return { url: `http://127.0.0.1:${port}`, port };
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.app?.close().catch((err: unknown) => this.log.error({ err }, 'http close failed'));
      await this.reducer?.close();
      await this.queryJobs?.close();
      this.hotRoutes?.close();
      await this.nc?.drain().catch(() => undefined);
      this.redis?.disconnect();
    })();
    return this.closing;
  }
}
