/**
 * The embedded DuckDB of this process: one in-memory instance, opened on first use, for writing
 * archive files (COPY … TO parquet) and reading them (read_parquet over the Hive layout). Each
 * user takes its own connection: a connection runs one statement at a time.
 *
 * DuckDB over Parquet instead of a hand-written file format: columnar, compressed, readable by
 * Spark, Trino and ClickHouse, and SQL over it (GROUP BY, COUNT(DISTINCT), window functions) for
 * reconciliation and recompute without loading rows into JavaScript.
 */
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';

let instance: Promise<DuckDBInstance> | undefined;

/** A new connection to this process's DuckDB (the caller closes it with `closeSync()`). */
export async function duckConnection(): Promise<DuckDBConnection> {
  instance ??= DuckDBInstance.create(':memory:', { threads: '2' });
  return (await instance).connect();
}

/** A SQL string literal (single quotes doubled). */
export function sqlString(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}
