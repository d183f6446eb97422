import { encode } from '../model/msgpack.ts';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Redis } from 'ioredis';
import { ErrorCode, type AdaggError } from '../errors.ts';
import { adKey } from '../model/hot-messages.ts';
import type { ShardActorConfig } from '../model/shard-config.ts';
import { aggregatedDimensions } from '../options.ts';
import type { ActorHosts, HostStats, NodeOptions } from './actor-hosts.ts';
import type { Clock } from './clock.ts';
import type { RuntimeEventMap, RuntimeEvents } from './events.ts';
import { HotChildHooks } from './hot/child-hooks.ts';
import { HotParentHooks } from './hot/parent-hooks.ts';
import { HotRoutes } from './hot/hot-routes.ts';
import { hotRuntime, type HotRuntime } from './hot/hot-runtime.ts';
import type { Logger } from './logger.ts';
import { connectNats } from './nats.ts';
import { openRedis } from './redis-connect.ts';
import { PlacementStore } from './placement/placement-store.ts';
import type { ShardStats, UnitEntry } from './placement/types.ts';
import { DeadLetterPublisher } from './producer.ts';
import { QueryResponder } from './query-responder.ts';
import { RedisKeys } from './redis-keys.ts';
import { RedisShardStore } from './redis-shard-store.ts';
import { ShardFeed } from './shard-feed.ts';
import type { ShardBehaviourFactory } from './shard-behaviour.ts';
import { ShardHost, type ShardHostOptions } from './shard-host.ts';
import type { UnitId } from './shard-store.ts';
import { Supervisor } from './supervisor.ts';
import { startArchivers } from './archive/archivers.ts';
import { RiskOutboxPublisher } from './risk-outbox.ts';
import { CorrectionsPublisher } from './corrections-outbox.ts';
import { topology, type Topology } from './topology.ts';

export interface LocalHostsDeps {
  nodeId: string;
  opts: NodeOptions;
  /** Builds shard actors (the registry's `shardActors`): the runtime never imports actor code. */
  actors: ShardBehaviourFactory;
  /** Managed mode: hot-ad children are placement units, so parents may split ads. */
  managed: boolean;
  clock: Clock;
  log: Logger;
  events: RuntimeEvents;
  /** Names the NATS connection (e.g. `-w1` in a worker thread). @default '' */
  connectionSuffix?: string;
}

interface Running {
  host: ShardHost;
  sup: Supervisor;
  epoch: number;
}

/** A hot child actor running here (runtime/hot/child-hooks.ts). */
interface RunningUnit extends Running {
  hooks: HotChildHooks;
}

/**
 * Actors hosted in this thread, with their own NATS and Redis connections, shard store, query
 * responder and hot-split runtime. A runtime node uses one directly (ADAGG_WORKERS=0), or one per
 * worker thread (worker-runner.ts).
 */
export class LocalHosts implements ActorHosts {
  private readonly shards = new Map<number, Running>();
  /** Raw archivers running beside each shard here (src/runtime/archive/): they follow their shard. */
  private readonly archivers = new Map<number, Supervisor[]>();
  /** Hot-ad child actors running here (managed mode). */
  private readonly units = new Map<string, RunningUnit>();
  private readonly topo: Topology;
  private nc: NatsConnection | undefined;
  private redis: Redis | undefined;
  private restoreRedis: Redis | undefined;
  private store: RedisShardStore | undefined;
  /** The deployment's click-id dedupe secret, handed to every actor here (shards and hot children). */
  private dedupKey: Uint8Array | undefined;
  private deadLetters: DeadLetterPublisher | undefined;
  private riskOutbox: RiskOutboxPublisher | undefined;
  private corrections: CorrectionsPublisher | undefined;
  private responder: QueryResponder | undefined;
  private hot: HotRuntime | undefined;
  private opening: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private readonly eventCounts = new Map<UnitId, number>();
  private readonly progress = new Map<UnitId, { watermark: number; now: number }>();
  private lastStats = { at: 0, counts: new Map<UnitId, number>() };
  private readonly onBatch = (e: RuntimeEventMap['batch'][0]): void => {
    this.eventCounts.set(e.shard, (this.eventCounts.get(e.shard) ?? 0) + e.events);
  };
  private readonly onProgress = (e: RuntimeEventMap['progress'][0]): void => {
    this.progress.set(e.shard, { watermark: e.watermark, now: e.now });
  };

  constructor(private readonly deps: LocalHostsDeps) {
    this.topo = topology(deps.opts.prefix);
    deps.events.on('batch', this.onBatch);
    deps.events.on('progress', this.onProgress);
  }

  open(): Promise<void> {
    this.opening ??= this.connect();
    return this.opening;
  }

  private async connect(): Promise<void> {
    const { opts: o, nodeId, events, log, clock } = this.deps;
    this.nc = await connectNats(o, `adagg-node-${nodeId}${this.deps.connectionSuffix ?? ''}`);
    this.redis = await openRedis(o, 'state', log);
    // Restores read on their own connection: the commit connection also carries the (large)
    // rankings warm-up reads, which must stay ordered with commits but must not delay restores.
    this.restoreRedis = await openRedis(o, 'state', log);
    const keys = new RedisKeys(o.prefix);
    this.store = new RedisShardStore(this.redis, keys, { countTtlMs: o.countTtlMs, restoreRedis: this.restoreRedis });
    this.dedupKey = await this.store.dedupSecret();
    this.deadLetters = new DeadLetterPublisher(this.nc, this.topo);
    this.riskOutbox = new RiskOutboxPublisher(this.nc, this.topo, this.deps.opts.shards);
    this.corrections = new CorrectionsPublisher(this.nc, this.topo, this.deps.opts.shards);
    this.responder = new QueryResponder(this.nc, this.topo, nodeId, log);
    this.hot = hotRuntime({
      nc: this.nc,
      topo: this.topo,
      routes: await HotRoutes.open(this.nc, this.topo, o.replicas),
      // Hot-ad children are placement units: only managed nodes split ads.
      placement: this.deps.managed ? new PlacementStore(this.redis, keys, { shards: o.shards, heartbeatTimeoutMs: o.nodeTimeoutMs }) : undefined,
      deadLetters: this.deadLetters,
      events,
      log,
      clock,
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

  /** The shard hosts running here (tests and diagnostics). */
  get hosts(): ReadonlyMap<number, ShardHost> {
    return new Map([...this.shards].map(([s, r]) => [s, r.host]));
  }

  /** The supervisor of a shard running here (its lifecycle shows running / failed / stopped). */
  supervisor(shard: number): Supervisor | undefined {
    return this.shards.get(shard)?.sup;
  }

  running(): ReadonlyMap<number, number> {
    return new Map([...this.shards].map(([s, r]) => [s, r.epoch]));
  }

  /** Actors here start synchronously: everything running is confirmed. */
  confirmed(): ReadonlyMap<number, number> {
    return this.running();
  }

  runningUnits(): ReadonlyMap<string, number> {
    return new Map([...this.units].map(([u, r]) => [u, r.epoch]));
  }

  /** Host options of a shard or hot-child unit: the same windows, horizon and cadence for both. */
  private hostOptions(
    unit: UnitId,
    extra: Pick<ShardActorConfig, 'topnDepth' | 'maxLiveWindow' | 'hot'>,
    epoch: number | undefined,
  ): ShardHostOptions {
    const o = this.deps.opts;
    return {
      actor: {
        shard: unit,
        dimensions: aggregatedDimensions(o),
        allowedLatenessMs: o.allowedLatenessMs,
        idleTimeoutMs: o.idleTimeoutMs,
        retentionMs: o.correctionHorizonMs + o.maxFutureMs + o.allowedLatenessMs + o.idleTimeoutMs,
        shards: o.shards,
        ...(this.dedupKey === undefined ? {} : { dedupKey: this.dedupKey }),
        ...extra,
      },
      ...(epoch === undefined ? {} : { epoch }),
      mailboxCapacity: o.mailboxCapacity,
      tickIntervalMs: o.tickIntervalMs,
      snapshotIntervalMs: o.snapshotIntervalMs,
      snapshotEveryMessages: o.snapshotEveryMessages,
    };
  }

  private connected(): { nc: NatsConnection; store: RedisShardStore; deadLetters: DeadLetterPublisher; responder: QueryResponder; hot: HotRuntime } {
    const { nc, store, deadLetters, responder, hot } = this;
    if (!nc || !store || !deadLetters || !responder || !hot) throw new Error('LocalHosts: open() has not completed');
    if (this.closing) throw new Error('LocalHosts: closed');
    return { nc, store, deadLetters, responder, hot };
  }

  /** A supervisor that stops for good when its actor is fenced (it lost the shard to a newer owner). */
  private supervise(name: string, unit: UnitId, host: ShardHost): Supervisor {
    const { clock, log, events } = this.deps;
    return new Supervisor(name, (signal) => host.run(signal), clock, log, {
      isFatal: (err) => (err as AdaggError | undefined)?.code === ErrorCode.Fenced,
      onRestart: (err) => events.emit('restart', { shard: unit, code: (err as AdaggError | undefined)?.code }),
      // A fenced actor lost its shard: stop answering its queries so the new owner gets them all.
      onFatal: () => {
        this.responder?.unserve(unit);
        events.emit('fenced', { shard: unit });
        events.emit('actorStopped', { shard: unit });
      },
    });
  }

  startShard(shard: number, epoch?: number): void {
    if (this.shards.has(shard)) throw new Error(`shard ${shard} is already running on ${this.deps.nodeId}`);
    const { nc, store, deadLetters, responder, hot } = this.connected();
    const { opts: o, clock, events, log } = this.deps;
    const host = new ShardHost(
      shard,
      this.hostOptions(shard, { topnDepth: o.topnDepth, maxLiveWindow: o.maxLiveWindow, hot: { splits: this.deps.managed } }, epoch),
      {
        actors: this.deps.actors,
        store,
        publishRankings: (_s, updates) => nc.publish(this.topo.rankingSubject(shard), encode({ shard, updates })),
        feed: () => new ShardFeed(nc, this.topo.clicksStream, this.topo.clickSubject(shard), this.deps.clock),
        deadLetters,
        publishRisk: (out) => this.riskOutbox!.publish(out),
        corrections: this.corrections,
        clock,
        events,
        log,
        hot: new HotParentHooks(shard, hot),
      },
    );
    const sup = this.supervise(`shard-${shard}`, shard, host);
    this.shards.set(shard, { host, sup, epoch: epoch ?? -1 });
    responder.serve(host);
    sup.start();
    this.archivers.set(shard, startArchivers(shard, this.topo, o, { nc, redis: this.redis!, keys: new RedisKeys(o.prefix), clock, events, log }));
  }

  async stopShard(shard: number): Promise<void> {
    const r = this.shards.get(shard);
    if (!r) return;
    // The archivers flush what they hold while the actor makes its final commit.
    await Promise.all([r.sup.close(), ...(this.archivers.get(shard) ?? []).map((a) => a.close())]);
    this.archivers.delete(shard);
    this.responder?.unserve(shard);
    this.shards.delete(shard);
    this.deps.events.emit('actorStopped', { shard });
  }

  /**
   * Starts a hot ad's child actor (placement assigned it here with `epoch`): a shard actor on the
   * child subject, persisted and fenced under its unit id, reporting to its parent.
   */
  startUnit(u: UnitEntry, epoch: number): void {
    if (this.units.has(u.unit)) throw new Error(`hot child ${u.unit} is already running on ${this.deps.nodeId}`);
    const { nc, store, deadLetters, responder, hot } = this.connected();
    const { clock, events, log } = this.deps;
    const hooks = new HotChildHooks(u, hot);
    const host = new ShardHost(
      u.unit,
      this.hostOptions(u.unit, { topnDepth: 1, maxLiveWindow: 1, hot: { child: { parent: u.parent, ad: u.ad, gen: u.gen, k: u.k } } }, epoch),
      {
        actors: this.deps.actors,
        store,
        // A child's counts reach rankings through its parent only.
        publishRankings: () => undefined,
        feed: () => new ShardFeed(nc, this.topo.clicksStream, this.topo.hotSubject(adKey(u.ad), u.gen, u.k), this.deps.clock),
        deadLetters,
        clock,
        events,
        log,
        hot: hooks,
      },
    );
    const sup = this.supervise(`hot-${u.unit}`, u.unit, host);
    this.units.set(u.unit, { host, sup, epoch, hooks });
    responder.serve(host);
    sup.start();
  }

  async stopUnit(unit: string): Promise<void> {
    const r = this.units.get(unit);
    if (!r) return;
    r.hooks.close();
    await r.sup.close();
    this.responder?.unserve(unit);
    this.units.delete(unit);
    this.deps.events.emit('actorStopped', { shard: unit });
  }

  /** Events/s since the previous call, lag, watermark delay and epoch of each actor here. */
  stats(): HostStats {
    const now = this.deps.clock.now();
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

  /** Stops answering queries, drains every actor (final commit), then closes connections. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const { events, log } = this.deps;
      // Actors may still be starting on a connection being opened: let it finish, then stop them.
      await this.opening?.catch(() => undefined);
      this.responder?.close();
      for (const u of this.units.values()) u.hooks.close();
      const sups = [...this.shards.values(), ...this.units.values()].map((r) => r.sup).concat([...this.archivers.values()].flat());
      const results = await Promise.allSettled(sups.map((sup) => sup.close()));
      this.archivers.clear();
      for (const r of results) if (r.status === 'rejected') log.error({ err: r.reason }, 'actor close failed');
      this.shards.clear();
      this.units.clear();
      this.hot?.routes.close();
      events.off('batch', this.onBatch);
      events.off('progress', this.onProgress);
      await this.nc?.drain().catch(() => undefined);
      this.redis?.disconnect();
      this.restoreRedis?.disconnect();
    })();
    return this.closing;
  }
}
