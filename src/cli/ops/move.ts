/** `adagg move SHARD NODE [--wait]`, `adagg pin SHARD NODE`, `adagg unpin SHARD`. */
import { parseArgs } from 'node:util';
import { AdaggError, ErrorCode } from '../../errors.ts';
import type { PlacementEntry } from '../../runtime/placement/types.ts';
import { findNode, parseShard, positionals, requireEligible, timeoutMs, waitUntil, withOps, type OpsContext } from './context.ts';
import { formatDuration } from './table.ts';

export interface MoveResult {
  shard: number;
  from: string | null;
  to: string;
  /** Table version the command read; its changes were compare-and-set against it. */
  version: number;
  pinned: boolean;
  /** 'requested': handoff asked of the live owner; 'already': it is there; 'controller': no live owner, the controller assigns it. */
  handoff: 'requested' | 'already' | 'controller';
  /** With --wait: the new owner's epoch and how long the move took. */
  epoch?: number;
  ms?: number;
}

/** Pins `shard` to `to` and asks its owner to hand it off now; both steps compare-and-set from one read. */
export async function moveShard(ctx: OpsContext, shardArg: string, to: string): Promise<MoveResult> {
  const shard = parseShard(shardArg, ctx.opts.shards);
  const now = Date.now();
  const [table, nodes] = await Promise.all([ctx.store.read(), ctx.store.nodes(now)]);
  requireEligible(findNode(to, nodes), now);
  const e = table.entries[shard]!;
  const v = table.version;
  try {
    await ctx.store.pin(shard, to, v);
  } catch (err) {
    throw conflict(err, `shard ${shard}: the placement changed while this command ran (read v${v}); nothing was changed, run the command again`);
  }
  const base: MoveResult = { shard, from: e.owner, to, version: v, pinned: true, handoff: 'already' };
  if (e.owner === to) return base;
  const ownerAlive = nodes.some((n) => n.id === e.owner && n.alive);
  if (e.owner === null || !ownerAlive) return { ...base, handoff: 'controller' };
  try {
    // The pin took v → v+1 in one step, so v+1 still means "nothing else changed since our read".
    await ctx.store.requestMove(shard, to, Date.now(), v + 1);
  } catch (err) {
    throw conflict(
      err,
      `shard ${shard}: pinned to ${to}, but the placement changed before the handoff was requested (read v${v}); ` +
        `the controller moves it in its next rounds, or run the command again`,
    );
  }
  return { ...base, handoff: 'requested' };
}

/** Rewrites a compare-and-set failure with a message for this command; other errors pass through. */
function conflict(err: unknown, message: string): unknown {
  return (err as AdaggError | undefined)?.code === ErrorCode.PlacementConflict
    ? new AdaggError(ErrorCode.PlacementConflict, message, { cause: err })
    : err;
}

/** Waits until `shard` is owned by `to` with no handoff in progress. */
export function waitOwner(ctx: OpsContext, shard: number, to: string, ms: number): Promise<PlacementEntry> {
  return waitUntil(
    async () => {
      const e = (await ctx.store.read()).entries[shard]!;
      return e.owner === to && e.movingTo === null ? e : undefined;
    },
    ms,
    async () => {
      const e = (await ctx.store.read()).entries[shard]!;
      return `shard ${shard} is still owned by ${e.owner ?? 'nobody'}${e.movingTo ? ` (moving to ${e.movingTo})` : ''}, not ${to}`;
    },
  );
}

export async function moveCommand(args: string[]): Promise<number> {
  const { values, positionals: rest } = parseArgs({
    args,
    allowPositionals: true,
    options: { wait: { type: 'boolean' }, timeout: { type: 'string' }, json: { type: 'boolean' } },
  });
  const [shardArg, node] = positionals(rest, ['SHARD', 'NODE']) as [string, string];
  const waitMs = timeoutMs(values.timeout, 30);
  return withOps(async (ctx) => {
    const t0 = Date.now();
    const r = await moveShard(ctx, shardArg, node);
    const say = (s: string): void => {
      if (!values.json) console.log(s);
    };
    if (r.handoff === 'already') say(`shard ${r.shard} is already on ${node}; pinned it there`);
    else if (r.handoff === 'controller') {
      say(`shard ${r.shard} has no live owner (${r.from ?? 'unassigned'}); pinned to ${node}, the controller assigns it there`);
    } else say(`shard ${r.shard}: pinned to ${node} and asked ${r.from} to hand it off (placement v${r.version} → v${r.version + 2})`);
    if (values.wait) {
      const e = await waitOwner(ctx, r.shard, node, waitMs);
      r.epoch = e.epoch;
      r.ms = Date.now() - t0;
      say(`shard ${r.shard} now on ${node} (epoch ${e.epoch}); handoff took ${formatDuration(r.ms)}`);
    } else if (r.handoff !== 'already') say(`follow it with: adagg placement --watch`);
    if (values.json) console.log(JSON.stringify(r));
    return 0;
  });
}

export async function pinCommand(args: string[]): Promise<number> {
  const { values, positionals: rest } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' } } });
  const [shardArg, node] = positionals(rest, ['SHARD', 'NODE']) as [string, string];
  return withOps(async (ctx) => {
    const shard = parseShard(shardArg, ctx.opts.shards);
    const now = Date.now();
    const [table, nodes] = await Promise.all([ctx.store.read(), ctx.store.nodes(now)]);
    requireEligible(findNode(node, nodes), now);
    const e = table.entries[shard]!;
    try {
      await ctx.store.pin(shard, node, table.version);
    } catch (err) {
      throw conflict(err, `shard ${shard}: the placement changed while this command ran (read v${table.version}); nothing was changed, run it again`);
    }
    if (values.json) console.log(JSON.stringify({ shard, pinned: node, owner: e.owner, version: table.version }));
    else if (e.owner === node) console.log(`shard ${shard} pinned to ${node} (already there)`);
    else {
      console.log(
        `shard ${shard} pinned to ${node}; the controller moves it from ${e.owner ?? 'nobody'} in its next rounds` +
          (table.suspended ? ' once rebalancing is resumed (adagg rebalance resume)' : ''),
      );
    }
    return 0;
  });
}

export async function unpinCommand(args: string[]): Promise<number> {
  const { values, positionals: rest } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' } } });
  const [shardArg] = positionals(rest, ['SHARD']) as [string];
  return withOps(async (ctx) => {
    const shard = parseShard(shardArg, ctx.opts.shards);
    const table = await ctx.store.read();
    const was = table.entries[shard]!.pinned;
    if (was !== null) {
      try {
        await ctx.store.pin(shard, null, table.version);
      } catch (err) {
        throw conflict(err, `shard ${shard}: the placement changed while this command ran (read v${table.version}); nothing was changed, run it again`);
      }
    }
    if (values.json) console.log(JSON.stringify({ shard, unpinned: was, version: table.version }));
    else console.log(was === null ? `shard ${shard} was not pinned` : `shard ${shard} unpinned (was ${was}); the controller may rebalance it`);
    return 0;
  });
}
