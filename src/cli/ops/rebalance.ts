/** `adagg rebalance [--dry-run]`, `adagg rebalance suspend|resume`. */
import { parseArgs } from 'node:util';
import { AdaggError, ErrorCode } from '../../errors.ts';
import { desiredOwners, planRound, type PlacementAction } from '../../runtime/placement/planner.ts';
import { UsageError, withOps, type OpsContext } from './context.ts';
import { formatTable } from './table.ts';

export interface PlannedAction {
  kind: PlacementAction['kind'];
  shard: number;
  from: string | null;
  to: string | null;
  reason: string;
  /** Handoff moves are requested by this command; assign/force/cancel stay the controller's job. */
  byController: boolean;
}

export interface RebalancePlan {
  version: number;
  suspended: boolean;
  /** Shards not on the node the planner wants them on (this round moves at most maxMovesPerRound). */
  misplaced: number;
  maxMovesPerRound: number;
  actions: PlannedAction[];
}

/**
 * The controller's next round as the planner computes it now. Rebalancing is planned even while
 * suspended: an explicit `adagg rebalance` is the operator asking for it.
 */
export async function planRebalance(ctx: OpsContext, now = Date.now()): Promise<RebalancePlan> {
  const [table, nodes] = await Promise.all([ctx.store.read(), ctx.store.nodes(now)]);
  const desired = desiredOwners(table, nodes, ctx.planner, now);
  const actions = planRound({ ...table, suspended: false }, nodes, ctx.planner, now);
  const owner = (shard: number): string | null => table.entries[shard]?.owner ?? null;
  return {
    version: table.version,
    suspended: table.suspended,
    misplaced: table.entries.filter((e) => e.owner !== null && desired.has(e.shard) && desired.get(e.shard) !== e.owner).length,
    maxMovesPerRound: ctx.planner.maxMovesPerRound,
    actions: actions.map((a) => ({
      kind: a.kind,
      shard: a.shard,
      from: owner(a.shard),
      to: a.kind === 'cancel' ? null : a.to,
      reason: a.kind === 'move' || a.kind === 'assign' ? a.reason : a.kind === 'force' ? 'handoff_timeout' : 'target_dead',
      byController: a.kind !== 'move',
    })),
  };
}

/** Requests the plan's handoffs, each compare-and-set on the version the plan was read at. */
export async function applyPlan(ctx: OpsContext, plan: RebalancePlan): Promise<number> {
  let v = plan.version;
  let done = 0;
  const moves = plan.actions.filter((a) => a.kind === 'move');
  for (const a of moves) {
    try {
      // A requested move bumps the version by exactly one; 0 means "already there" (no change).
      if ((await ctx.store.requestMove(a.shard, a.to!, Date.now(), v)) === 1) v++;
      done++;
    } catch (err) {
      if ((err as AdaggError).code !== ErrorCode.PlacementConflict) throw err;
      throw new AdaggError(
        ErrorCode.PlacementConflict,
        `the placement changed while rebalancing (read v${plan.version}); requested ${done} of ${moves.length} moves, run 'adagg rebalance' again`,
        { cause: err },
      );
    }
  }
  return done;
}

export function renderPlan(p: RebalancePlan): string {
  if (p.actions.length === 0) return `nothing to do: every shard is where the planner wants it (placement v${p.version})`;
  const table = formatTable(
    [{ header: 'ACTION' }, { header: 'SHARD', align: 'right' }, { header: 'FROM' }, { header: 'TO' }, { header: 'REASON' }],
    p.actions.map((a) => [a.kind, String(a.shard), a.from ?? '-', a.to ?? '-', a.byController ? `${a.reason} (controller)` : a.reason]),
  );
  const moves = p.actions.filter((a) => a.kind === 'move').length;
  const notes = [`${moves} handoff${moves === 1 ? '' : 's'} this round (at most ${p.maxMovesPerRound} per round)`, `shards away from their target: ${p.misplaced}`];
  if (p.suspended) notes.push('rebalancing is suspended: the controller itself will not start these');
  return `${table}\n${notes.join(' · ')}`;
}

export async function rebalanceCommand(args: string[]): Promise<number> {
  const { values, positionals: rest } = parseArgs({
    args,
    allowPositionals: true,
    options: { 'dry-run': { type: 'boolean' }, json: { type: 'boolean' } },
  });
  const [sub, extra] = rest;
  if (extra !== undefined) throw new UsageError(`unexpected argument '${extra}'`);
  if (sub !== undefined) {
    if (sub !== 'suspend' && sub !== 'resume') throw new UsageError(`unknown subcommand '${sub}' (suspend or resume)`);
    if (values['dry-run']) throw new UsageError(`--dry-run does not apply to 'rebalance ${sub}'`);
    return withOps(async (ctx) => {
      const was = (await ctx.store.read()).suspended;
      const on = sub === 'suspend';
      const version = await ctx.store.setSuspended(on);
      if (values.json) console.log(JSON.stringify({ suspended: on, was, version }));
      else if (on) console.log(was ? 'rebalancing was already suspended' : 'rebalancing suspended: the controller starts no handoffs (dead nodes\' shards are still reassigned)');
      else console.log(was ? 'rebalancing resumed' : 'rebalancing was not suspended');
      return 0;
    });
  }
  return withOps(async (ctx) => {
    const plan = await planRebalance(ctx);
    const dry = values['dry-run'] === true;
    const requested = dry ? 0 : await applyPlan(ctx, plan);
    if (values.json) console.log(JSON.stringify({ ...plan, dryRun: dry, requested }, null, 2));
    else {
      console.log(renderPlan(plan));
      if (plan.actions.length > 0) {
        console.log(dry ? 'dry run: nothing changed' : `requested ${requested} handoff${requested === 1 ? '' : 's'}; follow them with: adagg placement --watch`);
      }
    }
    return 0;
  });
}
