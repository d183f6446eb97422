import type { PlannerOptions } from './planner.ts';
import { rendezvousOwner } from './rendezvous.ts';
import type { NodeView, PlacementTable, UnitEntry } from './types.ts';

/** What the controller does with a hot child unit (as with a shard, see planner.ts). */
export type UnitAction =
  | { kind: 'assign'; unit: string; to: string; reason: 'unassigned' | 'owner_dead' }
  | { kind: 'move'; unit: string; to: string; reason: 'rebalance' | 'drain' }
  | { kind: 'force'; unit: string; to: string }
  | { kind: 'cancel'; unit: string };

/**
 * Where each child unit should live: rendezvous over the eligible nodes (as shards), preferring
 * nodes that hold neither the parent shard nor a sibling of the same split, so a hot ad's load
 * spreads over the cluster. Deterministic on every node.
 */
export function desiredUnitOwners(
  units: readonly UnitEntry[],
  table: PlacementTable,
  nodes: readonly NodeView[],
  opts: PlannerOptions,
  now: number,
): Map<string, string> {
  const live = nodes.filter((n) => n.alive && !n.draining);
  // As for shards: a node that already owns something stays eligible during its join grace.
  const owners = new Set<string | null>([...table.entries.map((e) => e.owner), ...units.map((u) => u.owner)]);
  const settled = live.filter((n) => now - n.startedAt >= opts.joinGraceMs || owners.has(n.id)).map((n) => n.id);
  const eligible = settled.length > 0 ? settled : live.map((n) => n.id);
  const out = new Map<string, string>();
  const groups = new Map<string, UnitEntry[]>();
  for (const u of units) {
    const key = `${u.ad}\u0000${u.gen}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = []));
    g.push(u);
  }
  for (const g of groups.values()) {
    g.sort((a, b) => a.k - b.k);
    const parentOwner = table.entries[g[0]!.parent]?.owner ?? null;
    const taken = new Set<string>();
    for (const u of g) {
      const tiers = [
        eligible.filter((n) => n !== parentOwner && !taken.has(n)),
        eligible.filter((n) => !taken.has(n)),
        eligible.filter((n) => n !== parentOwner),
        eligible,
      ];
      const tier = tiers.find((t) => t.length > 0);
      const to = tier ? rendezvousOwner(hashUnit(u.unit), tier) : undefined;
      if (!to) continue;
      taken.add(to);
      out.set(u.unit, to);
    }
  }
  return out;
}

/** One controller round for child units: a pure function like planRound (same options and limits). */
export function planUnits(units: readonly UnitEntry[], table: PlacementTable, nodes: readonly NodeView[], opts: PlannerOptions, now: number): UnitAction[] {
  const alive = new Set(nodes.filter((n) => n.alive).map((n) => n.id));
  const draining = new Set(nodes.filter((n) => n.draining).map((n) => n.id));
  const desired = desiredUnitOwners(units, table, nodes, opts, now);
  const actions: UnitAction[] = [];
  let moving = 0;
  for (const u of units) {
    if (u.movingTo === null) continue;
    if (!alive.has(u.movingTo)) actions.push({ kind: 'cancel', unit: u.unit });
    else if (u.owner === null || !alive.has(u.owner) || now - (u.movingSince ?? now) > opts.handoffTimeoutMs) {
      actions.push({ kind: 'force', unit: u.unit, to: u.movingTo });
    } else moving++;
  }
  for (const u of units) {
    const to = desired.get(u.unit);
    if (!to) continue;
    if (u.owner === null || !alive.has(u.owner)) {
      if (u.movingTo === null || !alive.has(u.movingTo)) {
        actions.push({ kind: 'assign', unit: u.unit, to, reason: u.owner === null ? 'unassigned' : 'owner_dead' });
      }
      continue;
    }
    if (u.owner === to || u.movingTo !== null || table.suspended || moving >= opts.maxMovesPerRound) continue;
    actions.push({ kind: 'move', unit: u.unit, to, reason: draining.has(u.owner) ? 'drain' : 'rebalance' });
    moving++;
  }
  return actions;
}

/** FNV-1a of the unit id: the number rendezvous hashing mixes with each node's hash. */
function hashUnit(unit: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < unit.length; i++) h = Math.imul(h ^ unit.charCodeAt(i), 0x01000193);
  return (h >>> 0) % 0x7fffffff;
}
