/**
 * Deterministic generated click streams and an independently computed truth (plain Maps, no
 * production code), for exactness tests and benchmarks.
 */

/** mulberry32: small deterministic PRNG so a failing stream can be reproduced from its seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Zipf(s) sampler over ranks 1..n by inverse CDF on a precomputed table. */
export function zipf(n: number, s: number, rand: () => number): () => number {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) cdf[i] = sum += 1 / Math.pow(i + 1, s);
  for (let i = 0; i < n; i++) cdf[i]! /= sum;
  return () => {
    const u = rand();
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

export interface GenClick {
  click_id: string;
  ad_id: string;
  ts: number;
  user_id: string;
  ip: string;
  country: string;
}

export interface StreamSpec {
  events: number;
  ads: number;
  /** Share of clicks on the hottest ad (ad-0). */
  hotShare: number;
  startMs: number;
  endMs: number;
  lateFraction: number;
  maxLateMs: number;
  dupFraction: number;
  malformedFraction: number;
  seed: number;
  countries?: string[];
}

export interface GeneratedStream {
  /** NDJSON lines in send order, malformed ones included. */
  lines: string[];
  /** Valid clicks in send order, duplicates included. */
  clicks: GenClick[];
  malformed: number;
}

const COUNTRIES = ['US', 'DE', 'FR', 'GB', 'JP', 'BR', 'IN', 'CA'];
const MALFORMED = [
  () => '{"click_id": "x", "ad_id": ',
  () => '{"ad_id":"ad-1","ts":1}',
  () => '{"click_id":"m1","ad_id":"bad id!","ts":1700000000000}',
  () => `{"click_id":"m2","ad_id":"ad-1","ts":"yesterday"}`,
  () => `{"click_id":"m3","ad_id":"ad-1","ts":${Date.now()},"ip":"999.1.1.1"}`,
  () => `{"click_id":"m4","ad_id":"ad-1","ts":${Date.now() + 3600_000}}`,
  () => `[1,2,3]`,
];

/** Events in roughly increasing event time, with late events, exact duplicates and malformed lines mixed in. */
export function generateStream(spec: StreamSpec): GeneratedStream {
  const rand = rng(spec.seed);
  const pick = zipf(spec.ads - 1, 1.1, rand);
  const countries = spec.countries ?? COUNTRIES;
  const clicks: GenClick[] = [];
  const lines: string[] = [];
  let malformed = 0;
  const span = spec.endMs - spec.startMs;
  for (let i = 0; i < spec.events; i++) {
    const base = spec.startMs + Math.floor((span * i) / spec.events);
    const late = rand() < spec.lateFraction;
    const ts = late ? Math.max(spec.startMs, base - Math.floor(rand() * spec.maxLateMs)) : base;
    const ad = rand() < spec.hotShare ? 'ad-0' : `ad-${1 + pick()}`;
    const c: GenClick = {
      click_id: `c-${spec.seed}-${i}`,
      ad_id: ad,
      ts,
      user_id: `u${Math.floor(rand() * 5000)}`,
      ip: `10.${Math.floor(rand() * 256)}.${Math.floor(rand() * 256)}.${Math.floor(rand() * 256)}`,
      country: countries[Math.floor(rand() * countries.length)]!,
    };
    clicks.push(c);
    lines.push(JSON.stringify(c));
    if (rand() < spec.dupFraction) {
      clicks.push(c);
      lines.push(JSON.stringify(c));
    }
    if (rand() < spec.malformedFraction) {
      lines.push(MALFORMED[Math.floor(rand() * MALFORMED.length)]!());
      malformed++;
    }
  }
  return { lines, clicks, malformed };
}

const MIN = 60_000;

/**
 * The realistic mix of the exactness tests, defined once: Zipf(1.1) over 300 ads with a quarter of
 * the clicks on the hottest (ad-0), 2% of clicks late by up to 4 minutes, 2% exact duplicates,
 * 0.2% malformed lines, 8 countries; event times from 8 minutes to 100 s ago.
 */
export const REALISTIC_DEFAULTS = {
  ads: 300,
  hotShare: 0.25,
  lateFraction: 0.02,
  maxLateMs: 4 * MIN,
  dupFraction: 0.02,
  malformedFraction: 0.002,
  startAgoMs: 8 * MIN,
  endAgoMs: 100_000,
} as const;

export interface RealisticOptions extends Partial<Omit<StreamSpec, 'startMs' | 'endMs' | 'seed' | 'events'>> {
  seed: number;
  events: number;
  /** The time event times are relative to. @default Date.now() */
  now?: number;
  /** Event times start this long before `now`. @default 8 minutes */
  startAgoMs?: number;
  /** Event times end this long before `now`. @default 100000 */
  endAgoMs?: number;
}

/**
 * A {@link generateStream} of the realistic mix ({@link REALISTIC_DEFAULTS}); a test overrides only
 * where it deliberately differs (more ads, no malformed lines, one very hot ad, ...).
 */
export function realisticStream(opts: RealisticOptions): GeneratedStream {
  const { now = Date.now(), startAgoMs, endAgoMs, ...rest } = { ...REALISTIC_DEFAULTS, ...opts };
  return generateStream({ ...rest, startMs: now - startAgoMs, endMs: now - endAgoMs });
}

/** Truth: per ad, per minute (and per country), counting each click_id once (its first copy). */
export class Truth {
  readonly byAd = new Map<string, Map<number, number>>();
  readonly byAdCountry = new Map<string, Map<number, number>>();
  private readonly seen = new Set<string>();
  add(clicks: Iterable<GenClick>): this {
    for (const c of clicks) {
      if (this.seen.has(c.click_id)) continue;
      this.seen.add(c.click_id);
      const m = Math.floor(c.ts / 60_000);
      bump(this.byAd, c.ad_id, m);
      bump(this.byAdCountry, `${c.ad_id}|${c.country}`, m);
    }
    return this;
  }
  get distinct(): number {
    return this.seen.size;
  }
  count(ad: string, fromMin: number, toMin: number, country?: string): number {
    const per = country ? this.byAdCountry.get(`${ad}|${country}`) : this.byAd.get(ad);
    let n = 0;
    if (per) for (const [m, c] of per) if (m >= fromMin && m < toMin) n += c;
    return n;
  }
  /** Exact top n over [fromMin, toMin): count desc, then ad_id asc. */
  top(n: number, fromMin: number, toMin: number, country?: string): Array<{ ad_id: string; count: number }> {
    const rows: Array<{ ad_id: string; count: number }> = [];
    for (const ad of this.byAd.keys()) {
      const count = this.count(ad, fromMin, toMin, country);
      if (count > 0) rows.push({ ad_id: ad, count });
    }
    rows.sort((a, b) => b.count - a.count || (a.ad_id < b.ad_id ? -1 : 1));
    return rows.slice(0, n);
  }
  minutes(): number[] {
    const s = new Set<number>();
    for (const per of this.byAd.values()) for (const m of per.keys()) s.add(m);
    return [...s].sort((a, b) => a - b);
  }
}

function bump(map: Map<string, Map<number, number>>, key: string, m: number): void {
  let per = map.get(key);
  if (!per) map.set(key, (per = new Map()));
  per.set(m, (per.get(m) ?? 0) + 1);
}
