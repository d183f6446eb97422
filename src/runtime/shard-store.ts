import type { CountRead, CountWrite, ShardCommit, StateReader, StoredShard, UnitId } from '../model/shard-state.ts';

export type { CountRead, CountWrite, FlatCounts, ShardCommit, StateOp, StateReader, StoredShard, UnitId } from '../model/shard-state.ts';

/** Persistence port of a shard actor. The Redis adapter lives in redis-shard-store.ts. */
export interface ShardStore {
  /** Takes ownership: returns a new owner epoch that fences every older owner's writes. */
  acquire(shard: UnitId): Promise<number>;
  /** The committed head and sequence, or null for a shard that never committed. */
  load(shard: UnitId): Promise<StoredShard | null>;
  /** Reads the parts a head names (used by the actor's restore). */
  reader(shard: UnitId): StateReader;
  /**
   * Atomically applies a commit (counts, parts, head, sequence) if `epoch` is still the shard's
   * epoch; else throws ADAGG_E_FENCED. Resolves to the bytes sent.
   */
  commit(shard: UnitId, epoch: number, c: ShardCommit): Promise<number>;
  /** Current stored values of closed-minute fields (0 when absent), in the order asked. */
  readCounts(shard: UnitId, reads: readonly CountRead[]): Promise<number[]>;
  /** Every stored count (totals and each dimension value) of the minutes in [from, to). */
  loadMinutes(shard: UnitId, from: number, to: number): Promise<CountWrite[]>;
  /**
   * Every stored count of the given minutes, ordered with this store's commits: the result is the
   * state as of the last commit before the call, even if commits are issued while it is in flight.
   * Resolves to a decoder, so the caller picks when to spend the CPU.
   */
  closedMinutes(shard: UnitId, minutes: readonly number[]): Promise<() => CountWrite[]>;
  /**
   * The deployment's 128-bit click-id dedupe secret (ShardActorConfig.dedupKey): created at random
   * on first use, atomically, so every node and thread of the deployment reads the same one.
   */
  dedupSecret(): Promise<Uint8Array>;
}
