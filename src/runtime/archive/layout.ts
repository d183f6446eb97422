/**
 * Where the archive keeps its files (ADAGG_ARCHIVE_DIR, default `./data/archive`), Hive-partitioned
 * by date and hour (UTC) so DuckDB, Spark, Trino and ClickHouse prune partitions by path:
 *
 * ```
 * <dir>/raw/date=YYYY-MM-DD/hour=HH/<unit>-<fromSeq>-<toSeq>.parquet           clicks, by event time (ts)
 * <dir>/dead-letters/date=YYYY-MM-DD/hour=HH/dlq-<fromSeq>-<toSeq>.parquet     refused clicks, by arrival (at)
 * ```
 *
 * A file holds the rows of one archiver unit (`s<shard>` for a shard's subject, `hot` for the hot
 * child subjects, `dlq` for the dead-letter stream) whose stream sequences are in [fromSeq, toSeq]
 * and whose time falls in the partition's hour. Sequences are zero-padded, so names sort in
 * stream order. The columns are {@link RAW_COLUMNS} and {@link DEAD_LETTER_COLUMNS}.
 *
 * @example
 * rawFilePath('/a', 's3', 1700000000000, 10, 99) // '/a/raw/date=2023-11-14/hour=22/s3-000000000010-000000000099.parquet'
 */
import path from 'node:path';

/**
 * An archiver unit: a shard's click subject, the hot child subjects, or the dead-letter stream; `bf`:
 * rows loaded by `adagg backfill` (subject `backfill`, seq = the backfill batch number, pos = row index).
 */
export type ArchiveUnit = `s${number}` | 'hot' | 'dlq' | 'bf';

/** Parquet columns of raw click files, in order, with their DuckDB types. */
export const RAW_COLUMNS = [
  ['click_id', 'VARCHAR NOT NULL'],
  ['ad_id', 'VARCHAR NOT NULL'],
  /** Event time, epoch milliseconds UTC (as in the API). */
  ['ts', 'BIGINT NOT NULL'],
  ['user_id', 'VARCHAR'],
  ['ip', 'VARCHAR'],
  ['country', 'VARCHAR'],
  /** Extra attributes as a JSON object, or NULL. */
  ['attrs', 'VARCHAR'],
  /** The JetStream subject and stream sequence of the message that carried the click, and its position in it. */
  ['subject', 'VARCHAR NOT NULL'],
  ['seq', 'UBIGINT NOT NULL'],
  ['pos', 'INTEGER NOT NULL'],
] as const;

/** Parquet columns of dead-letter files: the record (src/runtime/dead-letter.ts) flattened. */
export const DEAD_LETTER_COLUMNS = [
  /** Sequence of the record in the dead-letter stream. */
  ['seq', 'UBIGINT NOT NULL'],
  ['reason', 'VARCHAR NOT NULL'],
  ['error', 'VARCHAR'],
  ['source', 'VARCHAR'],
  /** When it was refused, epoch ms. */
  ['at', 'BIGINT NOT NULL'],
  /** For a refusal by an actor (`shard 3 seq 17`, `hot child h…-1-0 seq 5`): the unit and the clicks-stream sequence. */
  ['src_unit', 'VARCHAR'],
  ['src_seq', 'UBIGINT'],
  ['click_id', 'VARCHAR'],
  ['ad_id', 'VARCHAR'],
  ['ts', 'BIGINT'],
  ['user_id', 'VARCHAR'],
  ['ip', 'VARCHAR'],
  ['country', 'VARCHAR'],
  ['attrs', 'VARCHAR'],
  ['raw', 'VARCHAR'],
  ['raw_bytes', 'BIGINT'],
  ['raw_sha256', 'VARCHAR'],
] as const;

const HOUR_MS = 3_600_000;
const pad = (seq: number): string => String(seq).padStart(12, '0');

/** The UTC hour of an epoch-ms time, as the epoch ms of its start. */
export function hourOf(ms: number): number {
  return Math.floor(ms / HOUR_MS) * HOUR_MS;
}

/** `date=YYYY-MM-DD/hour=HH` of the hour holding `ms`. */
export function partitionOf(ms: number): string {
  const iso = new Date(hourOf(ms)).toISOString();
  return `date=${iso.slice(0, 10)}/hour=${iso.slice(11, 13)}`;
}

export function rawDir(root: string): string {
  return path.join(root, 'raw');
}

export function deadLetterDir(root: string): string {
  return path.join(root, 'dead-letters');
}

/** The file of `unit`'s rows with sequences in [fromSeq, toSeq] whose time falls in the hour of `ms`. */
export function rawFilePath(root: string, unit: Exclude<ArchiveUnit, 'dlq'>, ms: number, fromSeq: number, toSeq: number): string {
  return path.join(rawDir(root), partitionOf(ms), `${unit}-${pad(fromSeq)}-${pad(toSeq)}.parquet`);
}

export function deadLetterFilePath(root: string, ms: number, fromSeq: number, toSeq: number): string {
  return path.join(deadLetterDir(root), partitionOf(ms), `dlq-${pad(fromSeq)}-${pad(toSeq)}.parquet`);
}

const FILE_RE = /^(s\d+|hot|dlq|bf)-(\d{12,})-(\d{12,})\.parquet$/;

/** The unit and sequence range a file name encodes, or undefined for any other name. */
export function parseFileName(name: string): { unit: ArchiveUnit; fromSeq: number; toSeq: number } | undefined {
  const m = FILE_RE.exec(name);
  if (!m) return undefined;
  return { unit: m[1] as ArchiveUnit, fromSeq: Number(m[2]), toSeq: Number(m[3]) };
}

/** A glob of every raw file of one UTC day (`YYYY-MM-DD`), for read_parquet. */
export function rawDayGlob(root: string, day: string): string {
  return path.join(rawDir(root), `date=${day}`, 'hour=*', '*.parquet');
}

/** A glob of every dead-letter file of one UTC day. */
export function deadLetterDayGlob(root: string, day: string): string {
  return path.join(deadLetterDir(root), `date=${day}`, 'hour=*', '*.parquet');
}
