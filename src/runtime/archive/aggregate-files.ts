/**
 * Writing aggregate archive files (aggregate-layout.ts): a row table in this process's DuckDB,
 * COPY to a staged file, fsync, rename to the final path, fsync the folder. A reader sees the old
 * file or the new one, never a part; a crash leaves at most a staged file (removed at the next run).
 * Rollups are computed from the tier below with SQL, never from Redis again.
 */
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDBAppender, DuckDBConnection } from '@duckdb/node-api';
import { fsyncPath } from './archive-buffer.ts';
import { fileExists } from './file-exists.ts';
import { sqlString } from './duckdb.ts';
import { aggColumnsSql, aggDayFile, aggHourFile, aggStagingDir, DAY_MS, HOUR_MS } from './aggregate-layout.ts';

/** One count field of one bucket. */
export interface AggRow {
  minute: number;
  ad_id: string;
  dim: string | null;
  value: string | null;
  count: number;
}

let tableSeq = 0;

/** A fresh table with the aggregate columns (the caller drops it with {@link dropTable}). */
export async function aggTable(conn: DuckDBConnection, tag: string): Promise<string> {
  const name = `agg_${tag}_${process.pid}_${++tableSeq}_${Math.random().toString(36).slice(2, 8)}`;
  await conn.run(`CREATE TABLE ${name} (${aggColumnsSql()})`);
  return name;
}

export async function dropTable(conn: DuckDBConnection, table: string): Promise<void> {
  await conn.run(`DROP TABLE IF EXISTS ${table}`);
}

/** Appends one row (the appender of a table made by {@link aggTable}). */
export function appendRow(a: DuckDBAppender, r: AggRow): void {
  a.appendBigInt(BigInt(r.minute));
  a.appendVarchar(r.ad_id);
  if (r.dim === null) a.appendNull();
  else a.appendVarchar(r.dim);
  if (r.value === null) a.appendNull();
  else a.appendVarchar(r.value);
  a.appendBigInt(BigInt(r.count));
  a.endRow();
}

/**
 * Writes the rows of `select` (aggregate columns, in order) to `final` atomically: staged, fsynced,
 * renamed, folder fsynced. Rows are sorted so files compress well and read in order.
 */
export async function writeAtomically(conn: DuckDBConnection, root: string, select: string, final: string): Promise<void> {
  const staging = aggStagingDir(root);
  await mkdir(staging, { recursive: true });
  const tmp = path.join(staging, `${path.relative(root, final).replaceAll(path.sep, '_')}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`);
  try {
    await conn.run(`COPY (SELECT * FROM (${select}) ORDER BY "minute", ad_id, dim NULLS FIRST, "value" NULLS FIRST) TO ${sqlString(tmp)} (FORMAT parquet, COMPRESSION zstd)`);
    await fsyncPath(tmp);
    await mkdir(path.dirname(final), { recursive: true });
    await rename(tmp, final);
    await fsyncPath(path.dirname(final));
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}

/** Removes staged files left by a crash (call while holding the archive lock). Returns how many. */
export async function clearAggStaging(root: string): Promise<number> {
  const dir = aggStagingDir(root);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return 0;
  }
  await Promise.all(names.map((n) => rm(path.join(dir, n), { force: true })));
  return names.length;
}

/** `read_parquet` of the given files with the aggregate columns' types. */
export function readAgg(files: readonly string[]): string {
  return `read_parquet([${files.map(sqlString).join(', ')}])`;
}

/** Writes the hour rollup of `hourMs` from its minute file. */
export async function rollupHour(conn: DuckDBConnection, root: string, hourMs: number): Promise<void> {
  const start = hourMs / 60_000;
  const src = readAgg([aggHourFile(root, 'minute', hourMs)]);
  await writeAtomically(
    conn,
    root,
    `SELECT CAST(${start} AS BIGINT) AS "minute", ad_id, dim, "value", CAST(sum("count") AS BIGINT) AS "count" FROM ${src} GROUP BY ad_id, dim, "value" HAVING sum("count") <> 0`,
    aggHourFile(root, 'hour', hourMs),
  );
}

/** Writes the day rollup of `dayMs` from the hour files of the day that exist (an hour without a file had no counts). */
export async function rollupDay(conn: DuckDBConnection, root: string, dayMs: number): Promise<void> {
  const files: string[] = [];
  for (let h = dayMs; h < dayMs + DAY_MS; h += HOUR_MS) {
    const f = aggHourFile(root, 'hour', h);
    if (await fileExists(f)) files.push(f);
  }
  const start = dayMs / 60_000;
  const final = aggDayFile(root, dayMs);
  if (files.length === 0) {
    const t = await aggTable(conn, 'day');
    try {
      await writeAtomically(conn, root, `SELECT * FROM ${t}`, final);
    } finally {
      await dropTable(conn, t);
    }
    return;
  }
  await writeAtomically(
    conn,
    root,
    `SELECT CAST(${start} AS BIGINT) AS "minute", ad_id, dim, "value", CAST(sum("count") AS BIGINT) AS "count" FROM ${readAgg(files)} GROUP BY ad_id, dim, "value" HAVING sum("count") <> 0`,
    final,
  );
}
