import { describe, expect, it } from 'vitest';
import { touchedRanges } from '../../src/runtime/archive/backfill.ts';

const H = 3_600_000;
const M = 60_000;
const c = (ts: number) => ({ click_id: String(ts), ad_id: 'a', ts });

describe('backfill: the minute ranges a backfill recomputes', () => {
  it('one range per run of consecutive hours, from the first to the last touched minute', () => {
    const base = Date.parse('2026-11-28T10:00:00Z');
    expect(
      touchedRanges([c(base + 5 * M + 10), c(base + H + 7 * M), c(base + 3 * M), c(base + 5 * H + 59 * M + 999), c(base + 5 * H + 2 * M)]),
    ).toEqual([
      { fromMs: base + 3 * M, toMs: base + H + 8 * M },
      { fromMs: base + 5 * H + 2 * M, toMs: base + 6 * H },
    ]);
  });

  it('none for no clicks; a single click is its own minute', () => {
    expect(touchedRanges([])).toEqual([]);
    const t = Date.parse('2024-07-09T00:00:01Z');
    expect(touchedRanges([c(t)])).toEqual([{ fromMs: t - 1000, toMs: t - 1000 + M }]);
  });
});
