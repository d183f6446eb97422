/**
 * `adagg placement`: hot ads' child actors under their parent shard (kept apart from placement.ts,
 * which owns the shard rows): one row per child with its node, epoch, events/s and lag.
 */
import type { NodeView, UnitEntry } from '../../runtime/placement/types.ts';
import { formatCount } from './table.ts';

export interface HotChildRow {
  unit: string;
  ad: string;
  /** The split's generation (the parent's stream sequence of the split). */
  gen: number;
  k: number;
  owner: string | null;
  ownerAlive: boolean;
  epoch: number;
  movingTo: string | null;
  /** From the owner's last heartbeat; null when it has not reported the child yet. */
  eventsPerSec: number | null;
  lag: number | null;
}

/** Children per parent shard (shards without children are absent). */
export function hotChildrenByShard(units: readonly UnitEntry[], nodes: readonly NodeView[]): Map<number, HotChildRow[]> {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const out = new Map<number, HotChildRow[]>();
  for (const u of units) {
    const owner = u.owner === null ? undefined : byId.get(u.owner);
    const st = owner?.shards[u.unit];
    const row: HotChildRow = {
      unit: u.unit,
      ad: u.ad,
      gen: u.gen,
      k: u.k,
      owner: u.owner,
      ownerAlive: owner?.alive ?? false,
      epoch: u.epoch,
      movingTo: u.movingTo,
      eventsPerSec: st?.eventsPerSec ?? null,
      lag: st?.lag ?? null,
    };
    let rows = out.get(u.parent);
    if (!rows) out.set(u.parent, (rows = []));
    rows.push(row);
  }
  for (const rows of out.values()) rows.sort((a, b) => a.ad.localeCompare(b.ad) || a.gen - b.gen || a.k - b.k);
  return out;
}

/** The HOT CHILDREN cell of a parent row: `3 (ad-7)`, or '-'. */
export function hotChildrenCell(rows: readonly HotChildRow[] | null): string {
  if (!rows || rows.length === 0) return '-';
  const ads = [...new Set(rows.map((r) => r.ad))];
  return `${rows.length} (${ads.join(', ')})`;
}

/** Table rows for the children, printed right under their parent (same columns as the shard rows). */
export function hotChildTableRows(rows: readonly HotChildRow[] | null): string[][] {
  return (rows ?? []).map((c, i, all) => [
    `${i === all.length - 1 ? '└' : '├'} ${c.ad}#${c.k}`,
    c.owner === null ? '-' : c.ownerAlive ? c.owner : `${c.owner} (dead)`,
    String(c.epoch),
    c.eventsPerSec === null ? '-' : formatCount(c.eventsPerSec),
    c.lag === null ? '-' : formatCount(c.lag),
    '-',
    c.movingTo ?? '-',
    '-',
    `child of gen ${c.gen}`,
  ]);
}
