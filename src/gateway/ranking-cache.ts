import type { Ranked } from '../model/top-n.ts';

/** Options of a {@link RankingCache}. */
export interface RankingCacheOptions {
  /** Answers kept; 0: nothing is kept, but concurrent identical requests still share one computation. */
  maxEntries: number;
  /** Longest an answer is served, even when no minute closes. */
  maxAgeMs: number;
  /** @default Date.now */
  now?: (() => number) | undefined;
}

interface Entry {
  epoch: number;
  at: number;
  ranking: Promise<Ranked[]>;
}

/**
 * Answers of heavy `popular_ads` queries (long windows of closed minutes), shared and kept:
 * - single-flight: concurrent identical requests wait for one computation instead of each reading
 *   every minute of the window from Redis (20 parallel 7-day rankings were 20 × 0.65 s of CPU);
 * - cached until the next minute closes (`epoch`: the end of the latest minute every shard has
 *   closed) or `maxAgeMs`, whichever comes first, at most `maxEntries` answers (least recently used
 *   dropped first).
 *
 * An entry holds the ranking at its deepest (`maxTopN` ads); a request for `n` ads takes its first
 * `n`, which is the top `n` because the order (count desc, then ad_id) is total.
 *
 * A correction to a closed minute (a late click within the correction horizon) shows in a cached
 * answer once the next minute closes, at most `maxAgeMs` later.
 *
 * @example
 * const cache = new RankingCache({ maxEntries: 64, maxAgeMs: 60_000 });
 * const ads = await cache.get(`${to}|${window}|`, closedEnd, () => computeTop(1000));
 */
export class RankingCache {
  /** Map order is recency: a hit moves its entry to the end, the first is dropped when full. */
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;
  private computed = 0;

  constructor(private readonly opts: RankingCacheOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** How many rankings were computed (not served from the cache or an in-flight computation). */
  get computations(): number {
    return this.computed;
  }

  /**
   * The ranking for `key` at `epoch`: an in-flight or kept one with the same epoch and younger than
   * `maxAgeMs`, or else a new one from `compute`. A failed computation is not kept.
   */
  get(key: string, epoch: number, compute: () => Promise<Ranked[]>): Promise<Ranked[]> {
    const now = this.now();
    const hit = this.entries.get(key);
    if (hit && hit.epoch === epoch && now - hit.at < this.opts.maxAgeMs) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit.ranking;
    }
    this.computed++;
    const entry: Entry = { epoch, at: now, ranking: compute() };
    this.entries.delete(key);
    this.entries.set(key, entry);
    const forget = (): void => {
      if (this.entries.get(key) === entry) this.entries.delete(key);
    };
    // Kept only while it is being computed when there is no room to keep answers.
    void entry.ranking.then(() => (this.opts.maxEntries === 0 ? forget() : undefined), forget);
    this.evict();
    return entry.ranking;
  }

  private evict(): void {
    // In-flight computations count too: the map never holds more than maxEntries + 1 entries.
    const room = Math.max(1, this.opts.maxEntries);
    for (const key of this.entries.keys()) {
      if (this.entries.size <= room) break;
      this.entries.delete(key);
    }
  }
}
