/**
 * What a shard actor's persistence is keyed by: a shard number, or the string id of a hot ad's child
 * unit (`h<adkey>-<gen>-<k>`), which is persisted, fenced and placed like a shard.
 */
export type UnitId = number | string;

/** Flat `[ad_id, count, ad_id, count, ...]` form used in snapshots, commits and rankings. */
export type FlatCounts = Array<string | number>;

/**
 * Final counts of one minute for one filter (`dim`/`value` null = all clicks), as absolute values.
 * Written with idempotent SETs so a replay after a crash rewrites the same numbers.
 */
export interface CountWrite {
  minute: number;
  dim: string | null;
  value: string | null;
  counts: FlatCounts;
}

/** Everything one atomic, fenced step persists for a shard. */
export interface ShardCommit {
  seq: number;
  watermark: number;
  closedThrough: number;
  snapshot: Uint8Array;
  writes: CountWrite[];
}

/** A field of a closed minute that a late click needs to correct. */
export interface CountRead {
  minute: number;
  dim: string | null;
  value: string | null;
  adId: string;
}

export interface StoredShard {
  seq: number;
  snapshot: Uint8Array;
}

/** Persistence port of a shard actor. The Redis adapter lives in redis-shard-store.ts. */
export interface ShardStore {
  /** Takes ownership: returns a new owner epoch that fences every older owner's writes. */
  acquire(shard: UnitId): Promise<number>;
  load(shard: UnitId): Promise<StoredShard | null>;
  /** Atomically writes counts, snapshot and sequence if `epoch` is still the shard's epoch; else throws ADAGG_E_FENCED. */
  commit(shard: UnitId, epoch: number, c: ShardCommit): Promise<void>;
  /** Current stored values of closed-minute fields (0 when absent), in the order asked. */
  readCounts(shard: UnitId, reads: readonly CountRead[]): Promise<number[]>;
  /** Every stored count (totals and each dimension value) of the minutes in [from, to). */
  loadMinutes(shard: UnitId, from: number, to: number): Promise<CountWrite[]>;
}
