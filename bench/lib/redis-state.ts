/**
 * Reads adagg's committed state straight from Redis (layout of src/runtime/redis-keys.ts):
 * `<prefix>:{s<n>}:meta` hash (seq, watermark, closedThrough) and the count hashes
 * `<prefix>:{s<n>}:c:<minute>[:<dim>=<value>]` field ad_id → count.
 */
import type { Redis } from 'ioredis';
import { shardOf } from '../../src/model/partition.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { COUNTRIES, COUNTRY_TRUTH_RANKS, adOf, rankOf, type Workload } from './workload.ts';

export interface ShardMeta {
  seq: number;
  watermark: number;
  closedThrough: number;
}

export async function readMetas(rd: Redis, prefix: string, shards: number): Promise<ShardMeta[]> {
  const keys = new RedisKeys(prefix);
  const p = rd.pipeline();
  for (let s = 0; s < shards; s++) p.hmget(keys.meta(s), 'seq', 'watermark', 'closedThrough');
  const res = (await p.exec()) ?? [];
  return res.map(([err, v]) => {
    if (err) throw err;
    const [seq, wm, ct] = v as Array<string | null>;
    return { seq: Number(seq ?? 0), watermark: Number(wm ?? -1), closedThrough: Number(ct ?? -1) };
  });
}

export interface Exactness {
  exact: boolean;
  /** Ads compared in the sample (top 100 by truth + 200 random touched ads). */
  sampled: number;
  sampleMismatches: number;
  /** Per-country counts of the top ads compared with the per-country truth. */
  countryChecked: number;
  countryMismatches: number;
  /** Full check: every ad's total over all minutes of every shard. */
  fullAdsCompared: number;
  fullMismatches: number;
  totalCounted: number;
  totalTruth: number;
  examples: string[];
}

/** Minutes [from, to] that the workload's events fall into. */
export function minuteRange(w: Workload): [number, number] {
  return [Math.floor(w.minTs / 60_000), Math.floor(w.maxTs / 60_000)];
}

/**
 * Compares adagg's final counts with the truth. Call after every minute in the range is closed
 * (closedThrough >= last minute on every shard), so all counts are in the count hashes.
 */
export async function checkExactness(rd: Redis, prefix: string, shards: number, w: Workload): Promise<Exactness> {
  const keys = new RedisKeys(prefix);
  const [m0, m1] = minuteRange(w);
  const examples: string[] = [];

  // 1. Sample: top 100 by truth + 200 random touched ads, summed over minutes per ad.
  const top = w.topRanks(100);
  const rand = w.randomTouchedRanks(200, new Set(top));
  const sample = [...top, ...rand];
  const p = rd.pipeline();
  for (const r of sample) {
    const ad = adOf(r);
    const s = shardOf(ad, shards);
    for (let m = m0; m <= m1; m++) p.hget(keys.counts(s, m, null, null), ad);
  }
  const res = (await p.exec()) ?? [];
  let k = 0;
  let sampleMismatches = 0;
  for (const r of sample) {
    let got = 0;
    for (let m = m0; m <= m1; m++) {
      const [err, v] = res[k++]!;
      if (err) throw err;
      got += Number(v ?? 0);
    }
    if (got !== w.truth[r]) {
      sampleMismatches++;
      if (examples.length < 5) examples.push(`${adOf(r)}: counted ${got}, truth ${w.truth[r]}`);
    }
  }

  // 2. Per country for the hottest ads.
  const cp = rd.pipeline();
  const cRanks = top.filter((r) => r < COUNTRY_TRUTH_RANKS);
  for (const r of cRanks) {
    const ad = adOf(r);
    const s = shardOf(ad, shards);
    for (const c of COUNTRIES) for (let m = m0; m <= m1; m++) cp.hget(keys.counts(s, m, 'country', c), ad);
  }
  const cres = (await cp.exec()) ?? [];
  k = 0;
  let countryMismatches = 0;
  for (const r of cRanks) {
    for (let ci = 0; ci < COUNTRIES.length; ci++) {
      let got = 0;
      for (let m = m0; m <= m1; m++) got += Number(cres[k++]![1] ?? 0);
      const want = w.countryTruth[r * COUNTRIES.length + ci]!;
      if (got !== want) {
        countryMismatches++;
        if (examples.length < 8) examples.push(`${adOf(r)}/${COUNTRIES[ci]}: counted ${got}, truth ${want}`);
      }
    }
  }

  // 3. Full: sum every total-count hash of the run, per ad, and compare all ads.
  const counted = new Int32Array(w.truth.length);
  let totalCounted = 0;
  let foreign = 0;
  for (let s = 0; s < shards; s++) {
    for (let m = m0; m <= m1; m++) {
      const h = await rd.hgetall(keys.counts(s, m, null, null));
      for (const [ad, v] of Object.entries(h)) {
        const n = Number(v);
        totalCounted += n;
        const r = rankOf(ad);
        if (r >= 0 && r < counted.length) counted[r]! += n;
        else foreign += n;
      }
    }
  }
  let fullMismatches = 0;
  let fullAdsCompared = 0;
  for (let r = 0; r < counted.length; r++) {
    if (counted[r] === 0 && w.truth[r] === 0) continue;
    fullAdsCompared++;
    if (counted[r] !== w.truth[r]) {
      fullMismatches++;
      if (examples.length < 10) examples.push(`(full) ${adOf(r)}: counted ${counted[r]}, truth ${w.truth[r]}`);
    }
  }
  if (foreign > 0) examples.push(`${foreign} counts on unknown ad ids`);
  const exact = sampleMismatches === 0 && countryMismatches === 0 && fullMismatches === 0 && foreign === 0 && totalCounted === w.distinct;
  return {
    exact,
    sampled: sample.length,
    sampleMismatches,
    countryChecked: cRanks.length * COUNTRIES.length,
    countryMismatches,
    fullAdsCompared,
    fullMismatches,
    totalCounted,
    totalTruth: w.distinct,
    examples,
  };
}
