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
import { PlacementController } from './placement/controller.ts';
import { NodeAgent, type LocalShards } from './placement/node-agent.ts';
import { PlacementStore } from './placement/placement-store.ts';
import type { ShardStats } from './placement/types.ts';
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

interface Running {
  host: ShardHost;
  sup: Supervisor;
  epoch: number;
}

/**
 * A runtime node: hosts shard actors, each under a supervisor, and answers their queries over NATS.
 * - `start(shards)`: static mode, the given shards, each taking a new epoch itself.
 * - `startManaged()`: joins the cluster: heartbeats, runs the placement controller (acting when
 *   it holds the lease) and starts/stops/hands off shards as the placement table says.
 */
export class RuntimeNode {
  readonly events: RuntimeEvents;
  readonly topo: Topology;
  readonly hosts = new Map<number, ShardHost>();
  private readonly shards = new Map<number, Running>();
  private nc: NatsConnection | undefined;
  private redis: Redis | undefined;
  private store: RedisShardStore | undefined;
  private deadLetters: DeadLetterPublisher | undefined;
  private responder: QueryResponder | undefined;
  private agent: NodeAgent | undefined;
  private controller: PlacementController | undefined;
  placement: PlacementStore | undefined;
  private started = false;
  private closing: Promise<void> | undefined;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly eventCounts = new Map<number, number>();
  private readonly progress = new Map<number, { watermark: number; now: number }>();
  private lastStats = { at: 0, counts: new Map<number, number>() };

  constructor(
    readonly id: string,
    private readonly opts: CompiledOptions & { natsUrl: string; redisUrl: string },
    private readonly deps: RuntimeNodeDeps,
  ) {
    this.clock = deps.clock ?? systemClock;
    this.log = (deps.log ?? createLogger('adagg-node')).child({ node: id });
    this.events = deps.events ?? new RuntimeEvents();
    this.topo = topology(opts.prefix);
    this.events.on('batch', (e) => this.eventCounts.set(e.shard, (this.eventCounts.get(e.shard) ?? 0) + e.events));
    this.events.on('progress', (e) => this.progress.set(e.shard, { watermark: e.watermark, now: e.now }));
  }

  private async setup(): Promise<void> {
    if (this.started) throw new Error('RuntimeNode already started');
    this.started = true;
    const o = this.opts;
    this.nc = await connectNats(o.natsUrl, `adagg-node-${this.id}`);
    this.redis = new Redis(o.redisUrl, { maxRetriesPerRequest: null });
    await ensureStreams(this.nc, this.topo, o);
    const keys = new RedisKeys(o.prefix);
    this.store = new RedisShardStore(this.redis, keys, { countTtlMs: o.countTtlMs });
    this.placement = new PlacementStore(this.redis, keys, { shards: o.shards, heartbeatTimeoutMs: o.nodeTimeoutMs });
    this.deadLetters = new DeadLetterPublisher(this.nc, this.topo);
    this.responder = new QueryResponder(this.nc, this.topo, this.id, this.log);
  }

  /** Static mode: runs the given shards (all by default), each acquiring a new epoch. */
  async start(shards: readonly number[] = [...Array(this.opts.shards).keys()]): Promise<void> {
    await this.setup();
    for (const s of shards) this.startShard(s);
  }

  /** Managed mode: membership, placement controller and node agent. */
  async startManaged(): Promise<void> {
    await this.setup();
    const o = this.opts;
    const local: LocalShards = {
      running: () => this.running(),
      start: (shard, epoch) => this.startShard(shard, epoch),
      stop: (shard) => this.stopShard(shard),
      stats: () => this.stats(),
    };
    this.agent = new NodeAgent(this.id, this.placement!, local, { heartbeatMs: o.heartbeatIntervalMs, reconcileMs: 250 }, this.clock, this.log);
    this.controller = new PlacementController(
      this.id,
      this.placement!,
      {
        roundMs: 500,
        leaderTtlMs: o.nodeTimeoutMs,
        maxMovesPerRound: o.maxMovesPerRound,
        joinGraceMs: o.joinGraceMs,
        minNodes: o.minNodes,
        handoffTimeoutMs: o.handoffTimeoutMs,
      },
      this.clock,
      this.log,
    );
    await this.agent.heartbeat();
    this.agent.start();
    this.controller.start();
  }

  /** The supervisor of a shard running here (its lifecycle shows running / failed / stopped). */
  supervisor(shard: number): Supervisor | undefined {
    return this.shards.get(shard)?.sup;
  }

  running(): ReadonlyMap<number, number> {
    return new Map([...this.shards].map(([s, r]) => [s, r.epoch]));
  }

  /** Starts a shard actor; `epoch` is the one placement assigned (static mode: undefined). */
  startShard(shard: number, epoch?: number): void {
    if (this.shards.has(shard)) throw new Error(`shard ${shard} is already running on ${this.id}`);
    const o = this.opts;
    const nc = this.nc!;
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
        ...(epoch === undefined ? {} : { epoch }),
        mailboxCapacity: o.mailboxCapacity,
        tickIntervalMs: o.tickIntervalMs,
        snapshotIntervalMs: o.snapshotIntervalMs,
        snapshotEveryMessages: o.snapshotEveryMessages,
      },
      {
        actors: this.deps.actors.shardActors,
        store: this.store!,
        publishRankings: (s, updates) => nc.publish(this.topo.rankingSubject(s), encode({ shard: s, updates })),
        feed: () => new ShardFeed(nc, this.topo.clicksStream, this.topo.clickSubject(shard)),
        deadLetters: this.deadLetters!,
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
    this.shards.set(shard, { host, sup, epoch: epoch ?? -1 });
    this.responder!.serve(host);
    sup.start();
  }

  /** Stops a shard actor: it stops consuming, commits a final snapshot, then stops answering. */
  async stopShard(shard: number): Promise<void> {
    const r = this.shards.get(shard);
    if (!r) return;
    await r.sup.close();
    this.responder?.unserve(shard);
    this.shards.delete(shard);
    this.hosts.delete(shard);
  }

  stats(): { eventsPerSec: number; shards: Record<string, ShardStats> } {
    const now = this.clock.now();
    const secs = Math.max(0.001, (now - this.lastStats.at) / 1000);
    const shards: Record<string, ShardStats> = {};
    let total = 0;
    for (const [s, r] of this.shards) {
      const count = this.eventCounts.get(s) ?? 0;
      const rate = this.lastStats.at ? (count - (this.lastStats.counts.get(s) ?? 0)) / secs : 0;
      total += rate;
      const p = this.progress.get(s);
      shards[String(s)] = {
        eventsPerSec: Math.round(rate),
        lag: r.host.lag,
        watermarkDelayMs: p && p.watermark >= 0 ? now - p.watermark : null,
        epoch: r.host.epoch,
      };
    }
    this.lastStats = { at: now, counts: new Map(this.eventCounts) };
    return { eventsPerSec: Math.round(total), shards };
  }

  /** Drains every actor (final snapshot), leaves the cluster, then closes connections. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.controller?.close().catch(() => undefined);
      await this.agent?.close(false).catch(() => undefined);
      this.responder?.close();
      const results = await Promise.allSettled([...this.shards.values()].map((r) => r.sup.close()));
      for (const r of results) if (r.status === 'rejected') this.log.error({ err: r.reason }, 'actor close failed');
      this.shards.clear();
      await this.placement?.removeNode(this.id).catch(() => undefined);
      await this.nc?.drain().catch(() => undefined);
      this.redis?.disconnect();
    })();
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
