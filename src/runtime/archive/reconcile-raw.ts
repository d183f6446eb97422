/**
 * The raw side of reconciliation: distinct clicks per ad-minute of one UTC day as the shard actors
 * should have counted them, computed by DuckDB over the raw archive (layout.ts), never by loading
 * rows into JavaScript.
 *
 * What an actor counted, expressed in SQL:
 * - only messages it applied: on a shard subject `<p>.clicks.<s>`, sequences up to the shard's
 *   committed `seq` (later ones are not applied yet); rows of hot child subjects are all taken;
 * - not the copies it refused as too old: a dead-letter row `reason = 'too_old'` with the same
 *   click_id and `src_seq` = the row's seq (letters are partitioned by arrival, so every day from
 *   the reconciled one on is read);
 * - per (ad_id, click_id) the copy with the lowest (seq, pos): the first one counted, later copies
 *   are duplicates; its `ts` gives the minute, and only minutes of the day are kept (copies in the
 *   hours around the day take part in the dedupe only).
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { deadLetterDir, rawDir } from './layout.ts';
import { sqlString } from './duckdb.ts';
import { sqlList, subjectSeqsSql, tooOldCopiesSql } from './archive-sql.ts';

const DAY_MS = 86_400_000;

/** What the SQL needs: which files, and how far each shard subject was applied. */
export interface RawQuery {
  /** Raw files of the day (rawDayFiles) and of the hours around it (rawFilesAround). */
  rawFiles: readonly string[];
  /** Dead-letter files that may refuse clicks of the day (deadLetterFilesFrom). */
  deadLetterFiles: readonly string[];
  /** Shard subject → its committed stream sequence (the meta hash `seq`). */
  committed: ReadonlyMap<string, number>;
  /** Prefix of hot child subjects (`<p>.hot.`): their rows are all taken. */
  hotSubjectPrefix: string;
  /** The day's first millisecond (UTC), for the dead letters' `ts`. */
  dayStartMs: number;
}

/** One ad-minute of the raw side: distinct clicks the actors should have counted. */
export interface RawCount {
  adId: string;
  /** Minute index (epoch ms / 60 000). */
  minute: number;
  clicks: number;
  /** The shard, from the shard subject the clicks came on; null when they all came on hot child subjects. */
  shard: number | null;
}

/** Parquet files under `<dir>/date=<day>/hour=*` (none when the day has no partition). */
async function partitionFiles(base: string, day: string): Promise<string[]> {
  const dayDir = path.join(base, `date=${day}`);
  const hours = await readdir(dayDir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw err;
  });
  const out: string[] = [];
  for (const h of hours.filter((x) => x.startsWith('hour=')).sort()) {
    // Only finished files: a writer's `*.parquet.tmp-<epoch>` is not part of the archive.
    const files = await readdir(path.join(dayDir, h));
    for (const f of files.filter((x) => x.endsWith('.parquet')).sort()) out.push(path.join(dayDir, h, f));
  }
  return out;
}

/** Every raw file of one UTC day. */
export function rawDayFiles(root: string, day: string): Promise<string[]> {
  return partitionFiles(rawDir(root), day);
}

const HOUR_MS = 3_600_000;

/**
 * Raw files of the hours within `marginMs` before and after one UTC day (the correction horizon):
 * a click of the day may be a copy of one the actor counted just before midnight, or counted
 * first there itself, so the dedupe must see those copies too.
 */
export async function rawFilesAround(root: string, dayStartMs: number, marginMs: number): Promise<string[]> {
  const hours: number[] = [];
  for (let h = Math.floor((dayStartMs - marginMs) / HOUR_MS) * HOUR_MS; h < dayStartMs; h += HOUR_MS) hours.push(h);
  for (let h = dayStartMs + DAY_MS; h < dayStartMs + DAY_MS + marginMs; h += HOUR_MS) hours.push(h);
  const out: string[] = [];
  for (const h of hours) out.push(...(await rawFilesOfHour(root, h)));
  return out;
}

/** The finished raw files (`.parquet` only, sorted) of the UTC hour starting at `hourMs`; [] when it has none. */
export async function rawFilesOfHour(root: string, hourMs: number): Promise<string[]> {
  const iso = new Date(hourMs).toISOString();
  const dir = path.join(rawDir(root), `date=${iso.slice(0, 10)}`, `hour=${iso.slice(11, 13)}`);
  const files = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw err;
  });
  return files
    .filter((x) => x.endsWith('.parquet'))
    .sort()
    .map((f) => path.join(dir, f));
}

/** Every dead-letter file of `day` and later days (a click of the day is refused at or after its time). */
export async function deadLetterFilesFrom(root: string, day: string): Promise<string[]> {
  const dates = await readdir(deadLetterDir(root)).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[];
    throw err;
  });
  const out: string[] = [];
  for (const d of dates.filter((x) => x.startsWith('date=') && x.slice(5) >= day).sort()) {
    out.push(...(await partitionFiles(deadLetterDir(root), d.slice(5))));
  }
  return out;
}

/** The SQL of {@link rawCounts} (exported for tests and for reading). */
export function rawCountsSql(q: RawQuery): string {
  const committed = subjectSeqsSql(q.committed);
  const tooOld = tooOldCopiesSql(q.deadLetterFiles, `ts >= ${q.dayStartMs} AND ts < ${q.dayStartMs + DAY_MS}`);
  return `
WITH raw AS (
  SELECT click_id, ad_id, ts, subject, seq, pos FROM read_parquet(${sqlList(q.rawFiles)}, hive_partitioning = false)
),
committed AS (${committed}),
too_old AS (${tooOld}),
applied AS (
  SELECT r.click_id, r.ad_id, r.ts, r.subject, r.seq, r.pos
  FROM raw r
  LEFT JOIN committed c ON c.subject = r.subject
  ANTI JOIN too_old d ON d.click_id = r.click_id AND d.src_seq = r.seq AND r.subject <> 'backfill'
  -- backfilled rows (adagg backfill, subject 'backfill') are counted by recompute: taken, after every stream row
  WHERE starts_with(r.subject, ${sqlString(q.hotSubjectPrefix)}) OR r.seq <= c.seq OR r.subject = 'backfill'
),
firsts AS (
  SELECT ad_id, ts, TRY_CAST(regexp_extract(subject, '\\.clicks\\.(\\d+)$', 1) AS INTEGER) AS shard FROM applied
  QUALIFY row_number() OVER (PARTITION BY ad_id, click_id ORDER BY subject = 'backfill', seq, pos) = 1
)
SELECT ad_id, ts // 60000 AS minute, count(*) AS clicks, max(shard) AS shard FROM firsts
WHERE ts >= ${q.dayStartMs} AND ts < ${q.dayStartMs + DAY_MS}
GROUP BY ad_id, minute`;
}

/** Distinct clicks per ad-minute of the raw archive (see the module comment); [] without files. */
export async function rawCounts(conn: DuckDBConnection, q: RawQuery): Promise<RawCount[]> {
  if (q.rawFiles.length === 0) return [];
  const reader = await conn.runAndReadAll(rawCountsSql(q));
  return reader.getRowObjects().map((r) => ({ adId: String(r.ad_id), minute: Number(r.minute), clicks: Number(r.clicks), shard: r.shard === null ? null : Number(r.shard) }));
}
