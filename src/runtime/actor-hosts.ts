import type { CompiledOptions } from '../options.ts';
import type { ShardStats, UnitEntry } from './placement/types.ts';

/** Options of a runtime node that knows its servers. */
export type NodeOptions = CompiledOptions & { natsUrl: string; redisUrl: string };

/** What a node reports in its heartbeat: total and per-actor load. */
export interface HostStats {
  eventsPerSec: number;
  /** Keyed by shard number or hot child unit id. */
  shards: Record<string, ShardStats>;
}

/**
 * Where a runtime node's actors run: shard actors and hot-ad children, each under a supervisor,
 * with their store, query responder and hot-split hooks. Two implementations: LocalHosts (this
 * thread) and WorkerHosts (worker threads, each running a LocalHosts). Placement stays with the
 * node: a host group only starts and stops what it is told.
 */
export interface ActorHosts {
  /** Connects (and starts threads); actors can be started once it resolves. */
  open(): Promise<void>;
  /** Starts a shard actor; `epoch` is the one placement assigned (static mode: undefined, it takes a new one). */
  startShard(shard: number, epoch?: number): void;
  /** Stops a shard actor: it stops consuming, commits a final snapshot, then stops answering. */
  stopShard(shard: number): Promise<void>;
  /** Starts a hot ad's child actor under the epoch placement assigned it. */
  startUnit(unit: UnitEntry, epoch: number): void;
  /** Stops a hot child (final report and snapshot first). */
  stopUnit(unit: string): Promise<void>;
  /** Shards hosted here, started or starting, with their epoch (-1: static mode): what placement reconciles against. */
  running(): ReadonlyMap<number, number>;
  /** Of `running()`, the shards whose thread has started them. */
  confirmed(): ReadonlyMap<number, number>;
  /** Hot children hosted here, started or starting, with their epoch. */
  runningUnits(): ReadonlyMap<string, number>;
  /** Load per actor; synchronous (the heartbeat reads it). */
  stats(): HostStats;
  /** Stops every actor after its final commit, then closes connections (and threads). Idempotent. */
  close(): Promise<void>;
}
