/** The raw side's SQL over real Parquet files (DuckDB, temp dir): what an actor counted, per ad-minute. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { duckConnection } from '../../src/runtime/archive/duckdb.ts';
import { deadLetterFilesFrom, rawCounts, rawDayFiles, rawFilesAround, type RawCount } from '../../src/runtime/archive/reconcile-raw.ts';
import { writeDeadLetterFiles, writeRawFiles, type RawRow } from '../helpers/archive-fixtures.ts';

const DAY = '2026-03-10';
const D0 = Date.parse(`${DAY}T00:00:00Z`);
const M = 60_000;
const m = (k: number): number => D0 + 5 * 3600_000 + k * M; // 05:00 + k minutes
const minuteOf = (ms: number): number => Math.floor(ms / M);
const S0 = 'p.clicks.0';
const S1 = 'p.clicks.1';
const HOT = 'p.hot.6164.1.0';

let dir: string;

const row = (click_id: string, ad_id: string, ts: number, subject: string, seq: number, pos = 0): RawRow => ({ click_id, ad_id, ts, subject, seq, pos });

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-reconcile-raw-'));
  await writeRawFiles(dir, 's0', [
    row('c1', 'A', m(0), S0, 1),
    row('c2', 'A', m(0) + 5, S0, 2, 0),
    row('c2', 'A', m(0) + 6, S0, 2, 1), // a repeat inside one message: pos 1 is the duplicate
    row('c1', 'A', m(1), S0, 3), // a later copy with another ts: a duplicate, not a click of minute 1
    row('c3', 'A', m(0), S0, 4), // refused as too old (letter below)
    row('c4', 'A', m(0), S0, 5), // refused as too old ...
    row('c4', 'A', m(2), S0, 6), // ... so this later copy is the one counted, at minute 2
    row('c6', 'B', m(0), S0, 9),
    row('c5', 'B', m(0), S0, 11), // past the committed seq 10: not applied yet
    row('c9', 'A', m(0) + 3600_000, S0, 7), // next hour's file, same day
  ]);
  await writeRawFiles(dir, 's1', [row('c8', 'D', m(0), S1, 8)]); // shard 1 never committed
  await writeRawFiles(dir, 'hot', [row('c7', 'C', m(0), HOT, 100)]); // hot rows are all taken
  // Another day's click: not part of DAY.
  await writeRawFiles(dir, 's0', [row('x1', 'A', D0 - M, S0, 12)]);
  // ... whose copy arrives 30 s into DAY: a duplicate of a click counted the day before.
  await writeRawFiles(dir, 's0', [row('x1', 'A', D0 + 30_000, S0, 13)]);
  const letter = (seq: number, at: number, click_id: string, src_seq: number, reason = 'too_old') => ({
    seq,
    reason,
    at,
    source: `shard 0 seq ${src_seq}`,
    src_unit: 's0',
    src_seq,
    click_id,
    ad_id: 'A',
    ts: m(0),
  });
  // Letters are partitioned by arrival: one the same day, one the next day; an in_future letter
  // and a letter naming another seq change nothing.
  await writeDeadLetterFiles(dir, [letter(1, m(90), 'c3', 4), letter(2, m(90), 'c6', 9, 'in_future'), letter(3, m(90), 'c1', 99)]);
  await writeDeadLetterFiles(dir, [letter(4, D0 + 86_400_000 + 3600_000, 'c4', 5)]);
  // A writer's unfinished file is not part of the archive.
  await writeFile(path.join(path.dirname((await rawDayFiles(dir, DAY))[0]!), 's0-000000000050-000000000060.parquet.tmp-3'), 'junk');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function counts(committed: Map<string, number>, marginMs = 0): Promise<Array<Omit<RawCount, 'shard'>>> {
  const conn = await duckConnection();
  try {
    const res = await rawCounts(conn, {
      rawFiles: [...(await rawDayFiles(dir, DAY)), ...(await rawFilesAround(dir, D0, marginMs))],
      deadLetterFiles: await deadLetterFilesFrom(dir, DAY),
      committed,
      hotSubjectPrefix: 'p.hot.',
      dayStartMs: D0,
    });
    // The shard comes from the shard subject; clicks that only came on hot child subjects have none.
    for (const r of res) expect(r.shard, r.adId).toBe(r.adId === 'C' ? null : r.adId === 'D' ? 1 : 0);
    return res.map(({ shard: _s, ...r }) => r).sort((a, b) => a.adId.localeCompare(b.adId) || a.minute - b.minute);
  } finally {
    conn.closeSync();
  }
}

describe('reconcile raw SQL', () => {
  it('lists the day files and the dead letters of the day and later days', async () => {
    expect((await rawDayFiles(dir, DAY)).map((f) => path.basename(f))).toEqual([
      's0-000000000013-000000000013.parquet',
      'hot-000000000100-000000000100.parquet',
      's0-000000000001-000000000011.parquet',
      's1-000000000008-000000000008.parquet',
      's0-000000000007-000000000007.parquet',
    ]);
    expect(await deadLetterFilesFrom(dir, DAY)).toHaveLength(2);
    expect(await deadLetterFilesFrom(dir, '2026-03-11')).toHaveLength(1);
    expect(await rawDayFiles(dir, '2026-03-12')).toEqual([]);
  });

  it('keeps the lowest-seq copy, drops too-old copies and rows past the committed seq', async () => {
    expect(await counts(new Map([[S0, 10]]))).toEqual([
      { adId: 'A', minute: minuteOf(m(0)), clicks: 2 }, // c1, c2 (c3 too old)
      { adId: 'A', minute: minuteOf(m(2)), clicks: 1 }, // c4's accepted copy
      { adId: 'A', minute: minuteOf(m(60)), clicks: 1 }, // c9
      { adId: 'B', minute: minuteOf(m(0)), clicks: 1 }, // c6 (c5 past seq 10)
      { adId: 'C', minute: minuteOf(m(0)), clicks: 1 }, // hot c7
    ]);
  });

  it('takes rows up to the committed seq inclusive', async () => {
    const r = await counts(new Map([[S0, 11], [S1, 8]]));
    expect(r.find((x) => x.adId === 'B')?.clicks).toBe(2);
    expect(r.find((x) => x.adId === 'D')?.clicks).toBe(1);
    const early = await counts(new Map([[S0, 2]]));
    expect(early).toEqual([
      { adId: 'A', minute: minuteOf(m(0)), clicks: 2 },
      { adId: 'C', minute: minuteOf(m(0)), clicks: 1 },
    ]);
  });

  it('dedupes against the copies in the hours before the day (the correction horizon)', async () => {
    const early = (r: Array<Omit<RawCount, 'shard'>>) => r.find((x) => x.adId === 'A' && x.minute === minuteOf(D0));
    // x1 was counted at 23:59 the day before; its copy at 00:00:30 is a duplicate.
    expect(early(await counts(new Map([[S0, 20]]), 3600_000))).toBeUndefined();
    // Without the hour before, the copy looks like a click of the day.
    expect(early(await counts(new Map([[S0, 20]]), 0))?.clicks).toBe(1);
    expect((await rawFilesAround(dir, D0, 3600_000)).map((f) => path.basename(f))).toEqual(['s0-000000000012-000000000012.parquet']);
  });

  it('answers nothing for a day without files', async () => {
    const conn = await duckConnection();
    try {
      expect(await rawCounts(conn, { rawFiles: [], deadLetterFiles: [], committed: new Map(), hotSubjectPrefix: 'p.hot.', dayStartMs: D0 })).toEqual([]);
    } finally {
      conn.closeSync();
    }
  });
});
