/** One shard's row of the placement table. */
export interface PlacementEntry {
  shard: number;
  /** Node that owns the shard now (null: not yet assigned). */
  owner: string | null;
  /** Owner epoch: incremented on every ownership change; fences stale owners' commits. */
  epoch: number;
  /** A handoff in progress: the node the shard is moving to. */
  movingTo: string | null;
  movingSince: number | null;
  /** An operator pin: the shard stays on this node while it is alive. */
  pinned: string | null;
  /** When the current owner got the shard. */
  since: number;
}

/**
 * A hot ad's child actor as a placement unit: placed, epoch-fenced and handed off like a shard
 * (kept in its own hash, `<p>:placement:units`, so shard tables and their versions are unchanged).
 */
export interface UnitEntry extends Omit<PlacementEntry, 'shard'> {
  /** `h<adkey>-<gen>-<k>` */
  unit: string;
  /** The parent shard. */
  parent: number;
  ad: string;
  gen: number;
  k: number;
}

export interface PlacementTable {
  /** Incremented by every change: the compare-and-set token of operator commands. */
  version: number;
  suspended: boolean;
  entries: PlacementEntry[];
}

/** Per-shard figures a node reports in its heartbeat. */
export interface ShardStats {
  eventsPerSec: number;
  lag: number;
  watermarkDelayMs: number | null;
  epoch: number;
}

export interface NodeRecord {
  id: string;
  /** host:pid, for operators. */
  address: string;
  startedAt: number;
  heartbeatAt: number;
  rssBytes: number;
  eventsPerSec: number;
  shards: Record<string, ShardStats>;
}

export interface NodeView extends NodeRecord {
  alive: boolean;
  draining: boolean;
}
