import { encode } from '@msgpack/msgpack';
import type { NatsConnection } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import type { ActorRegistry } from '../actors/index.ts';
import { ErrorCode, OptionError, type AdaggError } from '../errors.ts';
import { aggregatedDimensions, type CompiledOptions } from '../options.ts';
import { systemClock, type Clock } from './clock.ts';
import { RuntimeEvents } from './events.ts';
import { createLogger, type Logger } from './logger.ts';
import { adKey } from '../model/hot-messages.ts';
import { HotChildHooks } from './hot/child-hooks.ts';
import { HotParentHooks } from './hot/parent-hooks.ts';
import { HotRoutes } from './hot/hot-routes.ts';
import { hotRuntime, type HotRuntime } from './hot/hot-runtime.ts';
import { connectNats } from './nats.ts';
import { PlacementController } from './placement/controller.ts';
import { NodeAgent, type LocalShards } from './placement/node-agent.ts';
import { PlacementStore } from './placement/placement-store.ts';
import type { ShardStats, UnitEntry } from './placement/types.ts';
import { DeadLetterPublisher } from './producer.ts';
import { QueryResponder } from './query-responder.ts';
import { RedisKeys } from './redis-keys.ts';
import { RedisShardStore } from './redis-shard-store.ts';
import { ShardFeed } from './shard-feed.ts';
import type { ShardActorConfig } from '../actors/shard-actor.ts';
import { ShardHost, type ShardHostOptions } from './shard-host.ts';
import type { UnitId } from './shard-store.ts';
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

/** A hot child actor running here (runtime/hot/child-hooks.ts). */
interface RunningUnit extends Running {
  hooks: HotChildHooks;
  entry: UnitEntry;
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
  private readonly eventCounts = new Map<UnitId, number>();
  private readonly progress = new Map<UnitId, { watermark: number; now: number }>();
  private lastStats = { at: 0, counts: new Map<UnitId, number>() };
  /** Hot-ad child actors running here (managed mode). */
  private readonly units = new Map<string, RunningUnit>();
  private hot: HotRuntime | undefined;
  private managed = false;

  constructor(
    readonly id: string,
    private readonly opts: CompiledOptions & { natsUrl: string; redisUrl: string },
    private readonly deps: RuntimeNodeDeps,
  ) {
    // The id is a NATS subject token (queries are addressed to `<shard subject>.<node>`).
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) throw new OptionError('nodeId', `"${id}" must match [A-Za-z0-9_-]{1,64}`);
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
    this.hot = hotRuntime({
      nc: this.nc,
      topo: this.topo,
      routes: await HotRoutes.open(this.nc, this.topo, o.replicas),
      placement: undefined,
      deadLetters: this.deadLetters,
      events: this.events,
      log: this.log,
      clock: this.clock,
      opts: {
        autoChildren: o.hotChildren,
        lingerMs: o.hotLingerMs,
        hotRatePerSec: o.hotRatePerSec,
        hotSharePct: o.hotSharePct,
        hotMinRatePerSec: o.hotMinRatePerSec,
        hotForMs: o.hotForMs,
        coolRatePerSec: o.coolRatePerSec,
        coolSharePct: o.coolSharePct,
        coolForMs: o.coolForMs,
      },
    });
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
    // Hot-ad children are placement units: only managed nodes split ads.
    this.managed = true;
    this.hot!.placement = this.placement;
    const local: LocalShards = {
      running: () => this.running(),
      start: (shard, epoch) => this.startShard(shard, epoch),
      stop: (shard) => this.stopShard(shard),
      stats: () => this.stats(),
      units: {
        running: () => new Map([...this.units].map(([u, r]) => [u, r.epoch])),
        start: (unit, epoch) => this.startUnit(unit, epoch),
        stop: (unit) => this.stopUnit(unit),
      },
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
  /** Host options of a shard or hot-child unit: the same windows, horizon and cadence for both. */
  private hostOptions(
    unit: UnitId,
    extra: Pick<ShardActorConfig, 'topnDepth' | 'maxLiveWindow' | 'hot'>,
    epoch: number | undefined,
  ): ShardHostOptions {
    const o = this.opts;
    return {
      actor: {
        shard: unit,
        dimensions: aggregatedDimensions(o),
        allowedLatenessMs: o.allowedLatenessMs,
        idleTimeoutMs: o.idleTimeoutMs,
        retentionMs: o.correctionHorizonMs + o.maxFutureMs + o.allowedLatenessMs + o.idleTimeoutMs,
        ...extra,
      },
      ...(epoch === undefined ? {} : { epoch }),
      mailboxCapacity: o.mailboxCapacity,
      tickIntervalMs: o.tickIntervalMs,
      snapshotIntervalMs: o.snapshotIntervalMs,
      snapshotEveryMessages: o.snapshotEveryMessages,
    };
  }

  startShard(shard: number, epoch?: number): void {
    if (this.shards.has(shard)) throw new Error(`shard ${shard} is already running on ${this.id}`);
    const o = this.opts;
    const nc = this.nc!;
    const host = new ShardHost(
      shard,
      this.hostOptions(shard, { topnDepth: o.topnDepth, maxLiveWindow: o.maxLiveWindow, hot: { splits: this.managed } }, epoch),
      {
        actors: this.deps.actors.shardActors,
        store: this.store!,
        publishRankings: (_s, updates) => nc.publish(this.topo.rankingSubject(shard), encode({ shard, updates })),
        feed: () => new ShardFeed(nc, this.topo.clicksStream, this.topo.clickSubject(shard)),
        deadLetters: this.deadLetters!,
        clock: this.clock,
        events: this.events,
        log: this.log,
        hot: new HotParentHooks(shard, this.hot!),
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

  /**
   * Starts a hot ad's child actor (placement assigned it here with `epoch`): a shard actor on the
   * child subject, persisted and fenced under its unit id, reporting to its parent.
   */
  startUnit(u: UnitEntry, epoch: number): void {
    if (this.units.has(u.unit)) throw new Error(`hot child ${u.unit} is already running on ${this.id}`);
    const nc = this.nc!;
    const hooks = new HotChildHooks(u, this.hot!);
    const host = new ShardHost(
      u.unit,
      this.hostOptions(u.unit, { topnDepth: 1, maxLiveWindow: 1, hot: { child: { parent: u.parent, ad: u.ad, gen: u.gen, k: u.k } } }, epoch),
      {
        actors: this.deps.actors.shardActors,
        store: this.store!,
        // A child's counts reach rankings through its parent only.
        publishRankings: () => undefined,
        feed: () => new ShardFeed(nc, this.topo.clicksStream, this.topo.hotSubject(adKey(u.ad), u.gen, u.k)),
        deadLetters: this.deadLetters!,
        clock: this.clock,
        events: this.events,
        log: this.log,
        hot: hooks,
      },
    );
    const sup = new Supervisor(`hot-${u.unit}`, (signal) => host.run(signal), this.clock, this.log, {
      isFatal: (err) => (err as AdaggError | undefined)?.code === ErrorCode.Fenced,
      onRestart: (err) => this.events.emit('restart', { shard: u.unit, code: (err as AdaggError | undefined)?.code }),
      onFatal: () => this.responder?.unserve(u.unit),
    });
    this.units.set(u.unit, { host, sup, epoch, hooks, entry: u });
    this.responder!.serve(host);
    sup.start();
  }

  /** Stops a hot child (final snapshot and report first). */
  async stopUnit(unit: string): Promise<void> {
    const r = this.units.get(unit);
    if (!r) return;
    r.hooks.close();
    await r.sup.close();
    this.responder?.unserve(unit);
    this.units.delete(unit);
  }

  /** Hot children running here, with the epoch each runs under. */
  runningUnits(): ReadonlyMap<string, number> {
    return new Map([...this.units].map(([u, r]) => [u, r.epoch]));
  }

  stats(): { eventsPerSec: number; shards: Record<string, ShardStats> } {
    const now = this.clock.now();
    const secs = Math.max(0.001, (now - this.lastStats.at) / 1000);
    const shards: Record<string, ShardStats> = {};
    let total = 0;
    for (const [s, r] of [...this.shards, ...this.units] as Array<[UnitId, Running]>) {
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
      for (const u of this.units.values()) u.hooks.close();
      const results = await Promise.allSettled([...this.shards.values(), ...this.units.values()].map((r) => r.sup.close()));
      for (const r of results) if (r.status === 'rejected') this.log.error({ err: r.reason }, 'actor close failed');
      this.shards.clear();
      this.units.clear();
      this.hot?.routes.close();
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
