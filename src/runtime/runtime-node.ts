import { encode } from '@msgpack/msgpack';
import type { NatsConnection } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import type { ActorRegistry } from '../actors/index.ts';
import { ErrorCode, type AdaggError } from '../errors.ts';
import { aggregatedDimensions, type CompiledOptions } from '../options.ts';
import { systemClock, type Clock } from './clock.ts';
import { RuntimeEvents } from './events.ts';
import { createLogger, type Logger } from './logger.ts';
import { connectNats } from './nats.ts';
import { DeadLetterPublisher } from './producer.ts';
import { QueryResponder } from './query-responder.ts';
import { RedisKeys } from './redis-keys.ts';
import { RedisShardStore } from './redis-shard-store.ts';
import { ShardFeed } from './shard-feed.ts';
import { ShardHost } from './shard-host.ts';
import { ensureStreams } from './streams.ts';
import { Supervisor } from './supervisor.ts';
import { topology, type Topology } from './topology.ts';

export interface RuntimeNodeDeps {
  /** The actor kinds this node hosts (src/actors/index.ts). */
  actors: Pick<ActorRegistry, 'shardActors'>;
  clock?: Clock;
  log?: Logger;
  events?: RuntimeEvents;
}

/**
 * A runtime node: owns shard actors (all shards, until placement assigns a subset), each under a
 * supervisor, and answers their queries over NATS.
 */
export class RuntimeNode {
  readonly events: RuntimeEvents;
  readonly topo: Topology;
  readonly hosts = new Map<number, ShardHost>();
  private readonly supervisors = new Map<number, Supervisor>();
  private nc: NatsConnection | undefined;
  private redis: Redis | undefined;
  private responder: QueryResponder | undefined;
  private started = false;
  private closing: Promise<void> | undefined;
  private readonly clock: Clock;
  private readonly log: Logger;

  constructor(
    readonly id: string,
    private readonly opts: CompiledOptions & { natsUrl: string; redisUrl: string },
    private readonly deps: RuntimeNodeDeps,
  ) {
    this.clock = deps.clock ?? systemClock;
    this.log = deps.log ?? createLogger('adagg-node');
    this.events = deps.events ?? new RuntimeEvents();
    this.topo = topology(opts.prefix);
  }

  async start(shards: readonly number[] = [...Array(this.opts.shards).keys()]): Promise<void> {
    if (this.started) throw new Error('RuntimeNode.start() called twice');
    this.started = true;
    const o = this.opts;
    this.nc = await connectNats(o.natsUrl, `adagg-node-${this.id}`);
    this.redis = new Redis(o.redisUrl, { maxRetriesPerRequest: null, lazyConnect: false });
    await ensureStreams(this.nc, this.topo, o);
    const store = new RedisShardStore(this.redis, new RedisKeys(o.prefix), { countTtlMs: o.countTtlMs });
    const deadLetters = new DeadLetterPublisher(this.nc, this.topo);
    this.responder = new QueryResponder(this.nc, this.topo, this.id, this.log);
    const nc = this.nc;
    for (const shard of shards) {
      const host = new ShardHost(
        shard,
        {
          actor: {
            shard,
            dimensions: aggregatedDimensions(o),
            allowedLatenessMs: o.allowedLatenessMs,
            idleTimeoutMs: o.idleTimeoutMs,
            retentionMs: o.correctionHorizonMs + o.maxFutureMs + o.allowedLatenessMs + o.idleTimeoutMs,
            topnDepth: o.topnDepth,
            maxLiveWindow: o.maxLiveWindow,
          },
          mailboxCapacity: o.mailboxCapacity,
          tickIntervalMs: o.tickIntervalMs,
          snapshotIntervalMs: o.snapshotIntervalMs,
          snapshotEveryMessages: o.snapshotEveryMessages,
        },
        {
          actors: this.deps.actors.shardActors,
          store,
          publishRankings: (s, updates) => nc.publish(this.topo.rankingSubject(s), encode({ shard: s, updates })),
          feed: () => new ShardFeed(nc, this.topo.clicksStream, this.topo.clickSubject(shard)),
          deadLetters,
          clock: this.clock,
          events: this.events,
          log: this.log,
        },
      );
      const sup = new Supervisor(`shard-${shard}`, (signal) => host.run(signal), this.clock, this.log, {
        isFatal: (err) => (err as AdaggError | undefined)?.code === ErrorCode.Fenced,
        onRestart: (err) => this.events.emit('restart', { shard, code: (err as AdaggError | undefined)?.code }),
        // A fenced actor lost its shard: stop answering its queries so the new owner gets them all.
        onFatal: () => this.responder?.unserve(shard),
      });
      this.hosts.set(shard, host);
      this.supervisors.set(shard, sup);
      this.responder.serve(host);
      sup.start();
    }
  }

  /** Drains every actor (final snapshot), then closes connections. Idempotent; runs every step. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.responder?.close();
      const results = await Promise.allSettled([...this.supervisors.values()].map((s) => s.close()));
      for (const r of results) if (r.status === 'rejected') this.log.error({ err: r.reason }, 'actor close failed');
      await this.nc?.drain().catch(() => undefined);
      this.redis?.disconnect();
    })();
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
