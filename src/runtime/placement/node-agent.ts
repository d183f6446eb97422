import os from 'node:os';
import type { Clock, TimerHandle } from '../clock.ts';
import type { Logger } from '../logger.ts';
import { errMeta } from '../supervisor.ts';
import type { PlacementStore } from './placement-store.ts';
import type { NodeRecord, ShardStats, UnitEntry } from './types.ts';

/** Hot child units (runtime/hot) running on this node, driven like shards. */
export interface LocalUnits {
  running(): ReadonlyMap<string, number>;
  start(unit: UnitEntry, epoch: number): void;
  stop(unit: string): Promise<void>;
}

/** What the agent drives on its node. */
export interface LocalShards {
  /** Shards running here with the epoch they run under. */
  running(): ReadonlyMap<number, number>;
  start(shard: number, epoch: number): void;
  /** Stops the actor after a final commit (drain); resolves when it has stopped. */
  stop(shard: number): Promise<void>;
  stats(): { eventsPerSec: number; shards: Record<string, ShardStats> };
  /** Hot child units, when this node hosts them (managed mode). */
  units?: LocalUnits;
}

export interface AgentOptions {
  heartbeatMs: number;
  reconcileMs: number;
}

/**
 * A node's membership and obedience to the placement table: heartbeats, starts the shards it
 * owns under their epoch, stops the ones it lost, and performs handoffs: stop consuming, final
 * snapshot, then release the shard to its new owner in one atomic step.
 */
export class NodeAgent {
  private readonly startedAt: number;
  private readonly handoffs = new Map<number, Promise<void>>();
  private readonly unitHandoffs = new Map<string, Promise<void>>();
  private readonly timers = new Map<string, TimerHandle>();
  private closed = false;
  private reconciling: Promise<void> | undefined;

  constructor(
    readonly nodeId: string,
    private readonly store: PlacementStore,
    private readonly local: LocalShards,
    private readonly opts: AgentOptions,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    this.startedAt = clock.now();
  }

  start(): void {
    this.every('heartbeat', this.opts.heartbeatMs, () => this.heartbeat());
    this.every('reconcile', this.opts.reconcileMs, () => (this.reconciling = this.reconcile()));
  }

  private every(name: string, ms: number, fn: () => Promise<void>): void {
    const loop = (): void => {
      if (this.closed) return;
      void fn()
        .catch((err: unknown) => this.log.warn({ node: this.nodeId, err: errMeta(err) }, 'placement agent step failed'))
        .finally(() => {
          if (!this.closed) this.timers.set(name, this.clock.setTimeout(loop, ms));
        });
    };
    loop();
  }

  async heartbeat(): Promise<void> {
    const stats = this.local.stats();
    const rec: NodeRecord = {
      id: this.nodeId,
      address: `${os.hostname()}:${process.pid}`,
      startedAt: this.startedAt,
      heartbeatAt: this.clock.now(),
      rssBytes: process.memoryUsage.rss(),
      eventsPerSec: stats.eventsPerSec,
      shards: stats.shards,
    };
    await this.store.heartbeat(rec);
  }

  /** Makes the local actors match the table. */
  async reconcile(): Promise<void> {
    const table = await this.store.read();
    const running = this.local.running();
    for (const e of table.entries) {
      const mine = e.owner === this.nodeId;
      const epoch = running.get(e.shard);
      if (this.handoffs.has(e.shard)) continue;
      if (mine && e.movingTo !== null && epoch === e.epoch) {
        this.handoffs.set(e.shard, this.handoff(e.shard, e.epoch, e.movingTo));
        continue;
      }
      if (mine && epoch === undefined && e.since < this.startedAt) {
        // Assigned to an earlier process with this node id (restarted after a crash): take a new
        // epoch first, so that process, should it still be alive, can no longer write; then start
        // under it at once (a restart is not kept waiting for the next reconcile).
        const next = await this.store.assign(e.shard, this.nodeId, this.clock.now());
        this.log.info({ node: this.nodeId, shard: e.shard, epoch: next }, 'shard assigned here');
        this.local.start(e.shard, next);
        continue;
      }
      if (mine && epoch !== e.epoch) {
        if (epoch !== undefined) await this.local.stop(e.shard);
        this.log.info({ node: this.nodeId, shard: e.shard, epoch: e.epoch }, 'shard assigned here');
        this.local.start(e.shard, e.epoch);
      } else if (!mine && epoch !== undefined) {
        this.log.info({ node: this.nodeId, shard: e.shard, owner: e.owner }, 'shard owned elsewhere, stopping it here');
        await this.local.stop(e.shard);
      }
    }
    if (this.local.units) await this.reconcileUnits(this.local.units);
  }

  /** The same rules for hot child units, plus: a unit gone from the table (split over) is stopped. */
  private async reconcileUnits(local: LocalUnits): Promise<void> {
    const units = await this.store.readUnits();
    const running = local.running();
    const known = new Set<string>();
    for (const u of units) {
      known.add(u.unit);
      const mine = u.owner === this.nodeId;
      const epoch = running.get(u.unit);
      if (this.unitHandoffs.has(u.unit)) continue;
      if (mine && u.movingTo !== null && epoch === u.epoch) {
        this.unitHandoffs.set(u.unit, this.unitHandoff(local, u.unit, u.epoch));
        continue;
      }
      if (mine && epoch === undefined && u.since < this.startedAt) {
        await this.store.assignUnit(u.unit, this.nodeId, this.clock.now());
        continue;
      }
      if (mine && epoch !== u.epoch) {
        if (epoch !== undefined) await local.stop(u.unit);
        this.log.info({ node: this.nodeId, unit: u.unit, epoch: u.epoch }, 'hot child assigned here');
        local.start(u, u.epoch);
      } else if (!mine && epoch !== undefined) {
        await local.stop(u.unit);
      }
    }
    for (const unit of running.keys()) {
      if (known.has(unit) || this.unitHandoffs.has(unit)) continue;
      this.log.info({ node: this.nodeId, unit }, 'hot child removed from placement, stopping it');
      await local.stop(unit);
      await this.store.expireUnitKeys([unit]);
    }
  }

  private async unitHandoff(local: LocalUnits, unit: string, epoch: number): Promise<void> {
    try {
      await local.stop(unit);
      await this.store.releaseUnit(unit, this.nodeId, epoch, this.clock.now());
    } catch (err) {
      this.log.warn({ node: this.nodeId, unit, err: errMeta(err) }, 'hot child handoff release failed');
    } finally {
      this.unitHandoffs.delete(unit);
    }
  }

  private async handoff(shard: number, epoch: number, to: string): Promise<void> {
    const t0 = this.clock.now();
    try {
      await this.local.stop(shard); // stops consuming, then the final commit under `epoch`
      const next = await this.store.release(shard, this.nodeId, epoch, this.clock.now());
      this.log.info({ node: this.nodeId, shard, to, epoch: next, ms: this.clock.now() - t0 }, 'shard handed off');
    } catch (err) {
      // Fenced or timed out: the controller forces the move; nothing of ours can be written any more.
      this.log.warn({ node: this.nodeId, shard, err: errMeta(err) }, 'handoff release failed');
    } finally {
      this.handoffs.delete(shard);
    }
  }

  /** Stops heartbeating and leaves the member list; the local actors are stopped by the node. */
  async close(leave = true): Promise<void> {
    this.closed = true;
    for (const t of this.timers.values()) this.clock.clearTimeout(t);
    await this.reconciling?.catch(() => undefined);
    await Promise.allSettled(this.handoffs.values());
    await Promise.allSettled(this.unitHandoffs.values());
    if (leave) await this.store.removeNode(this.nodeId).catch(() => undefined);
  }
}
