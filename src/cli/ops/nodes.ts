/** `adagg nodes [--json]`: the cluster's members as the placement controller sees them. */
import { parseArgs } from 'node:util';
import type { PlacementStore } from '../../runtime/placement/placement-store.ts';
import { ownedCounts, positionals, withOps } from './context.ts';
import { formatAgo, formatCount, formatDuration, formatMiB, formatTable } from './table.ts';

export type NodeState = 'alive' | 'dead' | 'draining' | 'gone';

export interface NodeRow {
  id: string;
  /** host:pid of the node process. */
  address: string | null;
  /** alive; draining (alive, shards being moved off); dead (heartbeat too old); gone (owns shards but left the member list). */
  state: NodeState;
  alive: boolean;
  draining: boolean;
  leader: boolean;
  startedAt: number | null;
  uptimeMs: number | null;
  /** Shards the placement table gives this node. */
  shards: number;
  eventsPerSec: number | null;
  rssBytes: number | null;
  heartbeatAt: number | null;
  heartbeatAgeMs: number | null;
}

export interface NodesReport {
  at: number;
  leader: string | null;
  placementVersion: number;
  suspended: boolean;
  shards: number;
  unassigned: number;
  nodes: NodeRow[];
}

export async function nodesReport(store: PlacementStore, now = Date.now()): Promise<NodesReport> {
  const [table, nodes, leader] = await Promise.all([store.read(), store.nodes(now), store.leader()]);
  const owned = ownedCounts(table);
  const rows: NodeRow[] = nodes.map((n) => ({
    id: n.id,
    address: n.address,
    state: !n.alive ? 'dead' : n.draining ? 'draining' : 'alive',
    alive: n.alive,
    draining: n.draining,
    leader: n.id === leader,
    startedAt: n.startedAt,
    uptimeMs: now - n.startedAt,
    shards: owned.get(n.id) ?? 0,
    eventsPerSec: n.eventsPerSec,
    rssBytes: n.rssBytes,
    heartbeatAt: n.heartbeatAt,
    heartbeatAgeMs: now - n.heartbeatAt,
  }));
  // Owners in the table without a member record (left the cluster; the controller reassigns).
  for (const [id, count] of owned) {
    if (nodes.some((n) => n.id === id)) continue;
    rows.push({
      id, address: null, state: 'gone', alive: false, draining: false, leader: id === leader, startedAt: null,
      uptimeMs: null, shards: count, eventsPerSec: null, rssBytes: null, heartbeatAt: null, heartbeatAgeMs: null,
    });
  }
  return {
    at: now,
    leader,
    placementVersion: table.version,
    suspended: table.suspended,
    shards: table.entries.length,
    unassigned: table.entries.filter((e) => e.owner === null).length,
    nodes: rows,
  };
}

export function renderNodes(r: NodesReport): string {
  const table = formatTable(
    [
      { header: 'NODE' },
      { header: 'ADDRESS' },
      { header: 'STATE' },
      { header: 'UPTIME', align: 'right' },
      { header: 'SHARDS', align: 'right' },
      { header: 'EVENTS/S', align: 'right' },
      { header: 'RSS MiB', align: 'right' },
      { header: 'LAST HEARTBEAT', align: 'right' },
    ],
    r.nodes.map((n) => [
      n.leader ? `${n.id} *` : n.id,
      n.address ?? '-',
      n.state,
      n.uptimeMs === null ? '-' : formatDuration(n.uptimeMs),
      String(n.shards),
      n.eventsPerSec === null ? '-' : formatCount(n.eventsPerSec),
      n.rssBytes === null ? '-' : formatMiB(n.rssBytes),
      n.heartbeatAgeMs === null ? '-' : formatAgo(n.heartbeatAgeMs),
    ]),
  );
  const facts = [
    r.leader ? `* controller leader (${r.leader})` : 'no controller leader',
    `placement v${r.placementVersion}`,
    `${r.shards} shards${r.unassigned ? `, ${r.unassigned} unassigned` : ''}`,
    ...(r.suspended ? ['rebalancing SUSPENDED'] : []),
  ];
  return `${r.nodes.length ? table : '(no nodes)'}\n${facts.join(' · ')}`;
}

export async function nodesCommand(args: string[]): Promise<number> {
  const { values, positionals: rest } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' } } });
  positionals(rest, []);
  const report = await withOps((ctx) => nodesReport(ctx.store));
  console.log(values.json ? JSON.stringify(report, null, 2) : renderNodes(report));
  return 0;
}
