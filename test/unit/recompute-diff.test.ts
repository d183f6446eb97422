import { describe, expect, it } from 'vitest';
import { diffFields, fieldKey, fieldOf, summarize, type FieldRef } from '../../src/runtime/archive/recompute-diff.ts';

const f = (ad_id: string, minute: number, dim: string | null = null, value: string | null = null, shard = 0): FieldRef => ({ shard, minute, dim, value, ad_id });

describe('recompute diff', () => {
  it('field keys round-trip, values with any separator included', () => {
    const x = f('a|b', 7, 'country', 'U"S|x', 2);
    expect(fieldOf(fieldKey(x))).toEqual(x);
  });

  it('lists every differing field, missing = 0, in a stable order', () => {
    const stored = new Map([
      [fieldKey(f('a', 2)), 5],
      [fieldKey(f('a', 1)), 3],
      [fieldKey(f('b', 1, 'country', 'US')), 2],
      [fieldKey(f('c', 1)), 4],
    ]);
    const truth = new Map([
      [fieldKey(f('a', 2)), 5],
      [fieldKey(f('a', 1)), 4],
      [fieldKey(f('c', 1)), 4],
      [fieldKey(f('d', 3)), 1],
    ]);
    expect(diffFields(stored, truth)).toEqual([
      { ...f('a', 1), old: 3, new: 4 },
      { ...f('b', 1, 'country', 'US'), old: 2, new: 0 },
      { ...f('d', 3), old: 0, new: 1 },
    ]);
    expect(diffFields(truth, truth)).toEqual([]);
  });

  it('summarizes minutes, clicks added and removed (totals only) and the top ads', () => {
    const s = summarize([
      { ...f('a', 1), old: 3, new: 5 },
      { ...f('a', 1, 'country', 'US'), old: 0, new: 2 },
      { ...f('b', 2), old: 9, new: 1 },
      { ...f('c', 2, '!inv', 'ip-cap'), old: 1, new: 2 },
    ]);
    expect(s).toEqual({
      fields: 4,
      minutes_changed: 2,
      ad_minutes_changed: 3,
      clicks_added: 3,
      clicks_removed: 8,
      top_ads: [
        { ad_id: 'b', delta: -8, minutes: 1 },
        { ad_id: 'a', delta: 2, minutes: 1 },
        { ad_id: 'c', delta: 1, minutes: 1 },
      ],
    });
  });
});
