import type { Clock, TimerHandle } from '../clock.ts';
import type { Logger } from '../logger.ts';
import { errMeta } from '../supervisor.ts';
import { planRound, type PlacementAction, type PlannerOptions } from './planner.ts';
import type { PlacementStore } from './placement-store.ts';
import { planUnits, type UnitAction } from './unit-planner.ts';

export interface ControllerOptions extends PlannerOptions {
  /** Period of a placement round. */
  roundMs: number;
  /** Controller lease; another node takes over when the leader stops renewing it. */
  leaderTtlMs: number;
}

/**
 * The placement controller. Every node runs one; the node holding the Redis lease acts. A round
 * reads members and the table, plans (planner.ts) and applies the actions. Fencing makes a stale
 * leader harmless: at worst it bumps an epoch once too often.
 */
export class PlacementController {
  private timer: TimerHandle | undefined;
  private closed = false;
  private running: Promise<void> | undefined;
  isLeader = false;

  constructor(
    private readonly nodeId: string,
    private readonly store: PlacementStore,
    private readonly opts: ControllerOptions,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  start(): void {
    const loop = (): void => {
      if (this.closed) return;
      this.running = this.round()
        .then(() => undefined)
        .catch((err: unknown) => this.log.warn({ err: errMeta(err) }, 'placement round failed'))
        .finally(() => {
          if (!this.closed) this.timer = this.clock.setTimeout(loop, this.opts.roundMs);
        });
    };
    loop();
  }

  /** One round; returns what it did (for tests and `adagg rebalance`). */
  async round(): Promise<PlacementAction[]> {
    this.isLeader = await this.store.lead(this.nodeId, this.opts.leaderTtlMs);
    if (!this.isLeader) return [];
    const now = this.clock.now();
    const [table, nodes] = await Promise.all([this.store.read(), this.store.nodes(now)]);
    const actions = planRound(table, nodes, this.opts, now);
    for (const a of actions) {
      try {
        await this.apply(a, now);
        this.log.info({ action: a }, 'placement action');
      } catch (err) {
        this.log.warn({ action: a, err: errMeta(err) }, 'placement action failed');
      }
    }
    await this.unitRound(table, nodes, now);
    return actions;
  }

  /** Hot child units are placed by the same rules (unit-planner.ts), from their own hash. */
  private async unitRound(table: Awaited<ReturnType<PlacementStore['read']>>, nodes: Awaited<ReturnType<PlacementStore['nodes']>>, now: number): Promise<void> {
    const units = await this.store.readUnits();
    if (units.length === 0) return;
    for (const a of planUnits(units, table, nodes, this.opts, now)) {
      try {
        await this.applyUnit(a, now);
        this.log.info({ action: a }, 'placement action');
      } catch (err) {
        this.log.warn({ action: a, err: errMeta(err) }, 'placement action failed');
      }
    }
  }

  private async applyUnit(a: UnitAction, now: number): Promise<void> {
    if (a.kind === 'assign' || a.kind === 'force') await this.store.assignUnit(a.unit, a.to, now);
    else if (a.kind === 'move') await this.store.requestUnitMove(a.unit, a.to, now);
    else await this.store.cancelUnitMove(a.unit);
  }

  private async apply(a: PlacementAction, now: number): Promise<void> {
    switch (a.kind) {
      case 'assign':
      case 'force':
        await this.store.assign(a.shard, a.to, now);
        return;
      case 'move':
        await this.store.requestMove(a.shard, a.to, now);
        return;
      case 'cancel':
        await this.store.cancelMove(a.shard);
        return;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) this.clock.clearTimeout(this.timer);
    await this.running;
  }
}
