import type { Click } from '../../model/click.ts';

export interface HotDetectorOptions {
  /** An ad at or above this many events/s is hot. */
  hotRatePerSec: number;
  /** ...or at or above this percentage of its shard's events (when at least `hotMinRatePerSec`). */
  hotSharePct: number;
  hotMinRatePerSec: number;
  /** How long the hot condition must hold before the ad is split. */
  hotForMs: number;
  /** A split ad cools when below this rate AND below `coolSharePct` ... */
  coolRatePerSec: number;
  coolSharePct: number;
  /** ... for this long; then it is un-split. */
  coolForMs: number;
  /** Rates and shares are averaged over this sliding window. @default 5000 */
  windowMs?: number;
  /** After a decision, the same decision for the same ad is not repeated for this long. @default 10000 */
  retryMs?: number;
}

export interface HotDecision {
  ad: string;
  action: 'split' | 'unsplit';
  ratePerSec: number;
  sharePct: number;
}

interface Bucket {
  at: number;
  total: number;
  perAd: Map<string, number>;
}

const BUCKET_MS = 1000;
/**
 * Per-ad counts come from every SAMPLE-th click (scaled back): detection needs rates of thousands
 * of clicks a second to within a few percent, not exact counts, and one map update per click was a
 * measurable share of a busy shard's time. Totals (for shares) stay exact.
 */
const SAMPLE = 8;

/**
 * Hot-ad detection for one shard, with hysteresis: an ad is split when (rate ≥ hotRate, or share ≥
 * hotShare with rate ≥ hotMinRate) held for `hotForMs`; a split ad is un-split when rate < coolRate
 * and share < coolShare held for `coolForMs`. Cool thresholds are below hot ones, so an ad near a
 * threshold does not flap. Pure: counts come in through `observe*`, time through `evaluate(now)`.
 */
export class HotDetector {
  private readonly buckets: Bucket[] = [];
  private cur: Bucket | undefined;
  private readonly since = new Map<string, { above?: number; below?: number }>();
  private readonly decided = new Map<string, { action: HotDecision['action']; at: number }>();
  private readonly windowMs: number;
  private readonly retryMs: number;
  /** Index in the next batch of the next sampled click. */
  private phase = 0;

  constructor(private readonly opts: HotDetectorOptions) {
    this.windowMs = opts.windowMs ?? 5000;
    this.retryMs = opts.retryMs ?? 10_000;
  }

  /** Clicks read from the shard's subject. */
  observeClicks(clicks: readonly Click[], now: number): void {
    const b = this.bucket(now);
    b.total += clicks.length;
    let i = this.phase;
    for (; i < clicks.length; i += SAMPLE) {
      const ad = clicks[i]!.ad_id;
      b.perAd.set(ad, (b.perAd.get(ad) ?? 0) + SAMPLE);
    }
    this.phase = i - clicks.length;
  }

  /** Clicks counted elsewhere for an ad (a split ad's children, from their reports). */
  observe(adId: string, n: number, now: number): void {
    if (n <= 0) return;
    const b = this.bucket(now);
    b.total += n;
    b.perAd.set(adId, (b.perAd.get(adId) ?? 0) + n);
  }

  private bucket(now: number): Bucket {
    if (!this.cur || now - this.cur.at >= BUCKET_MS) {
      this.cur = { at: now, total: 0, perAd: new Map() };
      this.buckets.push(this.cur);
    }
    return this.cur;
  }

  /** Decisions due now; `split` holds the ads this shard has split at present. */
  evaluate(now: number, split: ReadonlySet<string>): HotDecision[] {
    while (this.buckets.length > 0 && now - this.buckets[0]!.at >= this.windowMs) this.buckets.shift();
    const first = this.buckets[0];
    // Events of the window arrived from the oldest bucket's start until now.
    const spanMs = first ? Math.min(this.windowMs, Math.max(BUCKET_MS, now - first.at)) : this.windowMs;
    let total = 0;
    const perAd = new Map<string, number>();
    // Candidates: ads busy enough in some bucket to possibly reach a hot threshold, and split ads.
    const floor = (Math.min(this.opts.hotRatePerSec, this.opts.hotMinRatePerSec) * BUCKET_MS) / 1000 / 4;
    const candidates = new Set(split);
    for (const b of this.buckets) for (const [ad, n] of b.perAd) if (n >= floor) candidates.add(ad);
    for (const ad of candidates) perAd.set(ad, 0);
    for (const b of this.buckets) {
      total += b.total;
      for (const ad of candidates) perAd.set(ad, perAd.get(ad)! + (b.perAd.get(ad) ?? 0));
    }
    const out: HotDecision[] = [];
    const secs = spanMs / 1000;
    for (const [ad, n] of perAd) {
      const rate = n / secs;
      const sharePct = total > 0 ? (100 * n) / total : 0;
      const s = this.since.get(ad) ?? {};
      const isSplit = split.has(ad);
      if (!isSplit) {
        const hot = rate >= this.opts.hotRatePerSec || (sharePct >= this.opts.hotSharePct && rate >= this.opts.hotMinRatePerSec);
        s.below = undefined;
        s.above = hot ? (s.above ?? now) : undefined;
        if (hot && now - s.above! >= this.opts.hotForMs && this.due(ad, 'split', now)) out.push({ ad, action: 'split', ratePerSec: rate, sharePct });
      } else {
        const cool = rate < this.opts.coolRatePerSec && sharePct < this.opts.coolSharePct;
        s.above = undefined;
        s.below = cool ? (s.below ?? now) : undefined;
        if (cool && now - s.below! >= this.opts.coolForMs && this.due(ad, 'unsplit', now)) out.push({ ad, action: 'unsplit', ratePerSec: rate, sharePct });
      }
      if (s.above === undefined && s.below === undefined) this.since.delete(ad);
      else this.since.set(ad, s);
    }
    // Ads that dropped out of the candidates are neither hot nor (if split) tracked any more.
    for (const ad of this.since.keys()) if (!perAd.has(ad)) this.since.delete(ad);
    return out;
  }

  private due(ad: string, action: HotDecision['action'], now: number): boolean {
    const d = this.decided.get(ad);
    if (d && d.action === action && now - d.at < this.retryMs) return false;
    this.decided.set(ad, { action, at: now });
    return true;
  }
}
