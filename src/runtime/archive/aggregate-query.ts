/**
 * Reading the aggregate archive (aggregate-layout.ts) with DuckDB: one ad's count field per bucket,
 * and every ad's total of a field over a range (popular_ads). A range is split into the coarsest
 * files that fit it ({@link planFiles}): whole days from day rollups, whole hours from hour rollups,
 * the rest from minute files, so a 400-day ranking reads about 400 small files, not 576,000 minutes.
 */
import type { DuckDBConnection } from '@duckdb/node-api';
import { duckConnection, sqlString } from './duckdb.ts';
import { aggDayFile, aggHourFile, DAY_MINUTES, HOUR_MINUTES, type AggTier } from './aggregate-layout.ts';
import { readAgg } from './aggregate-files.ts';
import { fileExists } from './file-exists.ts';

/** A count field: the ad's total (dim null) or one dimension value. */
export interface AggField {
  dim: string | null;
  value: string | null;
}

/** The files that cover a minute range exactly, coarsest first. */
export interface FilePlan {
  /** Day starts (epoch minutes) read from day rollups. */
  days: number[];
  /** Hour starts (epoch minutes) read from hour rollups. */
  hours: number[];
  /** Hour starts (epoch minutes) whose minute files are read (with a minute filter). */
  minuteHours: number[];
}

/**
 * The files covering [from, to) (epoch minutes), using no tier coarser than `coarsest`: a whole
 * UTC day inside the range from its day file, a whole hour from its hour file, a partial hour from
 * its minute file (rows filtered to the range).
 */
export function planFiles(from: number, to: number, coarsest: AggTier): FilePlan {
  const plan: FilePlan = { days: [], hours: [], minuteHours: [] };
  let m = from;
  while (m < to) {
    if (coarsest === 'day' && m % DAY_MINUTES === 0 && m + DAY_MINUTES <= to) {
      plan.days.push(m);
      m += DAY_MINUTES;
    } else if (coarsest !== 'minute' && m % HOUR_MINUTES === 0 && m + HOUR_MINUTES <= to) {
      plan.hours.push(m);
      m += HOUR_MINUTES;
    } else {
      const h = m - (m % HOUR_MINUTES);
      plan.minuteHours.push(h);
      m = Math.min(h + HOUR_MINUTES, to);
    }
  }
  return plan;
}

/** The existing files of a plan (an archived hour always has its files; a missing one reads as empty). */
async function planPaths(root: string, plan: FilePlan): Promise<string[]> {
  const paths = [
    ...plan.days.map((d) => aggDayFile(root, d * 60_000)),
    ...plan.hours.map((h) => aggHourFile(root, 'hour', h * 60_000)),
    ...plan.minuteHours.map((h) => aggHourFile(root, 'minute', h * 60_000)),
  ];
  const found = await Promise.all(paths.map(async (p) => ((await fileExists(p)) ? p : undefined)));
  return found.filter((p): p is string => p !== undefined);
}

function fieldSql(f: AggField): string {
  return f.dim === null ? 'dim IS NULL' : `dim = ${sqlString(f.dim)} AND "value" = ${sqlString(f.value ?? '')}`;
}

async function withConn<T>(fn: (c: DuckDBConnection) => Promise<T>): Promise<T> {
  const c = await duckConnection();
  try {
    return await fn(c);
  } finally {
    c.closeSync();
  }
}

/**
 * One ad's count field over [from, to) (epoch minutes, inside the archived range), summed per
 * bucket of `unit` minutes (1, 60 or 1440; buckets start at multiples of `unit`). Buckets without
 * counts are absent.
 */
export async function archivedAdBuckets(root: string, adId: string, field: AggField, from: number, to: number, unit: 1 | 60 | 1440): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  if (to <= from) return out;
  const tier: AggTier = unit === 1 ? 'minute' : unit === 60 ? 'hour' : 'day';
  const files = await planPaths(root, planFiles(from, to, tier));
  if (files.length === 0) return out;
  return withConn(async (c) => {
    const rows = (
      await c.runAndReadAll(
        `SELECT ("minute" // ${unit}) * ${unit} AS b, CAST(sum("count") AS BIGINT) AS n FROM ${readAgg(files)} WHERE ad_id = ${sqlString(adId)} AND ${fieldSql(field)} AND "minute" >= ${from} AND "minute" < ${to} GROUP BY b`,
      )
    ).getRowObjects();
    for (const r of rows) out.set(Number(r.b as bigint), Number(r.n as bigint));
    return out;
  });
}

/** Every ad's count field summed over [from, to) (epoch minutes, inside the archived range). */
export async function archivedTotals(root: string, field: AggField, from: number, to: number): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  if (to <= from) return out;
  const files = await planPaths(root, planFiles(from, to, 'day'));
  if (files.length === 0) return out;
  return withConn(async (c) => {
    const reader = await c.runAndReadAll(
      `SELECT ad_id, CAST(sum("count") AS BIGINT) AS n FROM ${readAgg(files)} WHERE ${fieldSql(field)} AND "minute" >= ${from} AND "minute" < ${to} GROUP BY ad_id`,
    );
    for (const r of reader.getRowObjects()) out.set(r.ad_id as string, Number(r.n as bigint));
    return out;
  });
}
