import { Worker } from 'node:worker_threads';
import { AdaggError, ErrorCode } from '../errors.ts';
import type { ActorHosts, HostStats, NodeOptions } from './actor-hosts.ts';
import type { Clock, TimerHandle } from './clock.ts';
import type { RuntimeEvents } from './events.ts';
import type { Logger } from './logger.ts';
import type { ShardStats, UnitEntry } from './placement/types.ts';
import { errMeta } from './supervisor.ts';
import { emitForwarded, type WorkerCommand, type WorkerInit, type WorkerReport } from './worker-protocol.ts';

const BOOTSTRAP = new URL('./worker-bootstrap.mjs', import.meta.url);

export interface WorkerHostsOptions {
  /** Worker threads (≥ 1). */
  workers: number;
  /** The worker's entry module (src/cli/actor-worker.ts): it supplies the actor kinds. */
  entry: URL;
  nodeId: string;
  opts: NodeOptions;
  managed: boolean;
  clock: Clock;
  log: Logger;
  /** The node's events: every event a worker's actors emit is emitted here again. */
  events: RuntimeEvents;
  /** @default 500 */
  statsIntervalMs?: number;
  /** A worker that has not closed (final commits) in this time is terminated. @default 15000 */
  closeTimeoutMs?: number;
  /** First delay before replacing a failed worker; doubles per consecutive failure up to 10 s. @default 200 */
  minRestartDelayMs?: number;
}

type Reply = { ok: true } | { ok: false; message: string; exited: boolean };
type Command = WorkerCommand extends infer C ? (C extends { id: number } ? Omit<C, 'id'> : never) : never;

/** One worker thread position; a failed worker is replaced in the same slot. */
interface Slot {
  readonly index: number;
  worker: Worker | undefined;
  ready: boolean;
  spawnedAt: number;
  /** Consecutive failures (reset after a worker ran a while): the replacement backoff. */
  failures: number;
  restartTimer: TimerHandle | undefined;
  stats: HostStats | undefined;
  readonly waiting: Map<number, (r: Reply) => void>;
}

interface Hosted {
  slot: Slot;
  epoch: number;
  confirmed: boolean;
}

/** A worker that ran at least this long failed "for the first time" again. */
const HEALTHY_RUN_MS = 30_000;
const MAX_RESTART_DELAY_MS = 10_000;

/**
 * A runtime node's actors in worker threads: N workers, each running a LocalHosts
 * (worker-runner.ts), driven over worker-protocol.ts. A new actor goes to the worker with the
 * fewest actors (a hot child preferably not to its parent's); placement stays in the main thread,
 * which keeps the running maps. A worker that dies loses its actors (dropped from the maps, so the
 * node's placement agent starts them again, restoring from their last commit) and is replaced with
 * backoff.
 */
export class WorkerHosts implements ActorHosts {
  private readonly slots: Slot[];
  private readonly shards = new Map<number, Hosted>();
  private readonly units = new Map<string, Hosted>();
  /** Static mode: shards of a failed worker waiting for a live worker. */
  private readonly orphans = new Set<number>();
  private nextId = 1;
  private opened = false;
  private opening: Promise<void> | undefined;
  private closing: Promise<void> | undefined;

  constructor(private readonly o: WorkerHostsOptions) {
    if (o.workers < 1) throw new Error('WorkerHosts needs at least one worker');
    this.slots = Array.from({ length: o.workers }, (_, index) => ({
      index,
      worker: undefined,
      ready: false,
      spawnedAt: 0,
      failures: 0,
      restartTimer: undefined,
      stats: undefined,
      waiting: new Map(),
    }));
    // Booting a worker (loading TypeScript and the runtime) takes longest: start at once, connect on open().
    for (const s of this.slots) this.spawn(s);
  }

  /** Lets every worker connect; resolves once all are ready, rejects if one fails on the way. */
  open(): Promise<void> {
    this.opening ??= (async () => {
      await Promise.all(this.slots.map((s) => this.whenReady(s)));
      this.opened = true;
    })();
    return this.opening;
  }

  private whenReady(slot: Slot): Promise<void> {
    const w = slot.worker;
    if (!w) return Promise.reject(new AdaggError(ErrorCode.Internal, `actor worker ${slot.index} is not running`));
    return new Promise<void>((resolve, reject) => {
      const onMessage = (m: WorkerReport): void => {
        if (m.type !== 'ready') return;
        off();
        resolve();
      };
      const onExit = (code: number): void => {
        off();
        reject(new AdaggError(ErrorCode.Internal, `actor worker ${slot.index} exited with code ${code} before it was ready (see its log)`));
      };
      const off = (): void => {
        w.off('message', onMessage);
        w.off('exit', onExit);
      };
      w.on('message', onMessage);
      w.on('exit', onExit);
      this.post(slot, { type: 'open' });
    });
  }

  private spawn(slot: Slot): void {
    const o = this.o;
    const init: WorkerInit = {
      entry: o.entry.href,
      index: slot.index,
      nodeId: o.nodeId,
      opts: o.opts,
      managed: o.managed,
      logLevel: o.log.level,
      statsIntervalMs: o.statsIntervalMs ?? 500,
    };
    const w = new Worker(BOOTSTRAP, { workerData: init });
    const threadId = w.threadId;
    slot.worker = w;
    slot.ready = false;
    slot.stats = undefined;
    slot.spawnedAt = o.clock.now();
    w.on('message', (m: WorkerReport) => {
      if (slot.worker === w) this.onReport(slot, m);
    });
    w.on('error', (err) => o.log.error({ worker: slot.index, threadId, err: errMeta(err) }, 'actor worker failed'));
    w.on('exit', (code) => {
      if (slot.worker === w) this.onExit(slot, threadId, code);
    });
  }

  private onReport(slot: Slot, m: WorkerReport): void {
    switch (m.type) {
      case 'ready':
        slot.ready = true;
        this.o.log.info({ worker: slot.index, threadId: slot.worker?.threadId, ms: this.o.clock.now() - slot.spawnedAt }, 'actor worker ready');
        break;
      case 'done': {
        const settle = slot.waiting.get(m.id);
        slot.waiting.delete(m.id);
        settle?.(m.error ? { ok: false, message: m.error.message, exited: false } : { ok: true });
        break;
      }
      case 'stats':
        slot.stats = m.stats;
        break;
      case 'events':
        for (const e of m.events) emitForwarded(this.o.events, e);
        break;
    }
  }

  private onExit(slot: Slot, threadId: number, code: number): void {
    slot.worker = undefined;
    slot.ready = false;
    slot.stats = undefined;
    const waiting = [...slot.waiting.values()];
    slot.waiting.clear();
    for (const settle of waiting) settle({ ok: false, message: `actor worker ${slot.index} exited`, exited: true });
    // Closing, or failing to start (open() rejects and the node gives up): nothing to replace.
    if (this.closing || !this.opened) return;
    const lostShards = [...this.shards].filter(([, h]) => h.slot === slot).map(([s]) => s);
    const lostUnits = [...this.units].filter(([, h]) => h.slot === slot).map(([u]) => u);
    for (const s of lostShards) this.shards.delete(s);
    for (const u of lostUnits) this.units.delete(u);
    // The dead worker cannot report its actors gone: their per-shard series would stay frozen.
    for (const shard of [...lostShards, ...lostUnits]) this.o.events.emit('actorStopped', { shard });
    if (this.o.clock.now() - slot.spawnedAt >= HEALTHY_RUN_MS) slot.failures = 0;
    // The first failure is replaced at once, so the lost actors restart spread as before; a worker
    // that keeps failing is replaced with growing delays.
    const delayMs = slot.failures === 0 ? 0 : Math.min(MAX_RESTART_DELAY_MS, (this.o.minRestartDelayMs ?? 200) * 2 ** (slot.failures - 1));
    slot.failures++;
    // Managed mode: the placement agent sees these actors missing and starts them again under their
    // epoch, restoring from their last commit like a supervisor restart.
    this.o.log.error({ worker: slot.index, threadId, code, shards: lostShards, units: lostUnits, restartInMs: delayMs }, 'actor worker exited unexpectedly');
    const replace = (): void => {
      slot.restartTimer = undefined;
      if (this.closing) return;
      this.spawn(slot);
      this.whenReady(slot).then(
        () => this.adoptOrphans(),
        (err: unknown) => this.o.log.warn({ worker: slot.index, err: errMeta(err) }, 'replacement actor worker failed'),
      );
    };
    if (delayMs === 0) replace();
    else slot.restartTimer = this.o.clock.setTimeout(replace, delayMs);
    if (!this.o.managed) {
      for (const s of lostShards) this.orphans.add(s);
      this.adoptOrphans();
    }
  }

  /** Static mode (no placement agent): restarts the shards of a failed worker on a live one. */
  private adoptOrphans(): void {
    for (const s of [...this.orphans]) {
      if (!this.live().length || this.closing) return;
      this.orphans.delete(s);
      if (!this.shards.has(s)) this.startShard(s);
    }
  }

  /** Workers running or booting (a booting worker queues its commands until it is connected). */
  private live(): Slot[] {
    return this.slots.filter((s) => s.worker !== undefined);
  }

  /** The live worker with the fewest actors (ties: the lowest index), avoiding `avoid` if another is live. */
  private pick(avoid?: Slot): Slot {
    const live = this.live();
    const candidates = avoid && live.length > 1 ? live.filter((s) => s !== avoid) : live;
    const load = new Map<Slot, number>(candidates.map((s) => [s, 0]));
    for (const h of [...this.shards.values(), ...this.units.values()]) {
      const n = load.get(h.slot);
      if (n !== undefined) load.set(h.slot, n + 1);
    }
    let best: Slot | undefined;
    for (const s of candidates) if (!best || load.get(s)! < load.get(best)!) best = s;
    if (!best) throw new AdaggError(ErrorCode.ShardUnavailable, `no actor worker of node ${this.o.nodeId} is running`);
    return best;
  }

  private post(slot: Slot, cmd: WorkerCommand): void {
    slot.worker?.postMessage(cmd);
  }

  private request(slot: Slot, cmd: Command): Promise<Reply> {
    if (!slot.worker) return Promise.resolve({ ok: false, message: `actor worker ${slot.index} is not running`, exited: true });
    const id = this.nextId++;
    return new Promise<Reply>((resolve) => {
      slot.waiting.set(id, resolve);
      this.post(slot, { ...cmd, id } as WorkerCommand);
    });
  }

  private refuseClosed(): void {
    if (this.closing) throw new AdaggError(ErrorCode.ShardUnavailable, `node ${this.o.nodeId} is closing`);
  }

  startShard(shard: number, epoch?: number): void {
    this.refuseClosed();
    if (this.shards.has(shard)) throw new Error(`shard ${shard} is already running on ${this.o.nodeId}`);
    const slot = this.pick();
    const h: Hosted = { slot, epoch: epoch ?? -1, confirmed: false };
    this.shards.set(shard, h);
    void this.request(slot, { type: 'start-shard', shard, epoch }).then((r) => {
      if (r.ok) h.confirmed = true;
      else this.startFailed(`shard ${shard}`, r, () => this.shards.get(shard) === h && this.shards.delete(shard));
    });
  }

  async stopShard(shard: number): Promise<void> {
    const h = this.shards.get(shard);
    if (!h) return;
    const r = await this.request(h.slot, { type: 'stop-shard', shard });
    // A worker that died meanwhile took the actor with it: it is stopped, without its final commit.
    if (!r.ok && !r.exited) this.o.log.error({ shard, worker: h.slot.index, error: r.message }, 'shard actor stop failed');
    if (this.shards.get(shard) === h) this.shards.delete(shard);
  }

  startUnit(unit: UnitEntry, epoch: number): void {
    this.refuseClosed();
    if (this.units.has(unit.unit)) throw new Error(`hot child ${unit.unit} is already running on ${this.o.nodeId}`);
    // A child next to its parent would share the parent's thread, the load it exists to take off.
    const slot = this.pick(this.shards.get(unit.parent)?.slot);
    const h: Hosted = { slot, epoch, confirmed: false };
    this.units.set(unit.unit, h);
    void this.request(slot, { type: 'start-unit', unit, epoch }).then((r) => {
      if (r.ok) h.confirmed = true;
      else this.startFailed(`hot child ${unit.unit}`, r, () => this.units.get(unit.unit) === h && this.units.delete(unit.unit));
    });
  }

  /** A refused start: dropped from the running maps, so placement tries again. */
  private startFailed(what: string, r: Extract<Reply, { ok: false }>, drop: () => unknown): void {
    if (!r.exited) this.o.log.error({ actor: what, error: r.message }, 'actor start failed in its worker');
    drop();
  }

  async stopUnit(unit: string): Promise<void> {
    const h = this.units.get(unit);
    if (!h) return;
    const r = await this.request(h.slot, { type: 'stop-unit', unit });
    if (!r.ok && !r.exited) this.o.log.error({ unit, worker: h.slot.index, error: r.message }, 'hot child stop failed');
    if (this.units.get(unit) === h) this.units.delete(unit);
  }

  running(): ReadonlyMap<number, number> {
    return new Map([...this.shards].map(([s, h]) => [s, h.epoch]));
  }

  confirmed(): ReadonlyMap<number, number> {
    return new Map([...this.shards].filter(([, h]) => h.confirmed).map(([s, h]) => [s, h.epoch]));
  }

  runningUnits(): ReadonlyMap<string, number> {
    return new Map([...this.units].map(([u, h]) => [u, h.epoch]));
  }

  /** The latest figures each worker posted, for the actors the main thread knows are running. */
  stats(): HostStats {
    const shards: Record<string, ShardStats> = {};
    let total = 0;
    for (const [key, h] of [...this.shards, ...this.units] as Array<[number | string, Hosted]>) {
      const k = String(key);
      const st = h.slot.stats?.shards[k] ?? { eventsPerSec: 0, lag: -1, watermarkDelayMs: null, epoch: h.epoch };
      shards[k] = st;
      total += st.eventsPerSec;
    }
    return { eventsPerSec: total, shards };
  }

  /** Per worker: its thread and the actors it hosts. */
  workers(): Array<{ index: number; threadId: number | null; ready: boolean; shards: number[]; units: string[] }> {
    return this.slots.map((s) => ({
      index: s.index,
      threadId: s.worker?.threadId ?? null,
      ready: s.ready,
      shards: [...this.shards].filter(([, h]) => h.slot === s).map(([n]) => n).sort((a, b) => a - b),
      units: [...this.units].filter(([, h]) => h.slot === s).map(([u]) => u).sort(),
    }));
  }

  /** For tests: ends a worker thread abruptly, as a crash would (no final commits). */
  async terminate(index: number): Promise<void> {
    const w = this.slots[index]?.worker;
    if (!w) throw new Error(`no actor worker ${index} is running`);
    await w.terminate();
  }

  /** Each worker stops its actors (final commits) and exits; one that takes longer than the timeout is terminated. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const s of this.slots) if (s.restartTimer) this.o.clock.clearTimeout(s.restartTimer);
      await Promise.allSettled(this.slots.map((s) => this.closeSlot(s)));
      this.shards.clear();
      this.units.clear();
    })();
    return this.closing;
  }

  private async closeSlot(slot: Slot): Promise<void> {
    const w = slot.worker;
    if (!w) return;
    const exited = new Promise<void>((r) => w.once('exit', () => r()));
    const timeoutMs = this.o.closeTimeoutMs ?? 15_000;
    const closed = this.request(slot, { type: 'close' }).then((r) => {
      if (!r.ok && !r.exited) this.o.log.error({ worker: slot.index, error: r.message }, 'actor worker close failed');
      return 'closed' as const;
    });
    const first = await this.within(closed, timeoutMs);
    if (first !== 'closed') this.o.log.warn({ worker: slot.index, timeoutMs }, 'actor worker did not close in time, terminating it');
    // Its actors are stopped and committed: a thread that lingers (an open handle) is ended.
    if ((await this.within(exited.then(() => 'exited' as const), first === 'closed' ? 1000 : 0)) !== 'exited') await w.terminate();
  }

  /** `p`'s value, or 'timeout' after `ms`. */
  private async within<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
    let timer: TimerHandle | undefined;
    const timeout = new Promise<'timeout'>((r) => (timer = this.o.clock.setTimeout(() => r('timeout'), ms)));
    try {
      return await Promise.race([p, timeout]);
    } finally {
      if (timer) this.o.clock.clearTimeout(timer);
    }
  }
}
