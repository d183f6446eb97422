/** The comparison of archive and stored counts, the day parameter, and the daily schedule (simulated clock). */
import { describe, expect, it } from 'vitest';
import { dayStartMs, parseDay, type ReconcileReport } from '../../src/runtime/archive/reconcile.ts';
import { duckConnection } from '../../src/runtime/archive/duckdb.ts';
import { ReconcileTables } from '../../src/runtime/archive/reconcile-compare.ts';
import type { Comparison } from '../../src/runtime/archive/reconcile-report.ts';
import { ReconcileSchedule, RETRY_MS } from '../../src/gateway/reconcile-schedule.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { RuntimeEvents } from '../../src/runtime/events.ts';
import { createLogger } from '../../src/runtime/logger.ts';

const shardOfAd = (ad: string): number => (ad === 'B' ? 1 : 0);

/** The DuckDB comparison over given raw rows (ad, minute, clicks, shard|null) and stored fields. */
async function compare(
  raw: Array<[string, number, number, number | null]>,
  stored: Array<[number, number, string, number]>,
  closed: Map<number, number>,
): Promise<Comparison> {
  const conn = await duckConnection();
  const t = new ReconcileTables(conn);
  try {
    const values = raw.map(([ad, m, n, s]) => `('${ad}', ${m}::BIGINT, ${n}::BIGINT, ${s === null ? 'NULL' : s}::INTEGER)`).join(', ');
    await t.loadRaw(raw.length === 0 ? undefined : `SELECT * FROM (VALUES ${values}) v(ad_id, minute, clicks, shard)`, shardOfAd);
    await t.loadStored(async (append) => {
      for (const [s, m, ad, n] of stored) append(s, m, ad, n);
    });
    return await t.compare(closed);
  } finally {
    await t.drop();
    conn.closeSync();
  }
}

describe('the comparison (DuckDB)', () => {
  it('names each differing closed ad-minute, counts later minutes as pending', async () => {
    const c = await compare(
      [
        ['A', 10, 3, 0],
        ['A', 11, 2, 0],
        ['B', 10, 5, null], // only on hot child subjects: its shard comes from the ad
        ['B', 12, 7, 1], // shard 1 closed through 10 only
      ],
      [
        [0, 10, 'A', 3],
        [0, 11, 'A', 1],
        [0, 11, 'Z', 2],
        [1, 10, 'B', 4],
        [1, 10, 'B', 1], // an invalid-click field of the same ad-minute: summed
      ],
      new Map([[0, 11], [1, 10]]),
    );
    expect(c).toMatchObject({ ads: 3, checked_minutes: 4, pending_minutes: 1, clicks: 10, mismatches: 2 });
    expect(c.all).toEqual([
      { ad_id: 'Z', minute: new Date(11 * 60_000).toISOString(), shard: 0, archive: 0, stored: 2, diff: 2 },
      { ad_id: 'A', minute: new Date(11 * 60_000).toISOString(), shard: 0, archive: 2, stored: 1, diff: -1 },
    ]);
  });

  it('finds nothing when both sides agree; a shard that closed nothing leaves its minutes pending', async () => {
    expect((await compare([['A', 1, 4, 0]], [[0, 1, 'A', 4]], new Map([[0, 1]]))).mismatches).toBe(0);
    expect(await compare([['A', 1, 4, 0]], [], new Map([[0, -Infinity]]))).toMatchObject({ mismatches: 0, checked_minutes: 0, pending_minutes: 1 });
    expect(await compare([], [], new Map([[0, 5]]))).toMatchObject({ mismatches: 0, checked_minutes: 0, clicks: 0 });
  });
});

describe('day', () => {
  it('accepts real UTC dates only', () => {
    expect(dayStartMs('2026-11-29')).toBe(Date.parse('2026-11-29T00:00:00Z'));
    for (const bad of ['2026-02-30', '2026-1-01', '20261129', '', '2026-11-29T00:00']) expect(dayStartMs(bad)).toBeUndefined();
    expect(() => parseDay('yesterday')).toThrow(expect.objectContaining({ code: 'ADAGG_E_BAD_PARAM' }));
  });
});

describe('ReconcileSchedule', () => {
  const report = (day: string, mismatches: number): ReconcileReport => ({
    day, ran_at: '', duration_ms: 1, shards: 1, files: 1, ads: 1, checked_minutes: 1, pending_minutes: 0, clicks: 1, mismatches, rows: [], truncated: false,
  });

  function setup(startIso: string, opts: { fail?: boolean; locks?: Set<string>; stored?: Map<string, number> } = {}) {
    const clock = new ManualClock(Date.parse(startIso));
    const events = new RuntimeEvents();
    const seen: Array<{ day: string; result: string }> = [];
    events.on('reconcile', (e) => seen.push(e));
    const runs: string[] = [];
    const locks = opts.locks ?? new Set<string>();
    const lockedAt = new Map<string, number>();
    const stored = opts.stored ?? new Map<string, number>();
    const s = new ReconcileSchedule({
      at: '02:30',
      clock,
      events,
      log: createLogger('test', 'silent'),
      run: async (day) => {
        runs.push(day);
        if (opts.fail) throw Object.assign(new Error('behind'), { code: 'ADAGG_E_ARCHIVE_BEHIND' });
        stored.set(day, clock.now());
        return report(day, 2);
      },
      lock: async (day, ms) => {
        const k = day;
        const at = lockedAt.get(k);
        if (locks.has(k) && at !== undefined && clock.now() - at < ms) return false;
        locks.add(k);
        lockedAt.set(k, clock.now());
        return true;
      },
      ranAt: async (day) => stored.get(day),
    });
    return { clock, s, runs, seen, stored };
  }

  it('runs the previous day once, after the time', async () => {
    const { clock, s, runs, seen } = setup('2026-11-30T02:29:00Z');
    await s.tick();
    expect(runs).toEqual([]);
    clock.advance(60_000);
    await s.tick();
    await s.tick();
    expect(runs).toEqual(['2026-11-29']);
    expect(seen).toEqual([{ day: '2026-11-29', result: 'mismatch', mismatches: 2 }]);
    clock.advance(86_400_000);
    await s.tick();
    expect(runs).toEqual(['2026-11-29', '2026-11-30']);
    await s.close();
  });

  it('one of two gateways runs it; a day already reported after the time is done', async () => {
    const locks = new Set<string>();
    const stored = new Map<string, number>();
    const a = setup('2026-11-30T03:00:00Z', { locks, stored });
    const b = setup('2026-11-30T03:00:00Z', { locks, stored });
    await a.s.tick();
    await b.s.tick();
    expect([...a.runs, ...b.runs]).toEqual(['2026-11-29']);
  });

  it('retries a failed run once the lock expires', async () => {
    const { clock, s, runs, seen } = setup('2026-11-30T03:00:00Z', { fail: true });
    await s.tick();
    clock.advance(60_000);
    await s.tick();
    expect(runs).toHaveLength(1);
    expect(seen[0]?.result).toBe('failed');
    clock.advance(RETRY_MS);
    await s.tick();
    expect(runs).toHaveLength(2);
  });
});
