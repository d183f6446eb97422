/**
 * The aggregate archive's files (DuckDB, temp dir, no Redis): range plans, rollups, reads per
 * bucket and per ad, and applyArchivedChanges rewriting minute, hour and day files (and leaving
 * hours that are not archived alone).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyArchivedChanges } from '../../src/runtime/archive/aggregate-apply.ts';
import { aggTable, appendRow, dropTable, readAgg, rollupDay, rollupHour, writeAtomically, type AggRow } from '../../src/runtime/archive/aggregate-files.ts';
import { fileExists } from '../../src/runtime/archive/file-exists.ts';
import { aggDayFile, aggHourFile } from '../../src/runtime/archive/aggregate-layout.ts';
import { archivedAdBuckets, archivedTotals, planFiles } from '../../src/runtime/archive/aggregate-query.ts';
import { duckConnection } from '../../src/runtime/archive/duckdb.ts';
import { bucketRange } from '../../src/gateway/params.ts';
import { splitRange } from '../../src/gateway/tiered-reads.ts';

const D0 = Date.parse('2024-01-01T00:00:00Z') / 60_000; // epoch minute of the day
const H = 60;

let dir: string;

/** Writes the minute files of the given hours (epoch minutes) from rows, their hour rollups, and the day rollup. */
async function writeDay(rows: AggRow[]): Promise<void> {
  const conn = await duckConnection();
  try {
    for (let h = D0; h < D0 + 24 * H; h += H) {
      const t = await aggTable(conn, 'test');
      const a = await conn.createAppender(t);
      for (const r of rows) if (r.minute >= h && r.minute < h + H) appendRow(a, r);
      a.flushSync();
      a.closeSync();
      await writeAtomically(conn, dir, `SELECT * FROM ${t}`, aggHourFile(dir, 'minute', h * 60_000));
      await rollupHour(conn, dir, h * 60_000);
      await dropTable(conn, t);
    }
    await rollupDay(conn, dir, D0 * 60_000);
  } finally {
    conn.closeSync();
  }
}

async function readAll(file: string): Promise<Array<[number, string, string | null, string | null, number]>> {
  const conn = await duckConnection();
  try {
    const rows = (await conn.runAndReadAll(`SELECT * FROM ${readAgg([file])} ORDER BY "minute", ad_id, dim NULLS FIRST, "value"`)).getRowObjects();
    return rows.map((r) => [Number(r.minute as bigint), r.ad_id as string, r.dim as string | null, r.value as string | null, Number(r.count as bigint)]);
  } finally {
    conn.closeSync();
  }
}

const row = (minute: number, ad_id: string, count: number, dim: string | null = null, value: string | null = null): AggRow => ({ minute, ad_id, dim, value, count });

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-agg-'));
  await writeDay([
    row(D0 + 5, 'A', 3),
    row(D0 + 5, 'A', 2, 'country', 'US'),
    row(D0 + 5, 'A', 1, 'country', 'FR'),
    row(D0 + 6, 'B', 7),
    row(D0 + H + 1, 'A', 4),
    row(D0 + 23 * H + 59, 'B', 1),
  ]);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('aggregate archive files', () => {
  it('plans the coarsest files that cover a range exactly', () => {
    expect(planFiles(D0 + 30, D0 + 3 * H + 10, 'day')).toEqual({ days: [], hours: [D0 + H, D0 + 2 * H], minuteHours: [D0, D0 + 3 * H] });
    expect(planFiles(D0, D0 + 2 * 1440 + H, 'day')).toEqual({ days: [D0, D0 + 1440], hours: [D0 + 2 * 1440], minuteHours: [] });
    expect(planFiles(D0, D0 + 1440, 'hour').hours).toHaveLength(24);
    expect(planFiles(D0, D0 + 2 * H, 'minute')).toEqual({ days: [], hours: [], minuteHours: [D0, D0 + H] });
  });

  it('cuts ranges at the archive and aligns hour/day ranges', () => {
    expect(splitRange(10, 100, { start: 20, end: 60 })).toEqual({ before: [10, 20], archived: [20, 60], after: [60, 100] });
    expect(splitRange(70, 100, { start: 20, end: 60 })).toEqual({ before: [70, 70], archived: [70, 70], after: [70, 100] });
    expect(splitRange(10, 100, undefined)).toEqual({ before: [10, 100], archived: [100, 100], after: [100, 100] });
    expect(bucketRange(D0 + 30, D0 + 61, 60)).toEqual({ from: D0, to: D0 + 120 });
    expect(() => bucketRange(D0, D0 + 401 * 1440, 1440)).toThrow(/400 days/);
  });

  it('reads an ad per minute, hour and day, and every ad over a range, from the right tiers', async () => {
    const total = { dim: null, value: null };
    expect([...(await archivedAdBuckets(dir, 'A', total, D0, D0 + 2 * H, 1))].sort()).toEqual([
      [D0 + 5, 3],
      [D0 + H + 1, 4],
    ]);
    expect([...(await archivedAdBuckets(dir, 'A', { dim: 'country', value: 'US' }, D0, D0 + 1440, 60))]).toEqual([[D0, 2]]);
    expect([...(await archivedAdBuckets(dir, 'A', total, D0, D0 + 1440, 1440))]).toEqual([[D0, 7]]);
    expect(await archivedTotals(dir, total, D0, D0 + 1440)).toEqual(new Map([['A', 7], ['B', 8]]));
    // A partial hour reads the minute file, filtered.
    expect(await archivedTotals(dir, total, D0 + 6, D0 + H + 2)).toEqual(new Map([['B', 7], ['A', 4]]));
  });

  it('applyArchivedChanges rewrites the minute, hour and day files of archived hours only', async () => {
    const res = await applyArchivedChanges(dir, [
      { ad_id: 'A', minute: D0 + 5, dim: null, value: null, count: 5 },
      { ad_id: 'A', minute: D0 + 5, dim: 'country', value: 'FR', count: 0 },
      { ad_id: 'C', minute: D0 + 7, dim: 'country', value: "O'X", count: 9 },
      { ad_id: 'A', minute: D0 + 1440 + 3, dim: null, value: null, count: 1 }, // 2024-01-02: not archived
    ]);
    expect(res).toEqual({ hours: [D0 * 60_000], days: [D0 * 60_000] });
    expect(await fileExists(aggHourFile(dir, 'minute', (D0 + 1440) * 60_000))).toBe(false);
    expect(await readAll(aggHourFile(dir, 'minute', D0 * 60_000))).toEqual([
      [D0 + 5, 'A', null, null, 5],
      [D0 + 5, 'A', 'country', 'US', 2],
      [D0 + 6, 'B', null, null, 7],
      [D0 + 7, 'C', 'country', "O'X", 9],
    ]);
    expect(await readAll(aggHourFile(dir, 'hour', D0 * 60_000))).toEqual([
      [D0, 'A', null, null, 5],
      [D0, 'A', 'country', 'US', 2],
      [D0, 'B', null, null, 7],
      [D0, 'C', 'country', "O'X", 9],
    ]);
    expect(await readAll(aggDayFile(dir, D0 * 60_000))).toEqual([
      [D0, 'A', null, null, 9],
      [D0, 'A', 'country', 'US', 2],
      [D0, 'B', null, null, 8],
      [D0, 'C', 'country', "O'X", 9],
    ]);
  });
});
