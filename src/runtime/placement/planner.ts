import { rendezvousOwner } from './rendezvous.ts';
import type { NodeView, PlacementTable } from './types.ts';

export interface PlannerOptions {
  /** Handoffs started per round (drains and rebalancing). */
  maxMovesPerRound: number;
  /** A node (re)started less than this ago receives no rebalanced shards: no flapping. */
  joinGraceMs: number;
  /** Shards are first assigned only once this many nodes are alive. */
  minNodes: number;
  /** A handoff the old owner has not completed by then is forced (fencing keeps it safe). */
  handoffTimeoutMs: number;
}

export type PlacementAction =
  /** The owner is missing or dead: give the shard to `to` now, with a new epoch. */
  | { kind: 'assign'; shard: number; to: string; reason: 'unassigned' | 'owner_dead' }
  /** Ask the live owner to hand the shard off to `to`. */
  | { kind: 'move'; shard: number; to: string; reason: 'rebalance' | 'pin' | 'drain' }
  /** A handoff timed out: take the shard from its owner with a new epoch. */
  | { kind: 'force'; shard: number; to: string }
  /** The handoff target died: forget the handoff (the next round plans again). */
  | { kind: 'cancel'; shard: number };

/** Where every shard should live: its pin if that node can take it, else rendezvous over eligible nodes. */
export function desiredOwners(table: PlacementTable, nodes: readonly NodeView[], opts: PlannerOptions, now: number): Map<number, string> {
  const live = nodes.filter((n) => n.alive && !n.draining);
  // Grace keeps shards off nodes that just (re)joined; a node that already owns shards is part of
  // the placement and stays eligible, or the first node out of grace would pull every shard to it.
  const owners = new Set(table.entries.map((e) => e.owner));
  const settled = live.filter((n) => now - n.startedAt >= opts.joinGraceMs || owners.has(n.id)).map((n) => n.id);
  const eligible = settled.length > 0 ? settled : live.map((n) => n.id);
  const liveIds = new Set(live.map((n) => n.id));
  const out = new Map<number, string>();
  for (const e of table.entries) {
    const to = e.pinned && liveIds.has(e.pinned) ? e.pinned : rendezvousOwner(e.shard, eligible);
    if (to) out.set(e.shard, to);
  }
  return out;
}

/** One round of the controller: a pure function of the table, the members and the clock. */
export function planRound(table: PlacementTable, nodes: readonly NodeView[], opts: PlannerOptions, now: number): PlacementAction[] {
  const alive = new Set(nodes.filter((n) => n.alive).map((n) => n.id));
  const draining = new Set(nodes.filter((n) => n.draining).map((n) => n.id));
  const bootstrapped = table.entries.some((e) => e.owner !== null);
  if (!bootstrapped && nodes.filter((n) => n.alive && !n.draining).length < opts.minNodes) return [];
  const desired = desiredOwners(table, nodes, opts, now);
  const actions: PlacementAction[] = [];
  let moving = 0;
  for (const e of table.entries) {
    if (e.movingTo === null) continue;
    if (!alive.has(e.movingTo)) actions.push({ kind: 'cancel', shard: e.shard });
    else if (e.owner === null || !alive.has(e.owner) || now - (e.movingSince ?? now) > opts.handoffTimeoutMs) {
      actions.push({ kind: 'force', shard: e.shard, to: e.movingTo });
    } else moving++;
  }
  for (const e of table.entries) {
    const to = desired.get(e.shard);
    if (!to) continue;
    if (e.owner === null || !alive.has(e.owner)) {
      if (e.movingTo === null || !alive.has(e.movingTo)) {
        actions.push({ kind: 'assign', shard: e.shard, to, reason: e.owner === null ? 'unassigned' : 'owner_dead' });
      }
      continue;
    }
    if (e.owner === to || e.movingTo !== null) continue;
    const reason = draining.has(e.owner) ? 'drain' : e.pinned === to ? 'pin' : 'rebalance';
    if (table.suspended) continue;
    if (moving >= opts.maxMovesPerRound) continue;
    actions.push({ kind: 'move', shard: e.shard, to, reason });
    moving++;
  }
  return actions;
}
