/**
 * The embedded DuckDB of this thread: one in-memory instance for writing archive files (COPY … TO
 * parquet) and reading them (read_parquet over the Hive layout), shared by every open connection.
 * Each user takes its own connection (a connection runs one statement at a time) and closes it.
 *
 * DuckDB over Parquet instead of a hand-written file format: columnar, compressed, readable by
 * Spark, Trino and ClickHouse, and SQL over it (GROUP BY, COUNT(DISTINCT), window functions) for
 * reconciliation and recompute without loading rows into JavaScript.
 *
 * Lifetime: the first connection creates the instance and the last one's close closes it, so no
 * DuckDB object outlives its owners. That matters at a worker thread's end: a DuckDB call still
 * running while a thread's environment is torn down throws a native `Napi::Error` nobody can catch,
 * and the whole process aborts (docs/history.md#shutdown). Owners close in order: their appenders,
 * then their connection (after any statement in flight on it has settled), which releases the
 * instance.
 */
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';

let creating: Promise<DuckDBInstance> | undefined;
let instance: DuckDBInstance | undefined;
let open = 0;

/**
 * A new connection to this thread's DuckDB. The caller closes it with `closeSync()` (or
 * `disconnectSync()`) once no statement of it is in flight; the last close closes the instance.
 */
export async function duckConnection(): Promise<DuckDBConnection> {
  open++;
  let conn: DuckDBConnection;
  try {
    creating ??= DuckDBInstance.create(':memory:', { threads: '2' });
    const created = creating;
    const db = await created.catch((err: unknown) => {
      // A failed creation is not cached: the next caller tries again.
      if (creating === created) creating = undefined;
      throw err;
    });
    instance = db;
    conn = await db.connect();
  } catch (err) {
    release();
    throw err;
  }
  // closeSync() calls disconnectSync(): wrapping the latter releases the instance either way, once.
  const disconnect = conn.disconnectSync.bind(conn);
  let closed = false;
  conn.disconnectSync = (): void => {
    if (closed) return;
    closed = true;
    try {
      disconnect();
    } finally {
      release();
    }
  };
  return conn;
}

/** Connections of this thread not closed yet (0: the instance is closed too). */
export function openDuckConnections(): number {
  return open;
}

function release(): void {
  open--;
  if (open > 0) return;
  const db = instance;
  instance = undefined;
  creating = undefined;
  db?.closeSync();
}

/** A SQL string literal (single quotes doubled). */
export function sqlString(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}
