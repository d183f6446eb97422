/**
 * Changes to archived counts (recompute --apply, backfill): the aggregate archive must follow
 * Redis, so each touched hour's minute file is rewritten with the new values, then its hour rollup
 * and, when it exists, its day rollup. Each file is replaced atomically (staged, fsynced, renamed).
 * Hours not archived yet (no minute file) are left alone: the archiver reads them from Redis later.
 *
 * @example
 * const { hours } = await applyArchivedChanges('/data/archive', [{ ad_id: 'ad-1', minute: 29000000, dim: null, value: null, count: 7 }]);
 */
import { duckConnection } from './duckdb.ts';
import { aggDayFile, aggHourFile, DAY_MS, HOUR_MS } from './aggregate-layout.ts';
import { aggTable, appendRow, dropTable, readAgg, rollupDay, rollupHour, writeAtomically, type AggRow } from './aggregate-files.ts';
import { fileExists } from './file-exists.ts';

/** The new stored value of one count field of one minute (0: the field is gone). */
export interface ArchivedChange {
  ad_id: string;
  /** Epoch minute. */
  minute: number;
  /** NULL: the ad's total; else a dimension (or cube, or invalid pseudo dimension) and its value. */
  dim: string | null;
  value: string | null;
  /** The new value. */
  count: number;
}

/** What applyArchivedChanges rewrote. */
export interface ArchivedChangesResult {
  /** Start (epoch ms) of each hour whose minute and hour files were rewritten, ascending. */
  hours: number[];
  /** Start (epoch ms) of each day whose day rollup was rewritten, ascending. */
  days: number[];
}

/**
 * Writes `changes` into the archived hours they touch (see the module comment). For a field given
 * twice, the last value wins. `dir` is the archive root (ADAGG_ARCHIVE_DIR).
 */
export async function applyArchivedChanges(dir: string, changes: ReadonlyArray<ArchivedChange>): Promise<ArchivedChangesResult> {
  const byHour = new Map<number, Map<string, AggRow>>();
  for (const c of changes) {
    const h = Math.floor((c.minute * 60_000) / HOUR_MS) * HOUR_MS;
    let m = byHour.get(h);
    if (!m) byHour.set(h, (m = new Map()));
    m.set(JSON.stringify([c.minute, c.ad_id, c.dim, c.value]), { minute: c.minute, ad_id: c.ad_id, dim: c.dim, value: c.dim === null ? null : c.value, count: c.count });
  }
  const hours: number[] = [];
  const days = new Set<number>();
  const conn = await duckConnection();
  try {
    for (const h of [...byHour.keys()].sort((a, b) => a - b)) {
      const file = aggHourFile(dir, 'minute', h);
      if (!(await fileExists(file))) continue;
      await rewriteHour(conn, dir, h, [...byHour.get(h)!.values()]);
      hours.push(h);
      const day = Math.floor(h / DAY_MS) * DAY_MS;
      if (await fileExists(aggDayFile(dir, day))) days.add(day);
    }
    const dayList = [...days].sort((a, b) => a - b);
    for (const d of dayList) await rollupDay(conn, dir, d);
    return { hours, days: dayList };
  } finally {
    conn.closeSync();
  }
}

async function rewriteHour(conn: Awaited<ReturnType<typeof duckConnection>>, dir: string, hourMs: number, rows: readonly AggRow[]): Promise<void> {
  const file = aggHourFile(dir, 'minute', hourMs);
  const cur = await aggTable(conn, 'cur');
  const chg = await aggTable(conn, 'chg');
  try {
    await conn.run(`INSERT INTO ${cur} SELECT "minute", ad_id, dim, "value", "count" FROM ${readAgg([file])}`);
    const a = await conn.createAppender(chg);
    for (const r of rows) appendRow(a, r);
    a.flushSync();
    a.closeSync();
    await conn.run(
      `DELETE FROM ${cur} USING ${chg} WHERE ${cur}."minute" = ${chg}."minute" AND ${cur}.ad_id = ${chg}.ad_id AND ${cur}.dim IS NOT DISTINCT FROM ${chg}.dim AND ${cur}."value" IS NOT DISTINCT FROM ${chg}."value"`,
    );
    await conn.run(`INSERT INTO ${cur} SELECT * FROM ${chg} WHERE "count" <> 0`);
    await writeAtomically(conn, dir, `SELECT * FROM ${cur}`, file);
    await rollupHour(conn, dir, hourMs);
  } finally {
    await dropTable(conn, cur);
    await dropTable(conn, chg);
  }
}
