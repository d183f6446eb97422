/**
 * SQL pieces that every reader of the raw archive shares (reconcile-raw.ts, recompute-source.ts,
 * archive-query.ts): a list literal, the (subject, seq) bounds of what the actors applied, and the
 * copies a shard actor refused as too old (dead-letter rows `too_old`, keyed by the refused copy's
 * click id and stream sequence).
 */
import { sqlString } from './duckdb.ts';

/** A DuckDB list literal of strings: `['a', 'b']`. */
export function sqlList(xs: Iterable<string>): string {
  return `[${[...xs].map(sqlString).join(', ')}]`;
}

/** A CTE body with columns (subject, seq): one row per entry of `bounds` (none: an empty table). */
export function subjectSeqsSql(bounds: ReadonlyMap<string, number>): string {
  return bounds.size === 0
    ? `SELECT NULL::VARCHAR AS subject, NULL::UBIGINT AS seq WHERE false`
    : `SELECT * FROM (VALUES ${[...bounds].map(([s, n]) => `(${sqlString(s)}, ${Math.max(0, Math.floor(n))}::UBIGINT)`).join(', ')}) t(subject, seq)`;
}

/**
 * A CTE body with columns (click_id, src_seq): the copies refused as too old in `deadLetterFiles`
 * (none: an empty table), `and` an extra condition on their rows (e.g. on `ts`).
 */
export function tooOldCopiesSql(deadLetterFiles: readonly string[], and = ''): string {
  return deadLetterFiles.length === 0
    ? `SELECT NULL::VARCHAR AS click_id, NULL::UBIGINT AS src_seq WHERE false`
    : `SELECT DISTINCT click_id, src_seq FROM read_parquet(${sqlList(deadLetterFiles)}, hive_partitioning = false)
         WHERE reason = 'too_old' AND click_id IS NOT NULL AND src_seq IS NOT NULL${and ? ` AND ${and}` : ''}`;
}
