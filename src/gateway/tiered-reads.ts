/**
 * The archive tier of the count queries (docs/history.md, "Aggregate archive and tiered queries").
 * Each minute is read from exactly one tier: minutes of archived hours from the aggregate archive
 * (Parquet via DuckDB), every other minute from the shard actors and Redis as before. The archived
 * range is read from Redis once per query; it only grows, and an hour leaves Redis only after it
 * has been archived for a while (aggregate-archiver.ts), so a query that read the range a moment
 * ago still finds every minute it reads from Redis.
 */
import type { Redis } from 'ioredis';
import { archivedAdBuckets, archivedTotals, type AggField } from '../runtime/archive/aggregate-query.ts';
import { readAggProgress } from '../runtime/archive/aggregate-progress.ts';
import { HOUR_MINUTES } from '../runtime/archive/aggregate-layout.ts';
import type { RedisKeys } from '../runtime/redis-keys.ts';

/** Archived minutes [start, end) (epoch minutes). */
export interface ArchivedRange {
  start: number;
  end: number;
}

/** Query granularity: the minutes themselves, or UTC hour / day buckets. */
export type Granularity = 'minute' | 'hour' | 'day';

/** Minutes per bucket of a granularity. */
export const UNIT_MINUTES: Record<Granularity, 1 | 60 | 1440> = { minute: 1, hour: 60, day: 1440 };

/** What the query service needs from the archive. */
export interface ArchiveTier {
  /** The archived minutes now, or undefined when nothing is archived. */
  range(): Promise<ArchivedRange | undefined>;
  /** One ad's field over [from, to) (inside the range), per bucket of `unit` minutes. */
  adBuckets(adId: string, field: AggField, from: number, to: number, unit: 1 | 60 | 1440): Promise<Map<number, number>>;
  /** Every ad's field over [from, to) (inside the range). */
  totals(field: AggField, from: number, to: number): Promise<Map<string, number>>;
}

/** The archive tier over ADAGG_ARCHIVE_DIR (`root`, resolved) and the progress in Redis. */
export function archiveTier(redis: Redis, keys: RedisKeys, root: string): ArchiveTier {
  return {
    range: async () => {
      const p = await readAggProgress(redis, keys);
      return p ? { start: p.start / 60_000, end: p.through / 60_000 + HOUR_MINUTES } : undefined;
    },
    adBuckets: (adId, field, from, to, unit) => archivedAdBuckets(root, adId, field, from, to, unit),
    totals: (field, from, to) => archivedTotals(root, field, from, to),
  };
}

/** [from, to) cut at the archived range: the part before it, the archived part, the part after (each possibly empty). */
export function splitRange(from: number, to: number, r: ArchivedRange | undefined): { before: [number, number]; archived: [number, number]; after: [number, number] } {
  if (!r) return { before: [from, to], archived: [to, to], after: [to, to] };
  const a = Math.min(Math.max(from, r.start), to);
  const b = Math.min(Math.max(from, r.end), to);
  return { before: [from, a], archived: [a, b], after: [b, to] };
}

/**
 * The first minute of [from, to) worth reading from Redis: counts are kept there ADAGG_COUNT_TTL_MS
 * (`ttlMinutes`), and the archiver's first run looked that far back before the archive's first hour
 * for counts. So minutes more than the TTL before the archive's start (or, without an archive, before
 * `to`) are not read: this bounds an hour/day query of 400 days to about the TTL of minutes from Redis.
 * Ranges within the TTL (every minute query by default) read every minute as before.
 */
export function redisFloor(from: number, to: number, r: ArchivedRange | undefined, ttlMinutes: number): number {
  return Math.max(from, (r ? Math.min(r.start, to) : to) - ttlMinutes);
}

/** Whether minute `m` is read from the archive. */
export function isArchived(m: number, r: ArchivedRange | undefined): boolean {
  return r !== undefined && m >= r.start && m < r.end;
}
