import type { UnitId } from '../model/shard-state.ts';

/**
 * Redis key layout. Every key of a shard carries the hash tag `{s<shard>}`, so one shard's commit
 * touches one cluster slot and can run as one Lua script on a Redis Cluster too. A hot ad's child
 * unit (a string id such as `h<adkey>-<gen>-<k>`) uses the id itself as its tag: `{h...}`.
 */
export class RedisKeys {
  constructor(readonly prefix: string) {}
  private base(shard: UnitId): string {
    return typeof shard === 'number' ? `${this.prefix}:{s${shard}}` : `${this.prefix}:{${shard}}`;
  }
  epoch(shard: UnitId): string {
    return `${this.base(shard)}:epoch`;
  }
  meta(shard: UnitId): string {
    return `${this.base(shard)}:meta`;
  }
  /** The state's head (the whole snapshot in releases before the incremental state format). */
  snapshot(shard: UnitId): string {
    return `${this.base(shard)}:snap`;
  }
  /** A named part of the state (a dedupe block, hot-split state): see src/model/shard-state.ts. */
  part(shard: UnitId, name: string): string {
    return `${this.base(shard)}:p:${name}`;
  }
  /** Set of the part names a shard has, so a removed unit's state can be expired without knowing its format. */
  parts(shard: UnitId): string {
    return `${this.base(shard)}:parts`;
  }
  /** Hash of ad_id → final count for one minute, optionally for one dimension value. */
  counts(shard: UnitId, minute: number, dim: string | null, value: string | null): string {
    const k = `${this.base(shard)}:c:${minute}`;
    return dim === null || value === null ? k : `${k}:${dim}=${encodeURIComponent(value)}`;
  }
  /**
   * The deployment's click-id dedupe secret (16 random bytes, SET NX by the first node to start).
   * Persisted dedupe hashes are keyed with it: losing it makes every shard refuse its state.
   */
  dedupSecret(): string {
    return `${this.prefix}:dedup-secret`;
  }
  /** Hash of the invalid-click rules in effect: field `current` = JSON `{version, rules, at, gen}` (risk-rules-publisher.ts). */
  riskRules(): string {
    return `${this.prefix}:risk:rules`;
  }
  /** Set of every risk rule name ever published, so the history of a removed rule can still be queried. */
  riskRuleNames(): string {
    return `${this.prefix}:risk:names`;
  }
  /** Hash of the dimension keys a minute has (field = JSON [dim, value]), to reload a whole minute. */
  dimIndex(shard: UnitId, minute: number): string {
    return `${this.base(shard)}:i:${minute}`;
  }
  /** Progress hash of an archiver unit (`a-s3`, `a-hot`, `a-dlq`): `seq` = last stream sequence in files, `epoch`, `pending`, counters. */
  archive(unit: string): string {
    return `${this.prefix}:{${unit}}:archive`;
  }
  /** The stored reconciliation report of one UTC day (`YYYY-MM-DD`), a JSON string (src/runtime/archive/reconcile.ts). */
  reconcile(day: string): string {
    return `${this.prefix}:reconcile:${day}`;
  }
  /** Counter (INCR) of `adagg backfill` batches: the `seq` of backfilled archive rows (subject `backfill`). */
  backfillBatch(): string {
    return `${this.prefix}:backfill:batch`;
  }
  /** Lock (SET NX PX) so one gateway of many runs the daily reconcile of a day. */
  reconcileLock(day: string): string {
    return `${this.prefix}:reconcile-lock:${day}`;
  }
  /** Hash of the aggregate archive's progress: `start`, `through` (first and last archived hour, epoch ms), `evicted` (last hour deleted from Redis). */
  aggArchive(): string {
    return `${this.prefix}:{agg}:archive`;
  }
  /**
   * Counter a recompute's apply raises after writing counts and before it rewrites archived hours:
   * the aggregate archiver archives an hour again when it moved while the hour was being written.
   */
  aggGen(): string {
    return `${this.prefix}:{agg}:gen`;
  }
  /** Lock (SET NX PX, a token) so one gateway of many runs the aggregate archiver. */
  aggArchiveLock(): string {
    return `${this.prefix}:{agg}:lock`;
  }
}
