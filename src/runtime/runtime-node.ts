import type { Redis } from 'ioredis';
import { OptionError } from '../errors.ts';
import type { ActorHosts, HostStats, NodeOptions } from './actor-hosts.ts';
import type { ActorRegistry } from './actor-registry.ts';
import { systemClock, type Clock } from './clock.ts';
import { RuntimeEvents } from './events.ts';
import { HotRoutes } from './hot/hot-routes.ts';
import { ServiceLifecycle, type LifecycleState, type Service } from './lifecycle.ts';
import { LocalHosts } from './local-hosts.ts';
import { createLogger, type Logger } from './logger.ts';
import { connectNats } from './nats.ts';
import { openRedis } from './redis-connect.ts';
import { PlacementController } from './placement/controller.ts';
import { NodeAgent, type LocalShards } from './placement/node-agent.ts';
import { PlacementStore } from './placement/placement-store.ts';
import type { UnitEntry } from './placement/types.ts';
import { RedisKeys } from './redis-keys.ts';
import type { ShardHost } from './shard-host.ts';
import { ensureStreams } from './streams.ts';
import type { Supervisor } from './supervisor.ts';
import { topology, type Topology } from './topology.ts';
import { WorkerHosts } from './worker-hosts.ts';

export interface RuntimeNodeDeps {
  /** The actor kinds this node hosts (src/actors/index.ts), for actors on the main thread. */
  actors: Pick<ActorRegistry, 'shardActors'>;
  clock?: Clock;
  log?: Logger;
  events?: RuntimeEvents;
  /**
   * Entry module of an actor worker thread (src/cli/actor-worker.ts), which supplies the actor
   * kinds inside the worker. Without it actors run on the main thread whatever `workers` says.
   */
  workerEntry?: URL;
}

/**
 * A runtime node: hosts shard actors, each under a supervisor, and answers their queries over NATS.
 * The actors run in `workers` worker threads (ADAGG_WORKERS) or on this thread (0); the node is one
 * cluster member either way: membership, placement and the controller live on this thread.
 * - `start(shards)`: static mode, the given shards, each taking a new epoch itself.
 * - `startManaged()`: joins the cluster: heartbeats, runs the placement controller (acting when
 *   it holds the lease) and starts/stops/hands off shards as the placement table says.
 */
export class RuntimeNode implements Service {
  readonly events: RuntimeEvents;
  readonly topo: Topology;
  private actors: ActorHosts | undefined;
  /** The same group as `actors` when actors run on this thread. */
  private local: LocalHosts | undefined;
  private workerHosts: WorkerHosts | undefined;
  private redis: Redis | undefined;
  private agent: NodeAgent | undefined;
  private controller: PlacementController | undefined;
  placement: PlacementStore | undefined;
  private readonly life: ServiceLifecycle;
  private readonly clock: Clock;
  private readonly log: Logger;

  constructor(
    readonly id: string,
    private readonly opts: NodeOptions,
    private readonly deps: RuntimeNodeDeps,
  ) {
    // The id is a NATS subject token (queries are addressed to `<shard subject>.<node>`).
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) throw new OptionError('nodeId', `"${id}" must match [A-Za-z0-9_-]{1,64}`);
    this.clock = deps.clock ?? systemClock;
    this.log = (deps.log ?? createLogger('adagg-node')).child({ node: id });
    this.events = deps.events ?? new RuntimeEvents();
    this.topo = topology(opts.prefix);
    this.life = new ServiceLifecycle(`RuntimeNode ${id}`, this.log);
  }

  /** `starting` until started, `running`, `failed` if start failed, `draining` then `stopped` on close. */
  get state(): LifecycleState {
    return this.life.state;
  }

  /** Runs inside `life.start` (one start: `start` or `startManaged`). */
  private async setup(managed: boolean): Promise<ActorHosts> {
    const o = this.opts;
    // Workers boot (TypeScript, the runtime's modules) while this thread sets up the streams.
    const actors = this.createHosts(managed);
    this.actors = actors;
    try {
      this.redis = await openRedis(o, 'state', this.log);
      this.placement = new PlacementStore(this.redis, new RedisKeys(o.prefix), { shards: o.shards, heartbeatTimeoutMs: o.nodeTimeoutMs });
      // Streams and the hot-routes bucket exist before any actor connects (no creation races).
      const nc = await connectNats(o, `adagg-node-${this.id}-setup`);
      try {
        await ensureStreams(nc, this.topo, o);
        (await HotRoutes.open(nc, this.topo, o.replicas)).close();
      } finally {
        await nc.close().catch(() => undefined);
      }
      await actors.open();
    } catch (err) {
      // A node that failed to start holds nothing: no threads, no connections.
      await this.close();
      throw err;
    }
    return actors;
  }

  private createHosts(managed: boolean): ActorHosts {
    const o = this.opts;
    const common = { nodeId: this.id, opts: o, managed, clock: this.clock, log: this.log, events: this.events };
    const entry = this.deps.workerEntry;
    const inProcess =
      o.workers === 0
        ? undefined
        : !entry
          ? 'no worker entry module was given (RuntimeNodeDeps.workerEntry)'
          : this.clock !== systemClock
            ? 'a custom clock was given (worker threads use the system clock)'
            : undefined;
    if (o.workers > 0 && entry && !inProcess) {
      this.workerHosts = new WorkerHosts({ ...common, workers: o.workers, entry });
      return this.workerHosts;
    }
    if (inProcess) this.log.info({ workers: o.workers, why: inProcess }, 'hosting actors on the main thread');
    this.local = new LocalHosts({ ...common, actors: this.deps.actors.shardActors });
    return this.local;
  }

  private group(): ActorHosts {
    if (!this.actors) throw new Error('RuntimeNode not started');
    return this.actors;
  }

  /**
   * Static mode: runs the given shards (all by default), each acquiring a new epoch. A node starts
   * once (`start` or `startManaged`): a second start rejects with ADAGG_E_ALREADY_STARTED.
   */
  start(shards: readonly number[] = [...Array(this.opts.shards).keys()]): Promise<void> {
    return this.life.start(async () => {
      await this.setup(false);
      for (const s of shards) this.startShard(s);
    });
  }

  /** Managed mode: membership, placement controller and node agent. Starts once, like {@link start}. */
  startManaged(): Promise<void> {
    return this.life.start(() => this.runManaged());
  }

  private async runManaged(): Promise<void> {
    const actors = await this.setup(true);
    const o = this.opts;
    const local: LocalShards = {
      // Started or starting: the agent must not start an actor twice.
      running: () => actors.running(),
      start: (shard, epoch) => actors.startShard(shard, epoch),
      stop: (shard) => actors.stopShard(shard),
      stats: () => actors.stats(),
      units: {
        running: () => actors.runningUnits(),
        start: (unit, epoch) => actors.startUnit(unit, epoch),
        stop: (unit) => actors.stopUnit(unit),
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

  /** Shard hosts on this thread (actors on the main thread only; empty with worker threads). */
  get hosts(): ReadonlyMap<number, ShardHost> {
    return this.local?.hosts ?? new Map();
  }

  /** The supervisor of a shard running on this thread (its lifecycle shows running / failed / stopped). */
  supervisor(shard: number): Supervisor | undefined {
    return this.local?.supervisor(shard);
  }

  /** Shards running here (their thread has started them) with the epoch each runs under. */
  running(): ReadonlyMap<number, number> {
    return this.actors?.confirmed() ?? new Map();
  }

  /** Starts a shard actor; `epoch` is the one placement assigned (static mode: undefined). */
  startShard(shard: number, epoch?: number): void {
    this.group().startShard(shard, epoch);
  }

  /** Stops a shard actor: it stops consuming, commits a final snapshot, then stops answering. */
  stopShard(shard: number): Promise<void> {
    return this.group().stopShard(shard);
  }

  /**
   * Starts a hot ad's child actor (placement assigned it here with `epoch`): a shard actor on the
   * child subject, persisted and fenced under its unit id, reporting to its parent.
   */
  startUnit(u: UnitEntry, epoch: number): void {
    this.group().startUnit(u, epoch);
  }

  /** Stops a hot child (final snapshot and report first). */
  stopUnit(unit: string): Promise<void> {
    return this.group().stopUnit(unit);
  }

  /** Hot children running here, with the epoch each runs under. */
  runningUnits(): ReadonlyMap<string, number> {
    return this.actors?.runningUnits() ?? new Map();
  }

  stats(): HostStats {
    return this.group().stats();
  }

  /** Per actor worker thread: its thread id and the actors it hosts (empty when actors run on this thread). */
  actorWorkers(): ReturnType<WorkerHosts['workers']> {
    return this.workerHosts?.workers() ?? [];
  }

  /** For tests: ends actor worker `index` abruptly, as a crash would. */
  async crashWorkerForTest(index: number): Promise<void> {
    if (!this.workerHosts) throw new Error('actors run on the main thread');
    await this.workerHosts.terminate(index);
  }

  /** Drains every actor (final snapshot), leaves the cluster, then closes connections. Idempotent. */
  close(): Promise<void> {
    return this.life.close(() => [
      ['controller', () => this.controller?.close().catch(() => undefined)],
      ['agent', () => this.agent?.close(false).catch(() => undefined)],
      ['actors', () => this.actors?.close().catch((err: unknown) => this.log.error({ err }, 'closing actors failed'))],
      ['membership', () => this.placement?.removeNode(this.id).catch(() => undefined)],
      ['redis', () => this.redis?.disconnect()],
    ]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
