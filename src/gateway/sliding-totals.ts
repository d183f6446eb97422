/**
 * Per-ad totals over long ranges of final minutes, computed incrementally. A minute older than
 * every shard's retention (the committed watermark minus the correction horizon and the other
 * allowances, below which an actor drops a click) can no longer change, so the totals of a range of
 * such minutes can be kept and slid: a range [from, to) is derived from the kept [f, t) by adding
 * the minutes it has and [f, t) has not and subtracting the reverse, each read once. A 7-day ranking
 * then reads a few minutes per shard instead of 10,080 once its base is kept.
 *
 * One base is kept per filter (at most `maxEntries`, least recently used dropped first, and none with
 * more than `maxAds` ads, so memory stays bounded), and computations for one filter run one at a time
 * so that each slides from the previous one instead of all reading the whole range at once.
 *
 * @example
 * const bases = new SlidingTotals({ maxEntries: 64, maxAds: 200_000 });
 * const totals = await bases.totals('country=US', from, to, (f, t) => readTotals(f, t));
 */

/** Reads each ad's count over the final minutes [from, to). */
export type ReadTotals = (fromMinute: number, toMinute: number) => Promise<Map<string, number>>;

/** Options of a {@link SlidingTotals}. */
export interface SlidingTotalsOptions {
  /** Bases kept (one per filter). */
  maxEntries: number;
  /** A range with more ads than this is not kept (a base costs ~100 bytes per ad). */
  maxAds: number;
}

interface Base {
  from: number;
  to: number;
  totals: ReadonlyMap<string, number>;
}

export class SlidingTotals {
  /** Map order is recency: the first is dropped when full. */
  private readonly bases = new Map<string, Base>();
  /** The computation running per key: the next one waits for it, then slides from its result. */
  private readonly running = new Map<string, Promise<unknown>>();
  private minutesRead = 0;

  constructor(private readonly opts: SlidingTotalsOptions) {}

  /** Minutes read so far (over all keys): what the incremental computation saves shows here. */
  get readMinutes(): number {
    return this.minutesRead;
  }

  /** Each ad's count over the final minutes [from, to), for the filter `key`. */
  async totals(key: string, from: number, to: number, read: ReadTotals): Promise<ReadonlyMap<string, number>> {
    const before = this.running.get(key);
    const mine = (async () => {
      await before?.catch(() => undefined);
      return this.compute(key, from, to, read);
    })();
    this.running.set(key, mine);
    try {
      return await mine;
    } finally {
      if (this.running.get(key) === mine) this.running.delete(key);
    }
  }

  private async compute(key: string, from: number, to: number, read: ReadTotals): Promise<ReadonlyMap<string, number>> {
    const base = this.bases.get(key);
    const counted: ReadTotals = (f, t) => {
      this.minutesRead += t - f;
      return read(f, t);
    };
    let totals: Map<string, number>;
    const slide = base === undefined ? Infinity : Math.abs(from - base.from) + Math.abs(to - base.to);
    if (base !== undefined && slide < to - from) {
      totals = new Map(base.totals);
      const parts: Array<[number, number, 1 | -1]> = [];
      // What [from, to) has and the base has not: added; what the base has and [from, to) has not: subtracted.
      if (from < base.from) parts.push([from, Math.min(to, base.from), 1]);
      if (to > base.to) parts.push([Math.max(from, base.to), to, 1]);
      if (base.from < from) parts.push([base.from, Math.min(base.to, from), -1]);
      if (base.to > to) parts.push([Math.max(base.from, to), base.to, -1]);
      for (const [f, t, sign] of parts) {
        if (f >= t) continue;
        for (const [ad, c] of await counted(f, t)) {
          const n = (totals.get(ad) ?? 0) + sign * c;
          if (n === 0) totals.delete(ad);
          else totals.set(ad, n);
        }
      }
    } else {
      totals = await counted(from, to);
    }
    // Keep the newest range (the latest rankings slide forward from it); an older `at` only reads.
    if (totals.size <= this.opts.maxAds && this.opts.maxEntries > 0 && (base === undefined || to >= base.to)) {
      this.bases.delete(key);
      this.bases.set(key, { from, to, totals });
      for (const k of this.bases.keys()) {
        if (this.bases.size <= this.opts.maxEntries) break;
        this.bases.delete(k);
      }
    }
    return totals;
  }
}
