/**
 * Redis key layout. Every key of a shard carries the hash tag `{s<shard>}`, so one shard's commit
 * touches one cluster slot and can run as one Lua script on a Redis Cluster too.
 */
export class RedisKeys {
  constructor(readonly prefix: string) {}
  private base(shard: number): string {
    return `${this.prefix}:{s${shard}}`;
  }
  epoch(shard: number): string {
    return `${this.base(shard)}:epoch`;
  }
  meta(shard: number): string {
    return `${this.base(shard)}:meta`;
  }
  snapshot(shard: number): string {
    return `${this.base(shard)}:snap`;
  }
  /** Hash of ad_id → final count for one minute, optionally for one dimension value. */
  counts(shard: number, minute: number, dim: string | null, value: string | null): string {
    const k = `${this.base(shard)}:c:${minute}`;
    return dim === null || value === null ? k : `${k}:${dim}=${encodeURIComponent(value)}`;
  }
  /** Hash of the dimension keys a minute has (field = JSON [dim, value]), to reload a whole minute. */
  dimIndex(shard: number, minute: number): string {
    return `${this.base(shard)}:i:${minute}`;
  }
}
