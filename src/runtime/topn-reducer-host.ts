import { AdaggError, ErrorCode } from '../errors.ts';
import { decode } from '../model/msgpack.ts';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { parseSpecKey, specKey, type RankSpec } from '../model/rank-spec.ts';
import type { GlobalRanking, RankingState, RankingUpdate } from '../model/rankings.ts';
import type { Clock, TimerHandle } from './clock.ts';
import type { RuntimeEvents } from './events.ts';
import { ServiceLifecycle, type LifecycleState, type Service } from './lifecycle.ts';
import type { Logger } from './logger.ts';
import { Mailbox } from './mailbox.ts';
import type { TopNReducerBehaviour, TopNReducerFactory } from './reducer-behaviour.ts';
import { ShardClient } from './shard-client.ts';
import type { Topology } from './topology.ts';

export interface ReducerHostOptions {
  shards: number;
  depth: number;
  queryTimeoutMs: number;
  /** Provisional rankings are emitted at most this often. @default 1000 */
  provisionalIntervalMs?: number;
  /** Lease of a spec registered with the shards; renewed while watched. @default 60000 */
  specLeaseMs?: number;
  /**
   * Most distinct specs held in the shards at once: watched ones plus unwatched ones whose lease
   * has not run out (the shards keep those until it does). @default Infinity
   */
  maxSpecs?: number;
  /** Where the reducer reports its work each tick (`reducer` events; the gateway's /metrics). */
  events?: RuntimeEvents;
}

/** How long a shard keeps a registered spec unless the reducer renews it. */
export const DEFAULT_SPEC_LEASE_MS = 60_000;

type ReducerMsg =
  | { k: 'updates'; shard: number; updates: RankingUpdate[] }
  | { k: 'state'; shard: number; state: RankingState }
  | { k: 'tick' };

/**
 * Hosts the top-N reducer actor: feeds it the shards' ranking updates from NATS, one message at a
 * time, registers the specs watchers need with every shard, resyncs a shard after a gap, and
 * emits global rankings: finals as minutes close, provisional ones at most once a second.
 * Many watchers of one spec share this one computation.
 */
export class TopNReducerHost implements Service {
  private readonly reducer: TopNReducerBehaviour;
  private readonly client: ShardClient;
  private readonly mailbox = new Mailbox<ReducerMsg>(10_000);
  private readonly watched = new Map<string, number>();
  /** Every spec registered with the shards → when our last registration of it lapses there. */
  private readonly held = new Map<string, number>();
  private readonly latest = new Map<string, { final?: GlobalRanking; prov?: GlobalRanking }>();
  private readonly listeners = new Set<(r: GlobalRanking) => void>();
  private sub: Subscription | undefined;
  private loop: Promise<void> | undefined;
  private timer: TimerHandle | undefined;
  private lastRenew = 0;
  /** Work since the last `reducer` event. */
  private readonly work = { updates: 0, resyncs: 0, finals: 0, provisionals: 0 };
  private closed = false;
  private readonly life: ServiceLifecycle;

  constructor(
    private readonly nc: NatsConnection,
    private readonly topo: Topology,
    private readonly opts: ReducerHostOptions,
    createReducer: TopNReducerFactory,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    this.reducer = createReducer(opts.shards, opts.depth);
    this.client = new ShardClient(nc, topo, opts.queryTimeoutMs, 2);
    this.life = new ServiceLifecycle('TopNReducerHost', log);
  }

  /** `starting` until started, `running`, `failed` if start failed, `draining` then `stopped` on close. */
  get state(): LifecycleState {
    return this.life.state;
  }

  /**
   * Subscribes to the shards' ranking updates and starts the reducer's loop and tick, all before
   * returning. Starts once: a second call rejects with ADAGG_E_ALREADY_STARTED.
   */
  start(): Promise<void> {
    // The body is synchronous: everything is in place when start() returns.
    return this.life.start(() => {
      this.begin();
      return Promise.resolve();
    });
  }

  private begin(): void {
    this.sub = this.nc.subscribe(this.topo.rankingSubjects, {
      callback: (err, msg) => {
        if (err || this.closed) return;
        try {
          const m = decode(msg.data) as { shard: number; updates: RankingUpdate[] };
          this.mailbox.force({ k: 'updates', shard: m.shard, updates: m.updates });
        } catch (e) {
          this.log.warn({ err: e }, 'undecodable ranking update dropped');
        }
      },
    });
    this.loop = this.run();
    const tick = (): void => {
      if (this.closed) return;
      this.mailbox.force({ k: 'tick' });
      this.timer = this.clock.setTimeout(tick, this.opts.provisionalIntervalMs ?? 1000);
    };
    tick();
  }

  onRanking(fn: (r: GlobalRanking) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * Starts (or keeps) computing a spec; the first call registers it with every shard. Every spec
   * costs memory and work in every shard for as long as its lease, so a new one beyond `maxSpecs`
   * held is refused with ADAGG_E_TOO_MANY_SUBSCRIPTIONS (and nothing is registered).
   */
  watch(spec: RankSpec): string {
    const key = specKey(spec);
    const n = this.watched.get(key) ?? 0;
    if (n === 0 && !this.held.has(key) && this.heldSpecs >= (this.opts.maxSpecs ?? Infinity)) {
      throw new AdaggError(
        ErrorCode.TooManySubscriptions,
        `the gateway already holds ${this.held.size} live ranking specs (ADAGG_WS_MAX_SPECS_TOTAL); subscribe to one in use or retry later`,
      );
    }
    this.watched.set(key, n + 1);
    if (n === 0) {
      this.held.set(key, this.leaseEnd());
      void this.register([spec]);
    }
    return key;
  }

  /** Distinct specs registered with the shards and not yet lapsed there (watched or not). */
  get heldSpecs(): number {
    const now = this.clock.now();
    for (const [key, until] of this.held) if (until < now && !this.watched.has(key)) this.held.delete(key);
    return this.held.size;
  }

  /**
   * When a registration sent now lapses in the shards. The shard starts the lease when the request
   * arrives, up to one request timeout later.
   */
  private leaseEnd(): number {
    return this.clock.now() + (this.opts.specLeaseMs ?? DEFAULT_SPEC_LEASE_MS) + this.opts.queryTimeoutMs;
  }

  unwatch(key: string): void {
    const n = (this.watched.get(key) ?? 1) - 1;
    if (n > 0) {
      this.watched.set(key, n);
      return;
    }
    this.watched.delete(key);
  }

  /** Latest final and provisional global rankings of a spec. */
  current(key: string): { final?: GlobalRanking; prov?: GlobalRanking } {
    return this.latest.get(key) ?? {};
  }

  private async register(specs: RankSpec[]): Promise<void> {
    await Promise.all(
      [...Array(this.opts.shards).keys()].map(async (shard) => {
        try {
          const state = await this.client.ask<RankingState>(shard, { op: 'rank-specs', specs, leaseMs: this.opts.specLeaseMs ?? DEFAULT_SPEC_LEASE_MS });
          if (!this.closed) this.mailbox.force({ k: 'state', shard, state });
        } catch (err) {
          this.log.warn({ shard, err }, 'ranking spec registration failed; retried at the next renewal');
        }
      }),
    );
  }

  private async resync(shard: number): Promise<void> {
    try {
      const state = await this.client.ask<RankingState>(shard, { op: 'rank-state' });
      if (!this.closed) this.mailbox.force({ k: 'state', shard, state });
    } catch (err) {
      this.log.warn({ shard, err }, 'ranking resync failed');
    }
  }

  private async run(): Promise<void> {
    for (;;) {
      const msg = await this.mailbox.take();
      if (!msg) return;
      try {
        this.handle(msg);
      } catch (err) {
        this.log.error({ err }, 'reducer message failed');
      }
    }
  }

  private handle(msg: ReducerMsg): void {
    switch (msg.k) {
      case 'updates': {
        const { finals, resync } = this.reducer.apply(msg.shard, msg.updates);
        this.work.updates += msg.updates.length;
        if (resync) {
          this.work.resyncs++;
          void this.resync(msg.shard);
        }
        for (const key of finals) this.emit(this.reducer.changed(this.reducer.globalFinal(key)));
        break;
      }
      case 'state': {
        for (const key of this.reducer.load(msg.shard, msg.state)) this.emit(this.reducer.changed(this.reducer.globalFinal(key)));
        break;
      }
      case 'tick': {
        for (const key of this.watched.keys()) this.emit(this.reducer.changed(this.reducer.globalProvisional(key)));
        const lease = this.opts.specLeaseMs ?? DEFAULT_SPEC_LEASE_MS;
        if (this.clock.now() - this.lastRenew > lease / 3 && this.watched.size > 0) {
          this.lastRenew = this.clock.now();
          const until = this.leaseEnd();
          for (const key of this.watched.keys()) this.held.set(key, until);
          void this.register([...this.watched.keys()].map(parseSpecKey));
        }
        this.report();
        break;
      }
    }
  }

  private report(): void {
    const events = this.opts.events;
    if (!events) return;
    events.emit('reducer', { ...this.work, specs: this.held.size, queued: this.mailbox.size });
    this.work.updates = this.work.resyncs = this.work.finals = this.work.provisionals = 0;
  }

  private emit(r: GlobalRanking | undefined): void {
    if (!r) return;
    if (r.final) this.work.finals++;
    else this.work.provisionals++;
    const cur = this.latest.get(r.spec) ?? {};
    if (r.final) cur.final = r;
    else cur.prov = r;
    this.latest.set(r.spec, cur);
    for (const l of this.listeners) l(r);
  }

  /** Idempotent: stops the tick and the subscription, closes the mailbox and waits for the loop. */
  close(): Promise<void> {
    this.closed = true;
    return this.life.close(() => [
      [
        'tick',
        () => {
          if (this.timer) this.clock.clearTimeout(this.timer);
        },
      ],
      ['subscription', () => this.sub?.unsubscribe()],
      ['mailbox', () => this.mailbox.close()],
      ['loop', () => this.loop],
    ]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
