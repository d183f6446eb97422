import { describe, expect, it } from 'vitest';
import { desiredOwners, planRound, type PlannerOptions } from '../../src/runtime/placement/planner.ts';
import { rendezvousOwner } from '../../src/runtime/placement/rendezvous.ts';
import type { NodeView, PlacementTable } from '../../src/runtime/placement/types.ts';

const OPTS: PlannerOptions = { maxMovesPerRound: 2, joinGraceMs: 10_000, minNodes: 1, handoffTimeoutMs: 10_000 };
const NOW = 1_000_000;

function node(id: string, o: Partial<NodeView> = {}): NodeView {
  return { id, address: id, startedAt: NOW - 60_000, heartbeatAt: NOW, rssBytes: 0, eventsPerSec: 0, shards: {}, alive: true, draining: false, ...o };
}

function table(owners: Array<string | null>, o: Partial<PlacementTable> = {}): PlacementTable {
  return {
    version: 1,
    suspended: false,
    entries: owners.map((owner, shard) => ({ shard, owner, epoch: owner ? 1 : 0, movingTo: null, movingSince: null, pinned: null, since: 0 })),
    ...o,
  };
}

describe('placement planner', () => {
  it('rendezvous is balanced and moves only the shards a leaving node held', () => {
    const nodes = ['a', 'b', 'c'];
    const before = Array.from({ length: 300 }, (_, s) => rendezvousOwner(s, nodes)!);
    for (const n of nodes) expect(before.filter((o) => o === n).length).toBeGreaterThan(70);
    const after = Array.from({ length: 300 }, (_, s) => rendezvousOwner(s, ['a', 'c'])!);
    before.forEach((o, s) => {
      if (o !== 'b') expect(after[s]).toBe(o);
    });
  });

  it('assigns unowned shards and shards of dead nodes at once, without a move limit', () => {
    const nodes = [node('a'), node('b'), node('dead', { alive: false })];
    const actions = planRound(table([null, 'dead', 'dead', 'dead']), nodes, OPTS, NOW);
    expect(actions.filter((a) => a.kind === 'assign')).toHaveLength(4);
    expect(actions.every((a) => a.kind === 'assign' && (a.to === 'a' || a.to === 'b'))).toBe(true);
  });

  it('waits for minNodes before the first assignment', () => {
    expect(planRound(table([null, null]), [node('a')], { ...OPTS, minNodes: 2 }, NOW)).toEqual([]);
  });

  it('drains at most maxMovesPerRound shards per round and never to a draining node', () => {
    const nodes = [node('a', { draining: true }), node('b')];
    const actions = planRound(table(['a', 'a', 'a', 'a']), nodes, OPTS, NOW);
    expect(actions).toHaveLength(2);
    expect(actions.every((a) => a.kind === 'move' && a.to === 'b' && a.reason === 'drain')).toBe(true);
  });

  it('gives a freshly joined node no shards during its grace, but a current owner stays eligible', () => {
    const fresh = node('new', { startedAt: NOW - 1000 });
    const owners = Array.from({ length: 20 }, () => 'a');
    expect(planRound(table(owners), [node('a'), fresh], OPTS, NOW)).toEqual([]);
    // Two owners, one still in its grace: nothing is pulled to the other (no start-up flapping).
    const mixed = Array.from({ length: 20 }, (_, s) => (s % 2 ? 'x' : 'y'));
    const desired = desiredOwners(table(mixed), [node('x', { startedAt: NOW - 1000 }), node('y')], OPTS, NOW);
    expect(new Set(desired.values())).toEqual(new Set(['x', 'y']));
  });

  it('honours pins, suspension, and forces timed-out handoffs', () => {
    const t = table(['a', 'a']);
    t.entries[0]!.pinned = 'b';
    expect(planRound(t, [node('a'), node('b')], OPTS, NOW)).toContainEqual({ kind: 'move', shard: 0, to: 'b', reason: 'pin' });
    expect(planRound({ ...t, suspended: true }, [node('a'), node('b')], OPTS, NOW).filter((a) => a.kind === 'move')).toEqual([]);
    const moving = table(['a']);
    moving.entries[0]!.movingTo = 'b';
    moving.entries[0]!.movingSince = NOW - 20_000;
    expect(planRound(moving, [node('a'), node('b')], OPTS, NOW)).toContainEqual({ kind: 'force', shard: 0, to: 'b' });
    moving.entries[0]!.movingTo = 'gone';
    expect(planRound(moving, [node('a'), node('b')], OPTS, NOW)).toContainEqual({ kind: 'cancel', shard: 0 });
  });
});
