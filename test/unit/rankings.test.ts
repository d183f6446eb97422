import { describe, expect, it } from 'vitest';
import { MinuteCounts } from '../../src/actors/shard/minute-counts.ts';
import { ShardRankings } from '../../src/actors/shard/rankings.ts';
import type { Click } from '../../src/model/click.ts';
import { topN } from '../../src/model/top-n.ts';
import { rng } from '../helpers/click-stream.ts';

/**
 * The shard rankings keep their window sums incrementally (a minute close moves a window by one
 * minute, a late click or a report changes one ad's sum, the top-K follows). Checked here against a
 * brute-force recount of every window after every step, over random closes, late clicks into
 * pending and committed minutes, negative and positive report deltas, and filtered specs.
 */
const DIMS = ['country'];
const COUNTRIES = ['US', 'DE', 'FR'];

function bruteTop(truth: Map<number, Map<string, number>>, from: number, to: number, depth: number): Array<string | number> {
  const sums = new Map<string, number>();
  for (let m = from; m < to; m++) for (const [ad, n] of truth.get(m) ?? []) sums.set(ad, (sums.get(ad) ?? 0) + n);
  return topN(sums, depth).flatMap((r) => [r.ad_id, r.count]);
}

function run(seed: number): number {
  const r = rng(seed);
  const depth = 4;
  const rk = new ShardRankings(depth, 12, [
    { window: 1, dim: null, value: null },
    { window: 5, dim: null, value: null },
    { window: 12, dim: null, value: null },
  ]);
  rk.addSpec({ window: 5, dim: 'country', value: 'US' }, Infinity, false);
  // Independent truth per spec filter: minute → ad → count.
  const truth = { all: new Map<number, Map<string, number>>(), us: new Map<number, Map<string, number>>() };
  const bump = (t: Map<number, Map<string, number>>, m: number, ad: string, d: number): void => {
    let x = t.get(m);
    if (!x) t.set(m, (x = new Map()));
    const n = (x.get(ad) ?? 0) + d;
    if (n === 0) x.delete(ad);
    else x.set(ad, n);
  };
  const windows = new Map<number, MinuteCounts>(); // the actor's: open and pending-closed minutes
  const pending = new Set<number>();
  let closedThrough = 99;
  let checks = 0;
  let id = 0;
  const clickOf = (m: number): Click => {
    const c: Click = { click_id: `c${id++}`, ad_id: `ad${Math.floor(r() * r() * 30)}`, ts: m * 60_000 };
    if (r() < 0.8) c.country = COUNTRIES[Math.floor(r() * COUNTRIES.length)]!;
    return c;
  };
  const count = (c: Click, m: number): void => {
    bump(truth.all, m, c.ad_id, 1);
    if (c.country === 'US') bump(truth.us, m, c.ad_id, 1);
  };
  const latest = new Map<string, { end: number; list: Array<string | number> }>();
  for (let step = 0; step < 400; step++) {
    const x = r();
    if (x < 0.45) {
      // Clicks into the open minute after closedThrough.
      const m = closedThrough + 1;
      let mc = windows.get(m);
      if (!mc) windows.set(m, (mc = new MinuteCounts(true)));
      for (let i = 0; i < 1 + Math.floor(r() * 6); i++) {
        const c = clickOf(m);
        mc.add(c, DIMS);
        count(c, m);
      }
    } else if (x < 0.6) {
      // A minute closes (sometimes two).
      for (let k = 0; k < (r() < 0.2 ? 2 : 1); k++) {
        closedThrough++;
        const mc = windows.get(closedThrough) ?? new MinuteCounts(true);
        windows.set(closedThrough, mc);
        pending.add(closedThrough);
        rk.retain(closedThrough, mc);
      }
      rk.dropBefore(closedThrough + 1 - 12);
    } else if (x < 0.7) {
      // A commit: pending minutes leave the actor (the rankings keep their objects).
      for (const m of pending) windows.delete(m);
      pending.clear();
    } else if (x < 0.9) {
      // A late click into a closed minute inside the longest window.
      const m = closedThrough - Math.floor(r() * 14);
      const c = clickOf(m);
      const shared = pending.has(m);
      if (shared) windows.get(m)!.add(c, DIMS);
      if (m >= closedThrough + 1 - 12) count(c, m);
      rk.lateClick(m, closedThrough, c, DIMS, shared);
    } else {
      // A hot child's report changes one field by a delta, up or down (never below zero).
      const m = closedThrough - Math.floor(r() * 12);
      const ad = `ad${Math.floor(r() * 30)}`;
      const cur = truth.all.get(m)?.get(ad) ?? 0;
      const delta = r() < 0.3 ? -Math.min(cur, 1 + Math.floor(r() * 2)) : 1 + Math.floor(r() * 3);
      const shared = pending.has(m);
      if (shared) {
        const w = windows.get(m)!;
        w.set(ad, (w.get(ad) ?? 0) + delta);
      }
      bump(truth.all, m, ad, delta);
      rk.lateDelta(m, closedThrough, ad, null, null, delta, shared);
    }
    for (const u of rk.updates(closedThrough, new Map(), closedThrough + 2, false, 0)) {
      if (u.k === 'final') latest.set(u.spec, { end: u.end, list: u.list });
    }
    const end = closedThrough + 1;
    for (const [spec, w, t] of [
      ['1//', 1, truth.all],
      ['5//', 5, truth.all],
      ['12//', 12, truth.all],
      ['5/country/US', 5, truth.us],
    ] as const) {
      const got = latest.get(spec);
      expect(got?.end, `step ${step} spec ${spec}`).toBe(end);
      expect(got?.list, `step ${step} spec ${spec} end ${end}`).toEqual(bruteTop(t, end - w, end, depth));
      checks++;
    }
  }
  return checks;
}

describe('ShardRankings: incremental window sums', () => {
  it.each([1, 2, 3, 4, 5, 6, 7, 8])('seed %i: every final list equals a brute-force recount after every step', (seed) => {
    expect(run(seed)).toBe(1600);
  });
});
