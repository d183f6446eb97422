/**
 * The load generator: Zipf-skewed clicks over many ads with late events and duplicates, cut into
 * per-shard batches the way a real producer would send them, and the truth computed while
 * generating (per ad total, each click_id once; per ad × country for the hottest ads).
 */
import type { Click } from '../../src/model/click.ts';
import { shardOf } from '../../src/model/partition.ts';
import { rng } from '../../test/helpers/click-stream.ts';
import { zipfSampler, type ZipfSampler } from './zipf.ts';

export const COUNTRIES = ['US', 'DE', 'FR', 'GB', 'JP', 'BR', 'IN', 'CA'] as const;
/** Ads whose per-country truth is kept (the hottest ranks). */
export const COUNTRY_TRUTH_RANKS = 100;

export interface WorkloadSpec {
  /** Events to send, duplicates included. */
  events: number;
  ads: number;
  zipfS: number;
  lateFraction: number;
  maxLateMs: number;
  dupFraction: number;
  /**
   * Event time of in-order events runs from startMs to endMs over the stream ('spread' mode);
   * with 'live' every event is stamped with the wall clock when generated.
   */
  time: { mode: 'spread'; startMs: number; endMs: number } | { mode: 'live' };
  seed: number;
  /** Prefix of click ids, unique per run. */
  tag: string;
  shards: number;
  maxBatch: number;
}

const RING = 4096;

export class Workload {
  readonly truth: Int32Array;
  /** [rank * COUNTRIES.length + countryIndex] for rank < COUNTRY_TRUTH_RANKS. */
  readonly countryTruth = new Int32Array(COUNTRY_TRUTH_RANKS * COUNTRIES.length);
  sent = 0;
  originals = 0;
  duplicates = 0;
  late = 0;
  minTs = Infinity;
  maxTs = -Infinity;
  private readonly rand: () => number;
  private readonly zipf: ZipfSampler;
  private readonly ring: Click[] = [];
  private readonly buffers: Click[][];
  private flushShard = 0;
  private readonly ips: string[] = [];

  constructor(readonly spec: WorkloadSpec) {
    this.rand = rng(spec.seed);
    this.zipf = zipfSampler(spec.ads, spec.zipfS);
    this.truth = new Int32Array(spec.ads);
    this.buffers = Array.from({ length: spec.shards }, () => []);
    for (let i = 0; i < 4096; i++) {
      this.ips.push(`10.${(i * 7) & 255}.${(i * 13) & 255}.${(i * 31 + 1) & 255}`);
    }
  }

  get done(): boolean {
    return this.sent >= this.spec.events;
  }

  /** The next click to send (an original or a re-sent duplicate), or null when all are sent. */
  nextClick(): Click | null {
    if (this.sent >= this.spec.events) return null;
    const r = this.rand;
    this.sent++;
    if (this.ring.length > 0 && r() < this.spec.dupFraction) {
      this.duplicates++;
      return this.ring[Math.floor(r() * this.ring.length)]!;
    }
    const i = this.originals++;
    const rank = this.zipf.sample(r());
    const country = Math.floor(r() * COUNTRIES.length);
    let ts: number;
    const t = this.spec.time;
    if (t.mode === 'live') ts = Date.now();
    else ts = t.startMs + Math.floor(((t.endMs - t.startMs) * i) / this.spec.events);
    if (r() < this.spec.lateFraction) {
      this.late++;
      ts -= 1 + Math.floor(r() * this.spec.maxLateMs);
    }
    if (ts < this.minTs) this.minTs = ts;
    if (ts > this.maxTs) this.maxTs = ts;
    const c: Click = {
      click_id: `${this.spec.tag}-${i.toString(36)}`,
      ad_id: `ad-${rank}`,
      ts,
      user_id: `u${Math.floor(r() * 1_000_000)}`,
      ip: this.ips[i & 4095]!,
      country: COUNTRIES[country]!,
    };
    this.truth[rank]!++;
    if (rank < COUNTRY_TRUTH_RANKS) this.countryTruth[rank * COUNTRIES.length + country]!++;
    if (this.ring.length < RING) this.ring.push(c);
    else this.ring[i % RING] = c;
    return c;
  }

  /**
   * The next full batch of one shard (maxBatch clicks), generating as many clicks as needed;
   * once everything is generated, the partial batches left over. Null at the end.
   */
  nextShardBatch(): { shard: number; clicks: Click[] } | null {
    for (;;) {
      const c = this.nextClick();
      if (!c) break;
      const shard = shardOf(c.ad_id, this.spec.shards);
      const buf = this.buffers[shard]!;
      buf.push(c);
      if (buf.length >= this.spec.maxBatch) {
        this.buffers[shard] = [];
        return { shard, clicks: buf };
      }
    }
    while (this.flushShard < this.spec.shards) {
      const shard = this.flushShard++;
      const buf = this.buffers[shard]!;
      if (buf.length > 0) {
        this.buffers[shard] = [];
        return { shard, clicks: buf };
      }
    }
    return null;
  }

  /** `n` clicks in generation order (mixed shards), for rate-limited and HTTP senders. */
  take(n: number): Click[] {
    const out: Click[] = [];
    for (let k = 0; k < n; k++) {
      const c = this.nextClick();
      if (!c) break;
      out.push(c);
    }
    return out;
  }

  /** Distinct clicks (each click_id once): what an exact aggregator must count. */
  get distinct(): number {
    return this.originals;
  }

  /** Ranks of the `n` ads with the largest truth (ties by rank). */
  topRanks(n: number): number[] {
    const idx: number[] = [];
    // The hottest ranks are the Zipf head; scan a generous head, then sort by truth.
    const head = Math.min(this.truth.length, Math.max(n * 20, 2000));
    for (let i = 0; i < head; i++) idx.push(i);
    idx.sort((a, b) => this.truth[b]! - this.truth[a]! || a - b);
    return idx.slice(0, n);
  }

  /** `n` random ranks among ads with at least one click, excluding `exclude`. */
  randomTouchedRanks(n: number, exclude: ReadonlySet<number>, seed = 99): number[] {
    const r = rng(seed);
    const out: number[] = [];
    let seen = 0;
    for (let i = 0; i < this.truth.length; i++) {
      if (this.truth[i] === 0 || exclude.has(i)) continue;
      seen++;
      if (out.length < n) out.push(i);
      else {
        const j = Math.floor(r() * seen);
        if (j < n) out[j] = i;
      }
    }
    return out;
  }

  get adsTouched(): number {
    let n = 0;
    for (let i = 0; i < this.truth.length; i++) if (this.truth[i]! > 0) n++;
    return n;
  }
}

export const adOf = (rank: number): string => `ad-${rank}`;
export const rankOf = (adId: string): number => (adId.startsWith('ad-') ? Number(adId.slice(3)) : -1);
