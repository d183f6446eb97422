/**
 * Where the aggregate archive keeps its files (docs/history.md, "Aggregate archive and tiered
 * queries"), beside the raw archive under ADAGG_ARCHIVE_DIR, Hive-partitioned like it:
 *
 * ```
 * <dir>/agg/minute/date=YYYY-MM-DD/hour=HH/counts.parquet   every count field of every minute of the hour
 * <dir>/agg/hour/date=YYYY-MM-DD/hour=HH/counts.parquet     the same summed over the hour
 * <dir>/agg/day/date=YYYY-MM-DD/counts.parquet              the same summed over the day
 * ```
 *
 * Every tier has the columns {@link AGG_COLUMNS}; `minute` is the epoch minute of the bucket's
 * start (the minute itself, the hour's first minute, the day's first minute), so one reader serves
 * every tier. An archived hour always has its minute and hour file (possibly without rows): a file's
 * presence is what "this hour is archived" means to readers and to applyArchivedChanges.
 */
import path from 'node:path';

/** Parquet columns of aggregate files, in order, with their DuckDB types. */
export const AGG_COLUMNS = [
  /** Epoch minute (minutes since 1970-01-01 UTC) of the bucket's start. */
  ['minute', 'BIGINT NOT NULL'],
  ['ad_id', 'VARCHAR NOT NULL'],
  /** The dimension (or cube, or invalid-click pseudo dimension); NULL: the ad's total. */
  ['dim', 'VARCHAR'],
  ['value', 'VARCHAR'],
  ['count', 'BIGINT NOT NULL'],
] as const;

export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;
/** Minutes in an hour and a day. */
export const HOUR_MINUTES = 60;
export const DAY_MINUTES = 1440;

/** A tier of the aggregate archive. */
export type AggTier = 'minute' | 'hour' | 'day';

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** The root of the aggregate archive. */
export function aggDir(root: string): string {
  return path.join(root, 'agg');
}

/** The minute (or hour rollup) file of the UTC hour starting at `hourMs`. */
export function aggHourFile(root: string, tier: 'minute' | 'hour', hourMs: number): string {
  const s = iso(hourMs);
  return path.join(aggDir(root), tier, `date=${s.slice(0, 10)}`, `hour=${s.slice(11, 13)}`, 'counts.parquet');
}

/** The day rollup file of the UTC day starting at `dayMs`. */
export function aggDayFile(root: string, dayMs: number): string {
  return path.join(aggDir(root), 'day', `date=${iso(dayMs).slice(0, 10)}`, 'counts.parquet');
}

/** Staged files wait here (outside the Hive tree, same file system) before their rename. */
export function aggStagingDir(root: string): string {
  return path.join(root, '_staging', 'agg');
}

/** `CREATE TABLE` column list of {@link AGG_COLUMNS}. */
export function aggColumnsSql(): string {
  return AGG_COLUMNS.map(([n, t]) => `"${n}" ${t}`).join(', ');
}
