import type { FastifyInstance } from 'fastify';
import type { ActorRegistry } from '../runtime/actor-registry.ts';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { ClickIngest } from '../ingest/click-ingest.ts';
import type { CompiledOptions } from '../options.ts';
import { systemClock, type Clock } from '../runtime/clock.ts';
import { RuntimeEvents } from '../runtime/events.ts';
import { createLogger, type Logger } from '../runtime/logger.ts';
import { createMetrics } from '../runtime/metrics.ts';
import { connectNats } from '../runtime/nats.ts';
import { openRedis } from '../runtime/redis-connect.ts';
import { HotRoutes } from '../runtime/hot/hot-routes.ts';
import { ServiceLifecycle, type LifecycleState, type Service } from '../runtime/lifecycle.ts';
import { ClickProducer, DeadLetterPublisher } from '../runtime/producer.ts';
import { RedisKeys } from '../runtime/redis-keys.ts';
import { ensureStreams, lastSequence } from '../runtime/streams.ts';
import { natsProbe, Reachability, redisProbe } from '../runtime/reachability.ts';
import { TopNReducerHost } from '../runtime/topn-reducer-host.ts';
import { topology } from '../runtime/topology.ts';
import { openAuth, reloadTokens, type AuthSetup } from './auth/auth-setup.ts';
import { QueryJobs } from './query-jobs.ts';
import { QueryService } from './query-service.ts';
import type { ReadinessResult } from './routes/ops.ts';
import { gatewayReconciliations, type ReconcileSchedule } from './reconcile-schedule.ts';
import { gatewayAggregateArchive } from './tiered-archiver.ts';
import type { AggregateArchiver } from '../runtime/archive/aggregate-archiver.ts';
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
export class GatewayService implements Service<{ url: string; port: number }> {
  app: FastifyInstance | undefined;
  private nc: NatsConnection | undefined;
  private redis: Redis | undefined;
  private reducer: TopNReducerHost | undefined;
  private queryJobs: QueryJobs | undefined;
  private hotRoutes: HotRoutes | undefined;
  private auth: AuthSetup | undefined;
  private reconcile: ReconcileSchedule | undefined;
  private aggArchiver: AggregateArchiver | undefined;
  private readonly life: ServiceLifecycle;
  readonly events: RuntimeEvents;
  private readonly log: Logger;

  constructor(
    private readonly opts: CompiledOptions & { natsUrl: string; redisUrl: string },
    private readonly deps: GatewayServiceDeps,
  ) {
    this.events = deps.events ?? new RuntimeEvents();
    this.log = deps.log ?? createLogger('adagg-gateway');
    this.life = new ServiceLifecycle('GatewayService', this.log);
  }

  /** `starting` until started, `running`, `failed` if start failed, `draining` then `stopped` on close. */
  get state(): LifecycleState {
    return this.life.state;
  }

  /**
   * Starts listening; returns the bound address (port 0 picks a free port). Starts once: a second
   * call rejects with ADAGG_E_ALREADY_STARTED.
   */
  start(): Promise<{ url: string; port: number }> {
    return this.life.start(() => this.listen());
  }

  private async listen(): Promise<{ url: string; port: number }> {
    const o = this.opts;
    const topo = topology(o.prefix);
    // Before any connection: an unsafe bind or a bad tokens file refuses the start (ADAGG_E_BAD_OPTION).
    this.auth = await openAuth(o, this.log);
    this.nc = await connectNats(o, 'adagg-gateway');
    this.redis = await openRedis(o, 'gateway', this.log);
    await ensureStreams(this.nc, topo, o);
    // Publishers follow the hot-ad routes, so a split ad's clicks go straight to its children.
    this.hotRoutes = await (await HotRoutes.open(this.nc, topo, o.replicas)).watch();
    // A deadline on ingest publishes: POST /v1/clicks answers 503 while NATS is down, not after every retry.
    const producer = new ClickProducer(this.nc, topo, { shards: o.shards, hotRoutes: this.hotRoutes, publishTimeoutMs: o.publishTimeoutMs, countryAlpha3: o.countryAlpha3 });
    const deadLetters = new DeadLetterPublisher(this.nc, topo, { timeoutMs: o.publishTimeoutMs });
    const ingest = new ClickIngest(producer, deadLetters, o, this.deps.clock ?? systemClock, this.events);
    // With ADAGG_ARCHIVE=on: archived hours are read from the aggregate archive (tiered-archiver.ts).
    let statusOf: (shard: number) => ReturnType<QueryService['shardStatus']> = () => Promise.resolve(null);
    const agg = gatewayAggregateArchive(this.redis, o, { clock: this.deps.clock ?? systemClock, log: this.log, status: (s) => statusOf(s) });
    this.aggArchiver = agg.archiver;
    const queries = new QueryService(this.nc, this.redis, topo, new RedisKeys(o.prefix), { ...o, archiveTier: agg.tier });
    statusOf = (s) => queries.shardStatus(s);
    const registry = createMetrics(this.events, new Registry());
    // Real round trips with a deadline (a frozen or dead server reads as "connected" for a while);
    // the system clock, since an injected test clock may never advance.
    const reach = new Reachability({ nats: natsProbe(this.nc), redis: redisProbe(this.redis) }, { timeoutMs: o.readyTimeoutMs, cacheMs: o.readyCacheMs });
    const ready = async (): Promise<ReadinessResult> => {
      const { checks, reasons } = await reach.check();
      const extra = this.deps.extraReady?.() ?? {};
      for (const [name, ok] of Object.entries(extra)) if (!ok) reasons[name] = 'not running';
      return { checks: { ...checks, ...extra }, reasons };
    };
    this.reducer = new TopNReducerHost(this.nc, topo, { shards: o.shards, depth: o.topnDepth, queryTimeoutMs: o.queryTimeoutMs, maxSpecs: o.wsMaxSpecsTotal, events: this.events }, this.deps.actors.createTopNReducer, this.deps.clock ?? systemClock, this.log);
    await this.reducer.start();
    this.queryJobs = new QueryJobs(this.nc, topo, o, { actors: this.deps.actors.shardActors, clock: this.deps.clock, log: this.log, redis: this.redis, keys: new RedisKeys(o.prefix) });
    // Stored reconciliation reports, and the daily run when ADAGG_RECONCILE_AT is set.
    const nc = this.nc;
    const recon = gatewayReconciliations(this.redis, o, {
      clock: this.deps.clock ?? systemClock,
      log: this.log,
      events: this.events,
      deadLetterLast: () => lastSequence(nc, topo.deadLetterStream),
    });
    this.reconcile = recon.schedule;
    this.app = buildGateway(o, { queryJobs: this.queryJobs, reducer: this.reducer, events: this.events, ingest, queries, registry, ready, log: this.log, auth: this.auth, reconciliations: recon.reports });
    await this.app.listen({ port: o.httpPort, host: o.httpHost });
    const addr = this.app.server.address();
    const port = typeof addr === 'object' && addr ? addr.port : o.httpPort;
    return { url: `http://127.0.0.1:${port}`, port };
  }

  /**
   * Re-reads ADAGG_TOKENS_FILE (`adagg gateway` and `adagg start` call it on SIGHUP): removed tokens
   * stop working and new ones work from the next request. A bad file is logged and the previous
   * tokens stay; resolves to whether the new file took effect. Never rejects.
   */
  reloadTokens(): Promise<boolean> {
    return reloadTokens(this.auth?.tokens, this.log);
  }

  /** Idempotent; runs every step (HTTP, reducer, query jobs, hot routes, NATS, Redis) even when one fails. */
  close(): Promise<void> {
    return this.life.close(() => [
      ['http', () => this.app?.close().catch((err: unknown) => this.log.error({ err }, 'http close failed'))],
      ['reducer', () => this.reducer?.close()],
      ['query jobs', () => this.queryJobs?.close()],
      ['reconcile', () => this.reconcile?.close()],
      ['aggregate archiver', () => this.aggArchiver?.close()],
      ['hot routes', () => this.hotRoutes?.close()],
      ['nats', () => this.nc?.drain().catch(() => undefined)],
      ['redis', () => this.redis?.disconnect()],
    ]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
