import { minuteOf } from '../model/time.ts';
import { topN, type Ranked } from '../model/top-n.ts';
import { RankingCache } from './ranking-cache.ts';
import { SlidingTotals } from './sliding-totals.ts';

/**
 * Heavy `popular_ads` rankings (windows of at least `heavyQueryMinutes`), made cheap:
 * - the part of the window older than every shard's retention can no longer change: its totals
 *   are kept per filter and slid minute by minute (sliding-totals.ts), so only the recent part
 *   (about the correction horizon) and the slide are read;
 * - a ranking of minutes every shard has closed is shared among concurrent identical requests and
 *   kept until the next minute closes (ranking-cache.ts).
 */

export interface HeavyRankingsOptions {
  shards: number;
  /** @default 60 */
  heavyQueryMinutes?: number | undefined;
  /** Rankings and bases kept (0: only shared while computed). @default 64 */
  rankingCacheEntries?: number | undefined;
  /** @default 1000 */
  maxTopN?: number | undefined;
  /**
   * An actor drops a click older than its watermark minus correctionHorizonMs + maxFutureMs +
   * allowedLatenessMs + idleTimeoutMs (its retention), so older minutes are final for good. Unset:
   * nothing is treated as final for good (no sliding totals).
   */
  correctionHorizonMs?: number | undefined;
  maxFutureMs?: number | undefined;
  allowedLatenessMs?: number | undefined;
  idleTimeoutMs?: number | undefined;
}

/** A shard's committed progress (query-service.ts `ShardMeta`). */
export interface CommittedProgress {
  watermark: number;
  closedThrough: number;
}

/** Each ad's count over [from, to) under a filter, as the query service computes it. */
export type TotalsOf = (fromMinute: number, toMinute: number) => Promise<Map<string, number>>;

/** A cached ranking is served at most this long, even when no minute closes. */
const RANKING_MAX_AGE_MS = 60_000;
/** A base with more ads is not kept (~100 bytes each). */
const MAX_BASE_ADS = 200_000;
/** Final-for-good minutes end this much before the retention bound (commits in flight). */
const MARGIN_MINUTES = 2;

export class HeavyRankings {
  readonly rankings: RankingCache;
  readonly bases: SlidingTotals;
  private readonly retentionMs: number | undefined;

  constructor(private readonly opts: HeavyRankingsOptions) {
    const entries = opts.rankingCacheEntries ?? 64;
    this.rankings = new RankingCache({ maxEntries: entries, maxAgeMs: RANKING_MAX_AGE_MS });
    this.bases = new SlidingTotals({ maxEntries: entries, maxAds: MAX_BASE_ADS });
    const parts = [opts.correctionHorizonMs, opts.maxFutureMs, opts.allowedLatenessMs, opts.idleTimeoutMs];
    this.retentionMs = parts.every((p) => p !== undefined) ? parts.reduce<number>((a, p) => a + p!, 0) : undefined;
  }

  /** Whether a window is heavy (rate-limited, shared and cached). */
  isHeavy(window: number): boolean {
    return window >= (this.opts.heavyQueryMinutes ?? 60);
  }

  /**
   * The top `n` of [to − window, to) under `filterKey`, or undefined when the ranking is not heavy or
   * not every shard has committed (the caller computes it as usual). `closedEnd` is the end of the
   * latest minute every shard has closed.
   */
  async rank(
    n: number,
    window: number,
    to: number,
    filterKey: string,
    metas: readonly CommittedProgress[],
    closedEnd: number,
    totalsOf: TotalsOf,
  ): Promise<Ranked[] | undefined> {
    if (!this.isHeavy(window) || metas.length !== this.opts.shards || !metas.every((m) => m.closedThrough >= 0 && m.watermark >= 0)) return undefined;
    const from = to - window;
    const finalEnd = this.finalForGoodEnd(metas);
    const compute = async (depth: number): Promise<Ranked[]> => {
      const split = Math.max(from, Math.min(to, finalEnd));
      const [old, recent] = await Promise.all([
        split > from ? this.bases.totals(filterKey, from, split, totalsOf) : Promise.resolve(new Map<string, number>()),
        split < to ? totalsOf(split, to) : Promise.resolve(new Map<string, number>()),
      ]);
      const totals = new Map(old);
      for (const [ad, c] of recent) totals.set(ad, (totals.get(ad) ?? 0) + c);
      return topN(totals, depth);
    };
    // Open minutes change with every click: such a ranking is computed for its request alone.
    if (to > closedEnd) return compute(n);
    const depth = Math.max(n, this.opts.maxTopN ?? 1000);
    const ads = await this.rankings.get(`${to} ${window} ${depth} ${filterKey}`, closedEnd, () => compute(depth));
    return ads.slice(0, n);
  }

  /** Minutes before this one can no longer change (−∞ when unknown). */
  private finalForGoodEnd(metas: readonly CommittedProgress[]): number {
    if (this.retentionMs === undefined) return -Infinity;
    const wm = Math.min(...metas.map((m) => m.watermark));
    return minuteOf(wm - this.retentionMs) - MARGIN_MINUTES;
  }
}
