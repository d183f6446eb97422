/** `adagg placement [--json] [--watch [SECONDS]]`: one row per shard, with the owner's live figures. */
import { parseArgs } from 'node:util';
import type { PlacementStore } from '../../runtime/placement/placement-store.ts';
import { openOps, positionals, sleep, UsageError } from './context.ts';
import { hotChildrenByShard, hotChildrenCell, hotChildTableRows, type HotChildRow } from './placement-hot.ts';
import { formatCount, formatDuration, formatTable } from './table.ts';

export interface ShardRow {
  shard: number;
  owner: string | null;
  /** Whether the owner is a live member (false: the controller reassigns the shard). */
  ownerAlive: boolean;
  epoch: number;
  /** From the owner's last heartbeat; null when it has not reported the shard yet. */
  eventsPerSec: number | null;
  lag: number | null;
  watermarkDelayMs: number | null;
  /** Handoff target while a move is in progress. */
  movingTo: string | null;
  movingSince: number | null;
  pinned: string | null;
  /** The shard's hot ads' child actors (placement-hot.ts); null when it has none. */
  hotChildren: HotChildRow[] | null;
  /** When the owner got the shard. */
  since: number;
}

export interface PlacementReport {
  at: number;
  version: number;
  suspended: boolean;
  leader: string | null;
  shards: ShardRow[];
}

export async function placementReport(store: PlacementStore, now = Date.now()): Promise<PlacementReport> {
  const [table, nodes, leader, units] = await Promise.all([store.read(), store.nodes(now), store.leader(), store.readUnits()]);
  const children = hotChildrenByShard(units, nodes);
  const byId = new Map(nodes.map((n) => [n.id, n]));
  return {
    at: now,
    version: table.version,
    suspended: table.suspended,
    leader,
    shards: table.entries.map((e) => {
      const owner = e.owner === null ? undefined : byId.get(e.owner);
      const st = owner?.shards[String(e.shard)];
      return {
        shard: e.shard,
        owner: e.owner,
        ownerAlive: owner?.alive ?? false,
        epoch: e.epoch,
        eventsPerSec: st?.eventsPerSec ?? null,
        lag: st?.lag ?? null,
        watermarkDelayMs: st?.watermarkDelayMs ?? null,
        movingTo: e.movingTo,
        movingSince: e.movingSince,
        pinned: e.pinned,
        hotChildren: children.get(e.shard) ?? null,
        since: e.since,
      };
    }),
  };
}

export function renderPlacement(r: PlacementReport): string {
  const table = formatTable(
    [
      { header: 'SHARD', align: 'right' },
      { header: 'OWNER' },
      { header: 'EPOCH', align: 'right' },
      { header: 'EVENTS/S', align: 'right' },
      { header: 'LAG', align: 'right' },
      { header: 'WM DELAY', align: 'right' },
      { header: 'MOVING→' },
      { header: 'PINNED' },
      { header: 'HOT CHILDREN' },
    ],
    r.shards.flatMap((s) => [[
      String(s.shard),
      s.owner === null ? '-' : s.ownerAlive ? s.owner : `${s.owner} (dead)`,
      String(s.epoch),
      s.eventsPerSec === null ? '-' : formatCount(s.eventsPerSec),
      s.lag === null ? '-' : formatCount(s.lag),
      s.watermarkDelayMs === null ? '-' : formatDuration(s.watermarkDelayMs),
      s.movingTo === null ? '-' : `${s.movingTo} (${formatDuration(r.at - (s.movingSince ?? r.at))})`,
      s.pinned ?? '-',
      hotChildrenCell(s.hotChildren),
    ], ...hotChildTableRows(s.hotChildren)]),
  );
  const moving = r.shards.filter((s) => s.movingTo !== null).length;
  const unassigned = r.shards.filter((s) => s.owner === null).length;
  const facts = [
    `placement v${r.version}`,
    `leader ${r.leader ?? 'none'}`,
    ...(moving ? [`${moving} moving`] : []),
    ...(unassigned ? [`${unassigned} unassigned`] : []),
    r.suspended ? 'rebalancing SUSPENDED' : 'rebalancing on',
  ];
  return `${table}\n${facts.join(' · ')}`;
}

const CLEAR = '\x1b[H\x1b[2J';

export async function placementCommand(args: string[]): Promise<number> {
  // `--watch=5` is accepted as well as `--watch 5` (the seconds are an optional positional).
  const norm = args.flatMap((a) => (a.startsWith('--watch=') ? ['--watch', a.slice('--watch='.length)] : [a]));
  const { values, positionals: rest } = parseArgs({
    args: norm,
    allowPositionals: true,
    options: { json: { type: 'boolean' }, watch: { type: 'boolean' } },
  });
  if (!values.watch) {
    positionals(rest, []);
    const ctx = await openOps();
    try {
      const r = await placementReport(ctx.store);
      console.log(values.json ? JSON.stringify(r, null, 2) : renderPlacement(r));
    } finally {
      await ctx.close();
    }
    return 0;
  }
  if (rest.length > 1) throw new UsageError(`unexpected argument '${rest[1]}'`);
  const seconds = rest[0] === undefined ? 2 : Number(rest[0]);
  if (!(seconds > 0) || !Number.isFinite(seconds)) throw new UsageError(`--watch takes a positive number of seconds, got '${rest[0]}'`);
  await watch(seconds * 1000, values.json === true);
  return 0;
}

/** Redraws until Ctrl-C: clears the screen on a TTY, else prints successive tables (NDJSON with --json). */
async function watch(everyMs: number, json: boolean): Promise<void> {
  const ctx = await openOps(process.env, true);
  let stop = false;
  let wake: (() => void) | undefined;
  const onSignal = (): void => {
    stop = true;
    wake?.();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const tty = process.stdout.isTTY === true && !json;
  try {
    while (!stop) {
      let text: string;
      try {
        const r = await placementReport(ctx.store);
        text = json ? JSON.stringify(r) : renderPlacement(r);
      } catch (err) {
        if (json) throw err;
        text = `adagg: ${(err as { code?: string }).code ?? 'error'}: ${(err as Error).message} (retrying)`;
      }
      const stamp = `every ${everyMs / 1000}s · ${new Date().toLocaleTimeString('en-GB', { hour12: false })} · Ctrl-C to stop`;
      if (json) process.stdout.write(`${text}\n`);
      else if (tty) process.stdout.write(`${CLEAR}${stamp}\n\n${text}\n`);
      else process.stdout.write(`${stamp}\n${text}\n\n`);
      await Promise.race([sleep(everyMs), new Promise<void>((r) => (wake = r))]);
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await ctx.close();
  }
}
